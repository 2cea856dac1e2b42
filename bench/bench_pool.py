"""Pools: swarm-actors' PoolRef vs a hand-made asyncio pool vs a pykka pool, side by side.

Throughput of a pool of 8 members whose handler waits 1 ms (``await asyncio.sleep(0.001)``;
pykka's actors are threads, so theirs does ``time.sleep(0.001)``): one sender sends N messages
as fast as the pool takes them, timed until every member has handled its last one. The ideal is
8 members / 1 ms = 8,000 messages/s (less the sleep's own overshoot).

* swarm-actors: ``await system.pool(Worker, size=8, routing=...)`` and ``await pool.tell(msg)``,
  with each routing (consistent hash on a key drawn from 64 users);
* asyncio, shared queue: 8 worker tasks reading one ``asyncio.Queue`` (each takes the next
  message when it is free: what a hand-made pool usually is);
* asyncio, round-robin: 8 worker tasks with a queue each, the sender putting into them in
  turn;
* pykka: 8 ``ThreadingActor``\\ s, round-robin ``tell`` from the sender's thread.

A second table measures the routing's own cost with a handler that does nothing: N tells
through the pool against N tells straight to one ``ActorRef`` (no pool) and a round-robin over
8 ``asyncio.Queue`` workers.

Every rate is the best of the runs (the median beside it), the implementations taken in turn in
each round; correctness is checked on each run (every message handled once).

Run: python bench/bench_pool.py [--quick] [--messages N] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

import pykka

from _common import fmt_rate, machine, progress, table
from swarm_actors import Actor, ActorSystem, handler

SIZE = 8
USERS = 64


class Job:
    __slots__ = ("user",)

    def __init__(self, user: str) -> None:
        self.user = user


class Counted:
    """Messages handled, and an event set when the expected number is reached."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = asyncio.Event()

    def one(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()


class SlowWorker(Actor):
    def __init__(self, counted: Counted) -> None:
        self.counted = counted

    @handler
    async def job(self, msg: Job) -> None:
        await asyncio.sleep(0.001)
        self.counted.one()


class FastWorker(Actor, mailbox_size=65_536):
    def __init__(self, counted: Counted) -> None:
        self.counted = counted

    @handler
    async def job(self, msg: Job) -> None:
        self.counted.one()


JOBS = [Job(f"user-{n % USERS}") for n in range(USERS)]


def _user(msg: Job) -> str:
    return msg.user


async def swarm_pool(n: int, routing: str, slow: bool) -> float:
    counted = Counted(n)
    worker = SlowWorker if slow else FastWorker
    async with ActorSystem(journal=None) as system:
        key = _user if routing == "consistent_hash" else None
        pool = await system.pool(worker, counted, size=SIZE, routing=routing, key=key)
        start = time.perf_counter()
        for i in range(n):
            await pool.tell(JOBS[i % USERS])
        await counted.done.wait()
        took = time.perf_counter() - start
    assert counted.count == n
    return n / took


async def swarm_single(n: int) -> float:
    counted = Counted(n)
    async with ActorSystem(journal=None) as system:
        ref = await system.start(FastWorker, counted)
        start = time.perf_counter()
        for i in range(n):
            await ref.tell(JOBS[i % USERS])
        await counted.done.wait()
        took = time.perf_counter() - start
    assert counted.count == n
    return n / took


async def asyncio_pool(n: int, shared: bool, slow: bool) -> float:
    counted = Counted(n)
    queues = [asyncio.Queue[Job](maxsize=1000 if slow else 65_536) for _ in range(SIZE)]
    if shared:
        queues = [queues[0]] * SIZE

    async def work(queue: asyncio.Queue[Job]) -> None:
        while True:
            await queue.get()
            if slow:
                await asyncio.sleep(0.001)
            counted.one()

    workers = [asyncio.create_task(work(q)) for q in queues]
    start = time.perf_counter()
    for i in range(n):
        await queues[i % SIZE].put(JOBS[i % USERS])
    await counted.done.wait()
    took = time.perf_counter() - start
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    assert counted.count == n
    return n / took


class PykkaWorker(pykka.ThreadingActor):
    def __init__(self, counter: list[int], lock: threading.Lock, done: threading.Event, n: int):
        super().__init__()
        self.counter, self.lock, self.done, self.n = counter, lock, done, n

    def on_receive(self, message: Any) -> None:
        time.sleep(0.001)
        with self.lock:
            self.counter[0] += 1
            if self.counter[0] == self.n:
                self.done.set()


def pykka_pool(n: int) -> float:
    counter, lock, done = [0], threading.Lock(), threading.Event()
    refs = [PykkaWorker.start(counter, lock, done, n) for _ in range(SIZE)]
    try:
        start = time.perf_counter()
        for i in range(n):
            refs[i % SIZE].tell(JOBS[i % USERS])
        assert done.wait(120)
        took = time.perf_counter() - start
    finally:
        for ref in refs:
            ref.stop()
    assert counter[0] == n
    return n / took


async def asyncio_sleep_ms() -> float:
    """What ``await asyncio.sleep(0.001)`` really takes here, in ms (mean of 200)."""
    start = time.perf_counter()
    for _ in range(200):
        await asyncio.sleep(0.001)
    return (time.perf_counter() - start) / 200 * 1e3


def thread_sleep_ms() -> float:
    """What ``time.sleep(0.001)`` really takes here, in ms (mean of 200)."""
    start = time.perf_counter()
    for _ in range(200):
        time.sleep(0.001)
    return (time.perf_counter() - start) / 200 * 1e3


def interleaved(
    runs: dict[str, Callable[[], float]], repeats: int
) -> dict[str, tuple[float, float]]:
    """Best and median rate of each run, the runs taken in turn in every round.

    In turn, not one after the other: on a shared machine the load changes over a minute, and
    each implementation then meets the same load.
    """
    rates: dict[str, list[float]] = {label: [] for label in runs}
    for i in range(repeats):
        for label, run in runs.items():
            gc.collect()
            rates[label].append(run())
            progress(f"  {label} run {i + 1}/{repeats}: {fmt_rate(rates[label][-1])}")
    return {label: (max(r), statistics.median(r)) for label, r in rates.items()}


def in_loop(make: Callable[[], Awaitable[float]]) -> Callable[[], float]:
    return lambda: asyncio.run(make())  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    parser.add_argument("--messages", type=int, default=None, help="messages of the 1 ms table")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    n = args.messages or (2_000 if args.quick else 8_000)
    fast_n = 20_000 if args.quick else 200_000
    repeats = args.repeats or (1 if args.quick else 5)

    progress(f"pool of {SIZE}, handler awaits 1 ms, {n} messages, best of {repeats}")
    slow_runs: dict[str, Callable[[], float]] = {}
    for routing in ("round_robin", "least_busy", "consistent_hash"):
        slow_runs[f"swarm-actors pool, {routing}"] = in_loop(
            lambda r=routing: swarm_pool(n, r, True)  # type: ignore[misc]
        )
    slow_runs["asyncio, 8 tasks on one shared Queue"] = in_loop(lambda: asyncio_pool(n, True, True))
    slow_runs["asyncio, 8 tasks with a Queue each, round-robin"] = in_loop(
        lambda: asyncio_pool(n, False, True)
    )
    slow_runs[f"pykka {version('pykka')}, 8 ThreadingActors, round-robin"] = lambda: pykka_pool(n)
    slow = interleaved(slow_runs, repeats)

    progress(f"routing cost: handler does nothing, {fast_n} tells, best of {repeats}")
    fast_runs: dict[str, Callable[[], float]] = {}
    for routing in ("round_robin", "least_busy", "consistent_hash"):
        fast_runs[f"swarm-actors pool of 8, {routing}"] = in_loop(
            lambda r=routing: swarm_pool(fast_n, r, False)  # type: ignore[misc]
        )
    fast_runs["swarm-actors, one ActorRef (no pool)"] = in_loop(lambda: swarm_single(fast_n))
    fast_runs["asyncio, 8 tasks with a Queue each, round-robin"] = in_loop(
        lambda: asyncio_pool(fast_n, False, False)
    )
    fast = interleaved(fast_runs, repeats)

    pykka_rate = next(v[0] for k, v in slow.items() if k.startswith("pykka"))
    shared_rate = slow["asyncio, 8 tasks on one shared Queue"][0]
    print(f"## Pools ({machine()})")
    print()
    print(
        f"Pool of {SIZE} members, handler awaits 1 ms (pykka: `time.sleep(0.001)`), "
        f"{n:,} messages from one sender, best of {repeats} (median beside it):"
    )
    print()
    rows = [
        [
            label,
            fmt_rate(rate),
            fmt_rate(median),
            f"{rate / shared_rate:.2f}",
            f"{rate / pykka_rate:.2f}",
        ]
        for label, (rate, median) in slow.items()
    ]
    print(table(["pool", "messages/s", "median", "/ asyncio shared", "/ pykka"], rows))
    print()
    single = fast["swarm-actors, one ActorRef (no pool)"][0]
    print(
        f"Routing cost: the handler does nothing, {fast_n:,} tells from one sender "
        "(mailboxes of 65,536):"
    )
    print()
    rows = [
        [label, fmt_rate(rate), fmt_rate(median), f"{rate / single:.2f}"]
        for label, (rate, median) in fast.items()
    ]
    print(table(["sender -> ", "tells/s", "median", "/ one ActorRef"], rows))
    print()
    loop_ms, thread_ms = asyncio.run(asyncio_sleep_ms()), thread_sleep_ms()
    print(
        f"- The 1 ms wait really takes {loop_ms:.2f} ms as `await asyncio.sleep(0.001)` and "
        f"{thread_ms:.2f} ms as `time.sleep(0.001)` here (the event loop waits for its timers "
        "in whole milliseconds): every asyncio row, swarm-actors' and the hand-made pools', is "
        f"bounded by the loop's timer (8 members / {loop_ms:.2f} ms: about "
        f"{SIZE / loop_ms * 1e3:,.0f}/s), pykka's threads by the OS's (about "
        f"{SIZE / thread_ms * 1e3:,.0f}/s). Consistent hashing sends each "
        f"of the {USERS} users to one member, and the members do not get the same number of "
        "users: the busiest sets the pace."
    )
    print(
        "- Correctness: every run counted each message handled exactly once (N of N) — all passed."
    )
    print()


if __name__ == "__main__":
    sys.exit(main())
