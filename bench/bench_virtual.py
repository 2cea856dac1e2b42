"""Virtual actors at scale: a million addressable actors, activation and passivation rates.

1. ``batch_spawn(depth=4, branching=32)`` (1,048,576 leaves); every leaf is sent one message
   with at most ``--max-active`` (10,000) running: total time, peak RSS, passivations.
2. Activation + passivation cycles with a 64-byte state: ``max_active=100``, each message goes
   to a passivated actor (restored from its compress token), which passivates another.

Run: python bench/bench_virtual.py [--leaves 1048576] [--max-active 10000] [--cycles 200000]
``--quick`` (262,144 leaves, 50,000 cycles) takes a few seconds: the same two measurements, for
comparing two trees side by side (the < 10 s target is for the full million).

``--instructions`` counts instead the CPU instructions of one cycle and of one leaf (with
``max_active`` 1,000) under callgrind (valgrind must be installed; about 3 minutes): each is
run at two sizes and the difference taken, so start-up costs cancel, with
``PYTHONHASHSEED=0``. Unlike times on a shared machine, the counts repeat exactly: the way to
compare two trees (``bench/ab.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time

import msgspec

from _common import callgrind_per_unit, fmt_rate, machine, progress, rss_bytes, table
from swarm_actors import Actor, ActorSystem, Passivation, handler


class Blob(msgspec.Struct):
    data: bytes


class Hit(msgspec.Struct):
    pass


class Worker(Actor):
    def __init__(self) -> None:
        self.state = b"\0" * 64
        self.hits = 0

    def snapshot(self) -> Blob:
        return Blob(self.state)

    def restore(self, state: Blob) -> None:
        self.state = state.data

    @handler
    async def hit(self, msg: Hit) -> None:
        self.hits += 1


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def million(leaves_wanted: int, max_active: int) -> dict[str, float]:
    async with ActorSystem(passivation=Passivation(max_active=max_active)) as system:
        batch = system.batch_spawn(Worker, depth=4, branching=32)
        leaves = min(leaves_wanted, len(batch))
        hit = Hit()
        rss_before = rss_bytes()
        start = time.perf_counter()
        for i in range(leaves):
            await batch[i].tell(hit)
            if i % 200_000 == 0:
                progress(f"  {i:,} / {leaves:,} sent, {system.virtual_stats()}")
        # Every message handled: ask the last one (it is active, so this drains it).
        await batch[leaves - 1].ask(hit)
        elapsed = time.perf_counter() - start
        stats = system.virtual_stats()
        return {
            "leaves": leaves,
            "seconds": elapsed,
            "rate": leaves / elapsed,
            "passivations": stats.passivations,
            "activations": stats.activations,
            "active": stats.active,
            "rss_growth": rss_bytes() - rss_before,
            "peak_rss": peak_rss(),
        }


async def cycles(n: int) -> dict[str, float]:
    async with ActorSystem(passivation=Passivation(max_active=100)) as system:
        batch = system.batch_spawn(Worker, depth=2, branching=1000)
        hit = Hit()
        warm = 1000
        for i in range(warm):  # every one of these has a token now
            await batch[i].tell(hit)
        start = time.perf_counter()
        for j in range(n):
            await batch[j % warm].tell(hit)
        await batch[(n - 1) % warm].ask(hit)
        elapsed = time.perf_counter() - start
        stats = system.virtual_stats()
        return {"cycles": n, "rate": n / elapsed, "passivations": stats.passivations}


def instructions(part: str, sizes: tuple[int, int]) -> float:
    """Instructions per unit of ``part`` (``cycles`` or ``million``), by callgrind."""
    return callgrind_per_unit(
        lambda size: [sys.executable, __file__, "--only", part, "--size", str(size)], sizes
    )


def count_instructions() -> None:
    progress("callgrind: activation + passivation cycles (2 runs)")
    per_cycle = instructions("cycles", (5_000, 15_000))
    progress("callgrind: a message to each leaf, max_active=1,000 (2 runs)")
    per_leaf = instructions("million", (5_000, 15_000))
    print("## Virtual actors: instructions (callgrind)\n")
    print(f"`python bench/bench_virtual.py --instructions` on {machine()}.\n")
    rows = [
        ["activation + passivation cycle, 64-byte state", f"{per_cycle:,.0f}"],
        ["one message to a new leaf, max_active=1,000", f"{per_leaf:,.0f}"],
    ]
    print(table(["measurement", "instructions"], rows))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_048_576)
    parser.add_argument("--max-active", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=200_000)
    parser.add_argument(
        "--quick", action="store_true", help="262,144 leaves and 50,000 cycles (a few seconds)"
    )
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions with callgrind instead"
    )
    parser.add_argument("--only", choices=["cycles", "million"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only == "cycles":  # one measurement, under callgrind (see --instructions)
        asyncio.run(cycles(args.size))
        return
    if args.only == "million":
        asyncio.run(million(args.size, 1000))
        return
    if args.instructions:
        count_instructions()
        return
    if args.quick:
        args.leaves, args.cycles = 262_144, 50_000
    gc.collect()
    progress(f"a million virtual actors: {args.leaves:,} leaves, max_active={args.max_active:,}")
    m = asyncio.run(million(args.leaves, args.max_active))
    progress(f"activation + passivation cycles: {args.cycles:,}")
    c = asyncio.run(cycles(args.cycles))
    rows = [
        [
            f"{m['leaves']:,} virtual actors, one message each, <= {args.max_active:,} active",
            f"{m['seconds']:.2f} s ({fmt_rate(m['rate'])})",
            "< 10 s" if args.leaves >= 1_000_000 else "< 10 s for 1M leaves",
            f"{m['passivations']:,} passivations, {m['activations']:,} activations",
        ],
        [
            "peak RSS of the process (same run)",
            f"{m['peak_rss'] / 2**20:.0f} MiB",
            "< 1.5 GiB",
            f"RSS growth during the run {m['rss_growth'] / 2**20:.0f} MiB",
        ],
        [
            "activation + passivation, 64-byte state",
            fmt_rate(c["rate"]),
            ">= 150k/s",
            f"{c['cycles']:,} cycles, each restores one actor and passivates another",
        ],
    ]
    print("## Virtual actors\n")
    print(
        f"`python bench/bench_virtual.py --leaves {args.leaves} --max-active {args.max_active} "
        f"--cycles {args.cycles}` on {machine()}.\n"
    )
    print(table(["measurement", "result", "target", "detail"], rows))
    print()


if __name__ == "__main__":
    main()
