"""The sender (``self.sender``): what remembering who sent a message costs, side by side.

Rows, each swarm-actors against a baseline in the same run:

* tells from one actor's handler to another actor (``self.sender`` is captured for each), against
  the same tells from outside any actor (nothing captured): the cost of the capture;
* request/reply by tell: an actor tells ``Ping`` and the other replies with
  ``self.sender.tell(Pong())``, against the way without the feature: the ``Ping`` carries the
  requester's ref in a field and the handler replies to that (``msg.reply_to.tell(...)``);
* the same request/reply across two nodes (two systems in this process on one embedded NATS
  server): the reply goes to a ``RemoteRef`` back to the requester, decoded from the tell's
  origin, against the ref carried in the message.

Every rate is the best of ``--repeats`` runs (the median is shown too); the ratio is
``self.sender`` / baseline (higher is better). The instruction counts of the tell path
(callgrind) are in ``bench/RESULTS.md``; ``tell_from_actor`` and ``tell_from_outside`` are the
functions measured there.

Run: python bench/bench_sender.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from _common import fmt_rate, machine, progress, table
from swarm_actors import Actor, ActorSystem, Ref, handler
from swarm_actors.cluster import Cluster

BIG_MAILBOX = 65_536


class Inc:
    __slots__ = ()


class Get:
    __slots__ = ()


INC, GET = Inc(), Get()


class Run(msgspec.Struct):
    n: int


class Ping(msgspec.Struct):
    n: int


class PingWithRef(msgspec.Struct):
    n: int
    reply_to: Ref[Any]


class Pong(msgspec.Struct):
    n: int


class Counter(Actor, mailbox_size=BIG_MAILBOX):
    def __init__(self) -> None:
        self.count = 0

    @handler
    async def inc(self, msg: Inc) -> None:
        self.count += 1

    @handler
    async def get(self, msg: Get) -> int:
        return self.count


class Driver(Actor):
    """Tells ``Inc`` to ``target`` ``n`` times from its handler, then asks for the count."""

    def __init__(self, target: Any) -> None:
        self.target = target

    @handler
    async def run(self, msg: Run) -> int:
        tell = self.target.tell
        for _ in range(msg.n):
            await tell(INC)
        count: int = await self.target.ask(GET)
        return count


async def tell_from_actor(n: int) -> tuple[float, bool]:
    """``n`` tells from an actor's handler (sender captured); (seconds, all handled)."""
    async with ActorSystem() as system:
        counter = await system.start(Counter)
        driver = await system.start(Driver, counter)
        t0 = time.perf_counter()
        count = await driver.ask(Run(n), timeout=None)
        return time.perf_counter() - t0, count == n


async def tell_from_outside(n: int) -> tuple[float, bool]:
    """``n`` tells from outside any actor (nothing captured); (seconds, all handled)."""
    async with ActorSystem() as system:
        counter = await system.start(Counter)
        t0 = time.perf_counter()
        for _ in range(n):
            await counter.tell(INC)
        count = await counter.ask(GET)
        return time.perf_counter() - t0, count == n


class Echo(Actor):
    """Answers ``Ping`` to ``self.sender`` and ``PingWithRef`` to the ref it carries."""

    @handler
    async def ping(self, msg: Ping) -> None:
        sender = self.sender
        assert sender is not None
        await sender.tell(Pong(msg.n))

    @handler
    async def ping_with_ref(self, msg: PingWithRef) -> None:
        await msg.reply_to.tell(Pong(msg.n))


class Requester(Actor):
    """Plays ``n`` request/reply rounds by tell with ``echo``; ``done`` is set at the end."""

    def __init__(self, echo: Any, n: int, with_ref: bool, done: asyncio.Future[None]) -> None:
        self.echo, self.n, self.with_ref, self.done = echo, n, with_ref, done

    async def _send(self, i: int) -> None:
        if self.with_ref:
            await self.echo.tell(PingWithRef(i, self.ref))
        else:
            await self.echo.tell(Ping(i))

    @handler
    async def run(self, msg: Run) -> None:
        await self._send(0)

    @handler
    async def pong(self, msg: Pong) -> None:
        if msg.n + 1 == self.n:
            self.done.set_result(None)
        else:
            await self._send(msg.n + 1)


