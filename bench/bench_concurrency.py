"""Concurrency per actor (``max_concurrency``): swarm-actors at N=64 and N=1 vs plain asyncio.

Three measurements, side by side in one run:

* **64 concurrent asks, handler awaits ``asyncio.sleep(0.01)``**: the wall time from the first
  ask to the last answer, for one actor with ``max_concurrency=64``, the same actor with the
  default ``max_concurrency=1`` (the asks queue: about 64 x 10 ms), and plain asyncio: 64 tasks
  gathered, each awaiting the same sleep (the floor: what the I/O itself takes). Each answer is
  checked, and so is the most handler calls the actor saw in flight at once (64, and 1).
* **many asks, handler suspends once** (``await asyncio.sleep(0)``): 64 askers each asking in
  sequence, as a rate. It prices the concurrent path per message (each suspending call gets
  a task of its own) against the one-at-a-time engine, which serves its queue from one task;
  the floor is the same coroutine awaited directly by each asker (no actor, no task).
* **tell throughput by engine**: one sender telling a handler that does not suspend, timed
  until an ask queued behind the tells returns N. ``max_concurrency`` or ``stash=True`` put
  the actor on the tracked engine (every call tracked); plain actors keep the fast one.

Each figure is the best of the repeats (the median in parentheses); ``gc.collect()`` runs
before each one.

Run: python bench/bench_concurrency.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable

from _common import fmt_rate, machine, progress, table
from swarm_actors import Actor, ActorSystem, handler

ASKERS = 64
SLEEP = 0.01


class Sleep:
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


class Yield:
    __slots__ = ()


class Inc:
    __slots__ = ()


class Get:
    __slots__ = ()


YIELD, INC, GET = Yield(), Inc(), Get()


class Serial(Actor, mailbox_size=65_536):
    """The default: one handler call at a time."""

    def __init__(self) -> None:
        self.inside = 0
        self.peak = 0
        self.count = 0

    @handler
    async def sleep(self, msg: Sleep) -> int:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        await asyncio.sleep(SLEEP)
        self.inside -= 1
        return msg.n

    @handler
    async def yield_once(self, msg: Yield) -> int:
        await asyncio.sleep(0)
        self.count += 1
        return self.count

    @handler
    async def inc(self, msg: Inc) -> None:
        self.count += 1

    @handler
    async def get(self, msg: Get) -> int:
        return self.count


class Concurrent(Serial, max_concurrency=ASKERS):
    """Up to 64 handler calls at once."""


class Stashing(Serial, stash=True):
    """One at a time, with a stash: the tracked engine at N=1."""


def runs(repeats: int, fn: Callable[[], tuple[float, bool, str]]) -> tuple[list[float], str]:
    """The values of ``repeats`` runs of ``fn`` (seconds, or a rate), and a failed check."""
    values, failed = [], ""
    for _ in range(repeats):
        gc.collect()
        value, ok, detail = fn()
        values.append(value)
        if not ok:
            failed = detail
    return values, failed


async def sleeps_swarm(actor_class: type[Serial]) -> tuple[float, bool, str]:
    async with ActorSystem() as system:
        ref = await system.start(actor_class)
        started = time.perf_counter()
        answers = await asyncio.gather(*(ref.ask(Sleep(i), timeout=60.0) for i in range(ASKERS)))
        spent = time.perf_counter() - started
        peak = ref._cell.actor.peak
        want = actor_class.max_concurrency
        ok = answers == list(range(ASKERS)) and peak == want
        return spent, ok, f"answers ok: {answers == list(range(ASKERS))}, peak {peak} (want {want})"


async def sleeps_asyncio() -> tuple[float, bool, str]:
    async def one(i: int) -> int:
        await asyncio.sleep(SLEEP)
        return i

    started = time.perf_counter()
    answers = await asyncio.gather(*(asyncio.ensure_future(one(i)) for i in range(ASKERS)))
    spent = time.perf_counter() - started
    return spent, answers == list(range(ASKERS)), "answers"


async def yields_swarm(actor_class: type[Serial], total: int) -> tuple[float, bool, str]:
    per = total // ASKERS
    async with ActorSystem() as system:
        ref = await system.start(actor_class)

        async def asker() -> int:
            for _ in range(per):
                await ref.ask(YIELD)
            return per

        started = time.perf_counter()
        answered = sum(await asyncio.gather(*(asker() for _ in range(ASKERS))))
        spent = time.perf_counter() - started
        handled = await ref.ask(GET)
        n = per * ASKERS
        return n / spent, answered == handled == n, f"{answered} answered, {handled} handled"


async def yields_asyncio(total: int) -> tuple[float, bool, str]:
    per = total // ASKERS
    count = 0

    async def call() -> int:
        nonlocal count
        await asyncio.sleep(0)
        count += 1
        return count

    async def asker() -> int:
        for _ in range(per):
            await call()
        return per

    started = time.perf_counter()
    answered = sum(await asyncio.gather(*(asker() for _ in range(ASKERS))))
    spent = time.perf_counter() - started
    n = per * ASKERS
    return n / spent, answered == count == n, f"{answered} answered, {count} counted"


async def tells_swarm(actor_class: type[Serial], n: int) -> tuple[float, bool, str]:
    async with ActorSystem() as system:
        ref = await system.start(actor_class)
        tell = ref.tell
        started = time.perf_counter()
        for _ in range(n):
            await tell(INC)
        count = await ref.ask(GET)
        spent = time.perf_counter() - started
        return n / spent, count == n, f"counter {count} of {n}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller N, fewer repeats")
    parser.add_argument("--repeats", type=int, default=0)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    n_yield = 12_800 if args.quick else 64_000
    n_tell = 100_000 if args.quick else 500_000
    failures: list[str] = []

    def check(label: str, failed: str) -> None:
        if failed:
            failures.append(f"{label}: {failed}")

    progress(f"{ASKERS} concurrent asks, handler sleeps {SLEEP * 1000:g} ms")
    wall: dict[str, tuple[float, float]] = {}
    for label, fn in [
        (f"swarm-actors, max_concurrency={ASKERS}", lambda: sleeps_swarm(Concurrent)),
        ("swarm-actors, max_concurrency=1 (default)", lambda: sleeps_swarm(Serial)),
        (f"plain asyncio: gather of {ASKERS} tasks", sleeps_asyncio),
    ]:
        values, failed = runs(repeats, lambda fn=fn: asyncio.run(fn()))
        check(label, failed)
        best, median = min(values), statistics.median(values)
        wall[label] = best, median
        progress(f"  {label}: {best * 1000:.1f} ms")
    floor = wall[f"plain asyncio: gather of {ASKERS} tasks"][0]
    rows: list[list[object]] = [
        [label, f"**{best * 1000:.1f} ms** ({median * 1000:.1f})", f"{best / floor:.2f}x"]
        for label, (best, median) in wall.items()
    ]

    progress(f"{n_yield:,} asks from {ASKERS} askers, handler suspends once")
    rates: dict[str, tuple[float, float]] = {}
    for label, fn2 in [
        (f"swarm-actors, max_concurrency={ASKERS}", lambda: yields_swarm(Concurrent, n_yield)),
        ("swarm-actors, max_concurrency=1 (default)", lambda: yields_swarm(Serial, n_yield)),
        ("plain asyncio: the call awaited directly (floor)", lambda: yields_asyncio(n_yield)),
    ]:
        values, failed = runs(repeats, lambda fn2=fn2: asyncio.run(fn2()))
        check(label, failed)
        rates[label] = max(values), statistics.median(values)
        progress(f"  {label}: {fmt_rate(max(values))}")
    base = rates["plain asyncio: the call awaited directly (floor)"][0]
    rate_rows = [
        [label, f"**{fmt_rate(best)}** ({fmt_rate(median)})", f"{best / base:.2f}x"]
        for label, (best, median) in rates.items()
    ]

    progress(f"{n_tell:,} tells, handler does not suspend")
    tells: dict[str, tuple[float, float]] = {}
    for label, cls in [
        ("plain actor (one-at-a-time engine)", Serial),
        ("stash=True (tracked engine, N=1)", Stashing),
        (f"max_concurrency={ASKERS} (tracked engine)", Concurrent),
    ]:
        values, failed = runs(repeats, lambda cls=cls: asyncio.run(tells_swarm(cls, n_tell)))
        check(label, failed)
        tells[label] = max(values), statistics.median(values)
        progress(f"  {label}: {fmt_rate(max(values))}")
    plain = tells["plain actor (one-at-a-time engine)"][0]
    tell_rows = [
        [label, f"**{fmt_rate(best)}** ({fmt_rate(median)})", f"{best / plain:.2f}x"]
        for label, (best, median) in tells.items()
    ]

    command = " ".join(["python bench/bench_concurrency.py", *sys.argv[1:]])
    print("## Concurrency per actor\n")
    print(f"`{command}` on {machine()}, default asyncio event loop.\n")
    print(
        f"### {ASKERS} concurrent asks, handler awaits `asyncio.sleep({SLEEP:g})`\n\n"
        f"Wall time from the first ask to the last answer, best of {repeats} (median in "
        "parentheses); the ratio is to plain asyncio's best.\n"
    )
    print(table(["implementation", "wall time", "vs plain asyncio"], rows))
    print()
    serial = wall["swarm-actors, max_concurrency=1 (default)"][0]
    concurrent = wall[f"swarm-actors, max_concurrency={ASKERS}"][0]
    print(
        f"With max_concurrency={ASKERS} the 64 asks take {concurrent * 1000:.1f} ms, "
        f"{serial / concurrent:.0f}x less than one at a time ({serial * 1000:.0f} ms; "
        f"{ASKERS} x {SLEEP * 1000:g} ms = {ASKERS * SLEEP * 1000:.0f} ms).\n"
    )
    print(
        f"### {n_yield:,} asks from {ASKERS} askers, handler awaits `asyncio.sleep(0)`\n\n"
        f"Best rate of {repeats} runs (median in parentheses); the ratio is to plain asyncio's "
        "best.\n"
    )
    print(table(["implementation", "asks/s", "vs plain asyncio"], rate_rows))
    print()
    print(
        f"### {n_tell:,} tells from one sender, handler does not suspend\n\n"
        f"Best rate of {repeats} runs (median in parentheses); the ratio is to the plain "
        "actor's best.\n"
    )
    print(table(["actor class", "tells/s", "vs plain actor"], tell_rows))
    print()
    if failures:
        print("**Checks failed:** " + "; ".join(failures))
        sys.exit(1)
    print(
        "Checks: every answer was the expected one, and the actor saw 64 calls in flight at "
        "once with max_concurrency=64, one with the default."
    )


if __name__ == "__main__":
    main()
