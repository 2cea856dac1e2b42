"""Actor messaging: swarm-actors vs a plain asyncio actor vs pykka, side by side in one run.

Three measurements, each with a trivial handler:

* tell throughput from one sender: N tells of one shared ``Inc`` message (the handler adds 1 to
  a counter), timed until the last one is *handled*: the run ends with an ``ask(Get())`` that
  queues behind them and must return N;
* sequential ask round trips: ``await ref.ask(Ping())`` in a loop (the handler counts pings and
  returns the count, so every reply is checked);
* 64 concurrent askers: 64 tasks (pykka: 64 threads) each asking sequentially, one actor.

The plain asyncio baseline is one task per actor reading a bounded ``asyncio.Queue`` (same
capacity as the swarm-actors mailbox), dispatching on the message type to an ``async def``
handler, replying through a future. pykka (a thread per actor) runs outside the event loop with
blocking ``tell``/``ask``; its mailbox is unbounded and it gets fewer messages (it is slower).

swarm-actors runs an ``ask`` to an idle actor *inline* in the caller's task: with a handler that
never suspends, the round trip costs no event-loop iteration (but one in 128 such asks yields
to the loop once, so that a loop of them cannot starve other tasks). The "handler suspends
once" rows use a handler that does ``await asyncio.sleep(0)`` first (for the asyncio baseline
too), which measures the non-inline path: the handler is finished in a task and queued asks
wait in the mailbox.

Every rate is the best of 3 runs (the median is shown too); ``gc.collect()`` runs before each
run and the collector stays enabled for every implementation.

Run: python bench/bench_actors.py [--quick] [--repeats 3] [--only TEXT]

``--instructions`` counts instead the CPU instructions per message of four rows (swarm-actors,
the asyncio actor, and the floor on the suspending rows) under callgrind, two sizes and the
difference: counts repeat exactly, so two trees compare where wall clock is too noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pykka

from _common import callgrind_per_unit, fmt_rate, machine, progress, table
from swarm_actors import Actor, ActorSystem, handler

CONCURRENT = 64
BIG_MAILBOX = 65_536
DEFAULT_MAILBOX = 1000


# --- messages ---------------------------------------------------------------------------------


class Inc:
    __slots__ = ()


class Get:
    __slots__ = ()


class Ping:
    __slots__ = ()


class SlowPing:
    """Like ``Ping``, but the handler suspends once before answering."""

    __slots__ = ()


INC, GET, PING, SLOW_PING = Inc(), Get(), Ping(), SlowPing()


@dataclass
class Result:
    rate: float
    ok: bool
    detail: str


# --- swarm-actors -----------------------------------------------------------------------------


class SwarmCounter(Actor, mailbox_size=BIG_MAILBOX):
    def __init__(self) -> None:
        self.count = 0
        self.pings = 0

    @handler
    async def inc(self, msg: Inc) -> None:
        self.count += 1

    @handler
    async def get(self, msg: Get) -> int:
        return self.count

    @handler
    async def ping(self, msg: Ping) -> int:
        self.pings += 1
        return self.pings

    @handler
    async def slow_ping(self, msg: SlowPing) -> int:
        await asyncio.sleep(0)
        self.pings += 1
        return self.pings


class SwarmCounterDefault(SwarmCounter, mailbox_size=DEFAULT_MAILBOX):
    pass


# --- plain asyncio baseline: one task per actor, an asyncio.Queue, futures for replies --------


class Request:
    __slots__ = ("future", "message")

    def __init__(self, message: Any, future: asyncio.Future[Any]) -> None:
        self.message = message
        self.future = future


class QueueActor:
    def __init__(self, maxsize: int) -> None:
        self.count = 0
        self.pings = 0
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.handlers: dict[type, Callable[[Any], Awaitable[Any]]] = {
            Inc: self.inc,
            Get: self.get,
            Ping: self.ping,
            SlowPing: self.slow_ping,
        }
        self.task = self.loop.create_task(self.run())

    async def inc(self, msg: Inc) -> None:
        self.count += 1

    async def get(self, msg: Get) -> int:
        return self.count

    async def ping(self, msg: Ping) -> int:
        self.pings += 1
        return self.pings

    async def slow_ping(self, msg: SlowPing) -> int:
        await asyncio.sleep(0)
        self.pings += 1
        return self.pings

    async def run(self) -> None:
        get, handlers = self.queue.get, self.handlers
        while True:
            item = await get()
            if type(item) is Request:
                try:
                    result = await handlers[type(item.message)](item.message)
                except Exception as exc:
                    if not item.future.done():
                        item.future.set_exception(exc)
                else:
                    if not item.future.done():
                        item.future.set_result(result)
            else:
                await handlers[type(item)](item)

    async def tell(self, message: Any) -> None:
        await self.queue.put(message)

    async def ask(self, message: Any) -> Any:
        future = self.loop.create_future()
        await self.queue.put(Request(message, future))
        return await future

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


# --- the floor: the least a task-per-actor ask can cost in Python -----------------------------


class FloorActor(QueueActor):
    """A deque, one waiter future, a reply future: no capacity, no timeout, no supervision.

    Not an actor anyone should ship (an unbounded mailbox, asks that can wait forever, a failed
    handler ends it). It is the floor for the suspending rows: each message needs one event-loop
    iteration for the handler's ``sleep(0)`` and one wake-up of its asker, whatever the actor
    does around them, so no Python actor on this loop can beat it by much. Measured by
    instructions (bench/RESULTS.md), it sets how far above a plain asyncio actor one can go.
    """

    def __init__(self, maxsize: int) -> None:
        self.mailbox: deque[Any] = deque()
        self.waiter: asyncio.Future[None] | None = None
        super().__init__(maxsize)

    async def run(self) -> None:
        mailbox, handlers, loop = self.mailbox, self.handlers, self.loop
        while True:
            if not mailbox:
                self.waiter = loop.create_future()
                await self.waiter
                continue
            item = mailbox.popleft()
            if type(item) is Request:
                try:
                    result = await handlers[type(item.message)](item.message)
                except Exception as exc:
                    item.future.set_exception(exc)
                else:
                    item.future.set_result(result)
            else:
                await handlers[type(item)](item)

    def _post(self, item: Any) -> None:
        self.mailbox.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def tell(self, message: Any) -> None:
        self._post(message)

    async def ask(self, message: Any) -> Any:
        future = self.loop.create_future()
        self._post(Request(message, future))
        return await future


# --- the async measurements (shared by swarm-actors and the baseline) -------------------------


async def tell_run(ref: Any, n: int) -> Result:
    tell = ref.tell
    t0 = time.perf_counter()
    for _ in range(n):
        await tell(INC)
    count = await ref.ask(GET)  # queued behind every tell: all of them are handled
    spent = time.perf_counter() - t0
    return Result(n / spent, count == n, f"counter {count:,} of {n:,}")


async def seq_ask_run(ref: Any, n: int, message: Any) -> Result:
    ask = ref.ask
    last = 0
    t0 = time.perf_counter()
    for _ in range(n):
        last = await ask(message)
    spent = time.perf_counter() - t0
    return Result(n / spent, last == n, f"last reply {last:,} of {n:,}")


async def concurrent_ask_run(ref: Any, total: int, message: Any) -> Result:
    per = total // CONCURRENT

    async def asker() -> int:
        ask, answered = ref.ask, 0
        for _ in range(per):
            if await ask(message):
                answered += 1
        return answered

    t0 = time.perf_counter()
    answered = sum(await asyncio.gather(*(asker() for _ in range(CONCURRENT))))
    spent = time.perf_counter() - t0
    n = per * CONCURRENT
    seen = await ref.ask(message) - 1  # the actor's own count of pings before this one
    return Result(n / spent, answered == n == seen, f"{answered:,} answered, {seen:,} handled")


async def swarm_run(kind: str, n: int, actor_class: type[SwarmCounter], message: Any) -> Result:
    async with ActorSystem() as system:
        ref = await system.start(actor_class)
        if kind == "tell":
            return await tell_run(ref, n)
        if kind == "ask":
            return await seq_ask_run(ref, n, message)
        return await concurrent_ask_run(ref, n, message)


async def queue_run(
    kind: str, n: int, maxsize: int, message: Any, actor_class: type[QueueActor] = QueueActor
) -> Result:
    actor = actor_class(maxsize)
    try:
        if kind == "tell":
            return await tell_run(actor, n)
        if kind == "ask":
            return await seq_ask_run(actor, n, message)
        return await concurrent_ask_run(actor, n, message)
    finally:
        await actor.stop()


# --- pykka ------------------------------------------------------------------------------------


class PykkaCounter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.pings = 0
        self.handlers: dict[type, Callable[[Any], Any]] = {
            Inc: self.inc,
            Get: self.get,
            Ping: self.ping,
        }

    def inc(self, msg: Inc) -> None:
        self.count += 1

    def get(self, msg: Get) -> int:
        return self.count

    def ping(self, msg: Ping) -> int:
        self.pings += 1
        return self.pings

    def on_receive(self, message: Any) -> Any:
        return self.handlers[type(message)](message)


def pykka_run(kind: str, n: int) -> Result:
    ref = PykkaCounter.start()
    try:
        if kind == "tell":
            t0 = time.perf_counter()
            for _ in range(n):
                ref.tell(INC)
            count = ref.ask(GET)
            spent = time.perf_counter() - t0
            return Result(n / spent, count == n, f"counter {count:,} of {n:,}")
        if kind == "ask":
            last = 0
            t0 = time.perf_counter()
            for _ in range(n):
                last = ref.ask(PING)
            spent = time.perf_counter() - t0
            return Result(n / spent, last == n, f"last reply {last:,} of {n:,}")
        per = n // CONCURRENT
        answered = [0] * CONCURRENT
        barrier = threading.Barrier(CONCURRENT + 1)

        def asker(i: int) -> None:
            barrier.wait()
            got = 0
            for _ in range(per):
                if ref.ask(PING):
                    got += 1
            answered[i] = got

        threads = [threading.Thread(target=asker, args=(i,)) for i in range(CONCURRENT)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        spent = time.perf_counter() - t0
        total, seen = per * CONCURRENT, ref.ask(PING) - 1
        ok = sum(answered) == total == seen
        return Result(total / spent, ok, f"{sum(answered):,} answered, {seen:,} handled")
    finally:
        ref.stop()


# --- driver -----------------------------------------------------------------------------------


def repeat(label: str, repeats: int, fn: Callable[[], Result]) -> tuple[float, float, list[str]]:
    """Best and median rate over ``repeats`` runs, and the failed checks."""
    rates, failures = [], []
    for i in range(repeats):
        gc.collect()
        r = fn()
        rates.append(r.rate)
        if not r.ok:
            failures.append(f"{label}: {r.detail}")
        progress(f"  {label} run {i + 1}/{repeats}: {fmt_rate(r.rate)} ({r.detail})")
    return max(rates), statistics.median(rates), failures


@dataclass
class Row:
    label: str
    kind: str  # tell | ask | concurrent
    n: int
    n_pykka: int
    mailbox: int
    message: Any
    pykka: bool


# --- instructions (callgrind) -------------------------------------------------------------

ROWS_BY_KIND: dict[str, tuple[str, Any]] = {
    "tell": ("tell", INC),
    "ask-inline": ("ask", PING),
    "ask-suspends": ("ask", SLOW_PING),
    "concurrent-suspends": ("concurrent", SLOW_PING),
}
"""The rows counted by ``--instructions``: name -> (kind, message), mailbox 65,536."""


def run_one(impl: str, row: tuple[str, Any], n: int) -> None:
    kind, message = row
    if impl == "swarm":
        asyncio.run(swarm_run(kind, n, SwarmCounter, message))
    else:
        actor_class = FloorActor if impl == "floor" else QueueActor
        asyncio.run(queue_run(kind, n, BIG_MAILBOX, message, actor_class))


def count_instructions(only: str) -> None:
    """Instructions per message of each row, per implementation (about 10 minutes)."""
    cells = []
    for name, row in ROWS_BY_KIND.items():
        if only not in name:
            continue
        impls = ["swarm", "asyncio"] + (["floor"] if row[1] is SLOW_PING else [])
        counts = {}
        for impl in impls:
            progress(f"callgrind: {name}, {impl} (2 runs)")
            counts[impl] = callgrind_per_unit(
                lambda n, impl=impl, name=name: [
                    sys.executable,
                    __file__,
                    "--cg",
                    impl,
                    name,
                    str(n),
                ],
                (6_400, 25_600),
            )
        swarm, plain = counts["swarm"], counts["asyncio"]
        floor = counts.get("floor")
        cells.append(
            [
                name,
                f"{swarm:,.0f}",
                f"{plain:,.0f}",
                f"{plain / swarm:.2f}x",
                "—" if floor is None else f"{floor:,.0f}",
                "—" if floor is None else f"{plain / floor:.2f}x",
            ]
        )
    print("## Actor messaging: instructions per message (callgrind)\n")
    print(
        f"`python bench/bench_actors.py --instructions` on {machine()}: N = 25,600 minus "
        "N = 6,400, `PYTHONHASHSEED=0`; mailbox 65,536. *asyncio / swarm* is the speed ratio "
        "instructions predict (above 1: swarm-actors runs fewer).\n"
    )
    headers = [
        "row",
        "swarm-actors",
        "asyncio actor",
        "asyncio / swarm",
        "floor",
        "asyncio / floor",
    ]
    print(table(headers, cells))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller N (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only",
        default="",
        help="run only the rows whose label contains this text (e.g. 'suspends')",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per message with callgrind instead (swarm-actors, asyncio, floor)",
    )
    parser.add_argument("--cg", nargs=3, metavar=("IMPL", "ROW", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cg:  # one run under callgrind (see --instructions)
        impl, label, size = args.cg
        run_one(impl, ROWS_BY_KIND[label], int(size))
        return
    if args.instructions:
        count_instructions(args.only)
        return
    if args.quick:
        n_tell, n_tell_pykka, n_ask, n_ask_pykka = 100_000, 20_000, 20_000, 2_048
    else:
        n_tell, n_tell_pykka, n_ask, n_ask_pykka = 1_000_000, 200_000, 200_000, 20_480

    rows = [
        Row(f"tell, mailbox {BIG_MAILBOX:,}", "tell", n_tell, n_tell_pykka, BIG_MAILBOX, INC, True),
        Row(
            f"tell, mailbox {DEFAULT_MAILBOX:,} (default)",
            "tell",
            n_tell,
            0,
            DEFAULT_MAILBOX,
            INC,
            False,
        ),
        Row("sequential ask, inline handler", "ask", n_ask, n_ask_pykka, BIG_MAILBOX, PING, True),
        Row(
            "sequential ask, handler suspends once", "ask", n_ask, 0, BIG_MAILBOX, SLOW_PING, False
        ),
        Row(
            f"{CONCURRENT} concurrent askers, inline handler",
            "concurrent",
            n_ask,
            n_ask_pykka,
            BIG_MAILBOX,
            PING,
            True,
        ),
        Row(
            f"{CONCURRENT} concurrent askers, handler suspends once",
            "concurrent",
            n_ask,
            0,
            BIG_MAILBOX,
            SLOW_PING,
            False,
        ),
    ]

    rows = [row for row in rows if args.only in row.label]
    failures: list[str] = []
    cells: list[list[object]] = []
    summary: dict[str, float] = {}
    for row in rows:
        progress(f"{row.label} (N = {row.n:,}, pykka {row.n_pykka:,})")
        actor_class = SwarmCounter if row.mailbox == BIG_MAILBOX else SwarmCounterDefault

        def swarm(row: Row = row, actor_class: type[SwarmCounter] = actor_class) -> Result:
            return asyncio.run(swarm_run(row.kind, row.n, actor_class, row.message))

        def baseline(row: Row = row) -> Result:
            return asyncio.run(queue_run(row.kind, row.n, row.mailbox, row.message))

        def pykka_fn(row: Row = row) -> Result:
            return pykka_run(row.kind, row.n_pykka)

        def floor(row: Row = row) -> Result:
            return asyncio.run(queue_run(row.kind, row.n, row.mailbox, row.message, FloorActor))

        s_best, s_med, f = repeat("swarm-actors", args.repeats, swarm)
        failures += [f"{row.label}, {x}" for x in f]
        b_best, b_med, f = repeat("asyncio baseline", args.repeats, baseline)
        failures += [f"{row.label}, {x}" for x in f]
        summary[row.label] = s_best
        cell: list[object] = [
            row.label,
            f"{row.n:,}",
            f"**{fmt_rate(s_best)}** ({fmt_rate(s_med)})",
            f"{fmt_rate(b_best)} ({fmt_rate(b_med)})",
        ]
        if row.pykka:
            p_best, p_med, f = repeat("pykka", args.repeats, pykka_fn)
            failures += [f"{row.label}, {x}" for x in f]
            cell += [f"{row.n_pykka:,}", f"{fmt_rate(p_best)} ({fmt_rate(p_med)})"]
        else:
            cell += ["—", "—"]
        cell.append(f"{s_best / b_best:.2f}x")
        cell.append(f"{s_best / p_best:.1f}x" if row.pykka else "—")
        if row.message is SLOW_PING:  # the suspending rows: how far the floor is
            f_best, f_med, f = repeat("floor", args.repeats, floor)
            failures += [f"{row.label}, floor {x}" for x in f]
            cell += [f"{fmt_rate(f_best)} ({fmt_rate(f_med)})", f"{f_best / b_best:.2f}x"]
        else:
            cell += ["—", "—"]
        cells.append(cell)

    command = " ".join(["python bench/bench_actors.py", *sys.argv[1:]])
    print("## Actor messaging\n")
    print(
        f"`{command}` on {machine()}, pykka {version('pykka')}, default asyncio event loop. "
        "Rates are best of "
        f"{args.repeats} runs, the median in parentheses; ratios compare the best rates.\n"
    )
    headers = [
        "measurement",
        "N",
        "swarm-actors",
        "asyncio Queue + task",
        "pykka N",
        "pykka 4 (threads)",
        "swarm / asyncio",
        "swarm / pykka",
        "floor (deque + futures)",
        "floor / asyncio",
    ]
    print(table(headers, cells))
    print()
    print(
        "- *tell*: one sender, one shared `Inc` message, `await ref.tell(msg)` in a loop; timed "
        "until an `ask(Get())` queued behind the tells returns N. The asyncio baseline's queue "
        "has the same capacity as the swarm-actors mailbox; pykka's mailbox is unbounded "
        "(measured once, in the first row)."
    )
    print(
        "- *sequential ask*: `await ref.ask(Ping())` in a loop (pykka: blocking `ref.ask`). "
        "*inline handler*: the handler never suspends, so swarm-actors runs it in the caller's "
        "task (no event-loop hop). *handler suspends once*: `await asyncio.sleep(0)` in the "
        "handler (asyncio baseline too) forces the non-inline path; pykka has no equivalent."
    )
    print(
        f"- *{CONCURRENT} concurrent askers*: {CONCURRENT} asyncio tasks each asking "
        f"N / {CONCURRENT} times in sequence, one actor; pykka: {CONCURRENT} threads doing "
        "blocking asks, released together by a barrier. With the inline handler a "
        "swarm-actors ask suspends only at the checkpoint every 128 inline asks, so the 64 "
        "tasks take turns in runs of 128: that row exercises the same path as the sequential "
        "asks. The suspending handler makes them queue in the mailbox (each queued ask is then "
        "finished in a task)."
    )
    print(
        "- *floor*: the least a task-per-actor ask costs in Python (`FloorActor`: a deque, a "
        "waiter future, a reply future; no capacity, no timeout, no supervision), on the "
        "suspending rows. Every message still needs one loop iteration for the handler's "
        "`sleep(0)` and one wake-up of its asker, so *floor / asyncio* bounds what any actor "
        "can gain over the plain asyncio one on those rows."
    )
    print(
        "- Targets (swarm-actors): tell >= 1M/s, sequential ask >= 200k/s, "
        f"{CONCURRENT} concurrent askers >= 200k/s."
    )
    targets = [
        (f"tell, mailbox {BIG_MAILBOX:,}", 1e6),
        ("sequential ask, inline handler", 2e5),
        (f"{CONCURRENT} concurrent askers, inline handler", 2e5),
    ]
    met = [
        f"{label}: {fmt_rate(summary[label])} {'meets' if summary[label] >= goal else 'MISSES'} "
        f"{fmt_rate(goal)}"
        for label, goal in targets
        if label in summary
    ]
    if met:
        print("  " + "; ".join(met) + ".")
    if failures:
        print("- **Correctness checks FAILED**: " + "; ".join(failures) + ".")
    else:
        print(
            "- Correctness: every run checked (tell: counter == N; ask: every reply "
            "answered and the actor's ping count == N) — all passed."
        )
    print()
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