async def _rounds(system: ActorSystem, echo: Any, n: int, with_ref: bool) -> tuple[float, bool]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    requester = await system.start(Requester, echo, n, with_ref, done, name=f"req-{with_ref}")
    t0 = time.perf_counter()
    await requester.tell(Run(n))
    await asyncio.wait_for(done, 120.0)
    spent = time.perf_counter() - t0
    await requester.stop()
    return spent, True


async def local_rounds(n: int, with_ref: bool) -> tuple[float, bool]:
    async with ActorSystem() as system:
        echo = await system.start(Echo)
        return await _rounds(system, echo, n, with_ref)


async def remote_rounds(n: int, with_ref: bool) -> tuple[float, bool]:
    with tempfile.TemporaryDirectory() as data:
        cluster = Cluster(node="bench-one", data_dir=data)
        async with ActorSystem(nats="embedded", cluster=cluster) as one:
            await one.start(Echo, name="echo")
            async with ActorSystem(nats=one.nats_url, cluster=Cluster(node="bench-two")) as two:
                echo = await two.resolve("echo", timeout=10.0)
                return await _rounds(two, echo, n, with_ref)


def best(
    label: str, repeats: int, n: int, fn: Callable[[], Awaitable[tuple[float, bool]]]
) -> tuple[float, float, bool]:
    rates, ok = [], True
    for i in range(repeats):
        gc.collect()
        spent, good = asyncio.run(fn())  # type: ignore[arg-type]
        rates.append(n / spent)
        ok = ok and good
        progress(f"  {label} run {i + 1}/{repeats}: {fmt_rate(n / spent)}")
    return max(rates), statistics.median(rates), ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n_tell, n_local, n_remote = (
        (100_000, 20_000, 2_000) if args.quick else (1_000_000, 200_000, 20_000)
    )
    rows: list[tuple[str, int, Callable[[], Any], Callable[[], Any], str]] = [
        (
            "tell from an actor's handler (sender captured) vs from outside",
            n_tell,
            lambda: tell_from_actor(n_tell),
            lambda: tell_from_outside(n_tell),
            "outside",
        ),
        (
            "request/reply by tell, local: self.sender vs a ref in the message",
            n_local,
            lambda: local_rounds(n_local, False),
            lambda: local_rounds(n_local, True),
            "ref in message",
        ),
        (
            "request/reply by tell, two nodes: self.sender vs a ref in the message",
            n_remote,
            lambda: remote_rounds(n_remote, False),
            lambda: remote_rounds(n_remote, True),
            "ref in message",
        ),
    ]
    cells: list[list[object]] = []
    failures = []
    for label, n, feature, baseline, baseline_name in rows:
        progress(f"{label} (N = {n:,})")
        f_best, f_med, f_ok = best("self.sender", args.repeats, n, feature)
        b_best, b_med, b_ok = best(baseline_name, args.repeats, n, baseline)
        if not (f_ok and b_ok):
            failures.append(label)
        cells.append(
            [
                label,
                f"{fmt_rate(f_best)} ({fmt_rate(f_med)})",
                f"{fmt_rate(b_best)} ({fmt_rate(b_med)})",
                f"{f_best / b_best:.2f}x",
            ]
        )
    print(
        f"### The sender (`self.sender`)\n\n`python bench/bench_sender.py"
        f"{' --quick' if args.quick else ''}` on {machine()}; best (median) of "
        f"{args.repeats}.\n"
    )
    print(table(["row", "with the sender", "baseline", "ratio"], cells))
    if failures:
        print(f"\n**Checks failed:** {', '.join(failures)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
