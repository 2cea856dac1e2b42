"""Supervision (one-for-one, all-for-one, backoff, escalation) and timers, on a virtual clock."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import pytest

from helpers import Tick, instance
from swarm_actors import (
    Actor,
    ActorRef,
    ActorSystem,
    AllForOne,
    Backoff,
    Directive,
    EscalatedError,
    OneForOne,
    handler,
)
from swarm_actors.testing import VirtualClock, settle

pytestmark = pytest.mark.asyncio

EVENTS: list[tuple[str, Any]] = []


@dataclass
class Work:
    n: int
    fail: bool = False


class Worker(Actor):
    def __init__(self) -> None:
        self.done: list[int] = []

    async def on_start(self) -> None:
        EVENTS.append(("start", self.ref.name))

    async def on_stop(self) -> None:
        EVENTS.append(("stop", self.ref.name))

    async def on_failure(self, exc: BaseException) -> None:
        EVENTS.append(("failure", repr(exc)))

    @handler
    async def work(self, msg: Work) -> int:
        if msg.fail:
            raise RuntimeError(f"failed on {msg.n}")
        self.done.append(msg.n)
        return msg.n

    @handler
    async def tick(self, msg: Tick) -> None:
        EVENTS.append(("tick", self.ref.name))


@pytest.fixture(autouse=True)
def _clear() -> None:
    EVENTS.clear()


async def test_one_for_one_restart_keeps_the_mailbox() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Worker, name="w")
        first = instance(ref)
        for i, fail in enumerate([False, True, False, False]):
            ref.tell_nowait(Work(i, fail))
        await settle()
        assert await ref.ask(Work(9)) == 9
        second = instance(ref)
        assert second is not first, "a restart builds a fresh instance"
        assert first.done == [0]
        assert second.done == [2, 3, 9], "messages queued behind the failure survive it"
        assert ref.stats().restarts == 1
        assert ("failure", "RuntimeError('failed on 1')") in EVENTS
        assert EVENTS.count(("start", "w")) == 2


async def test_backoff_delays_the_restart() -> None:
    clock = VirtualClock()
    strategy = OneForOne(backoff=Backoff(initial=2.0, jitter=0.0))
    async with ActorSystem(supervision=strategy, clock=clock) as system:
        ref = await system.start(Worker)
        ref.tell_nowait(Work(1, fail=True))
        ref.tell_nowait(Work(2))
        await clock.advance(1.9)
        assert ref.stats().restarts == 0
        assert ref.stats().pending == 1, "nothing is handled while waiting to restart"
        await clock.advance(0.2)
        assert ref.stats().restarts == 1
        assert instance(ref).done == [2]
        # The next consecutive restart waits twice as long.
        ref.tell_nowait(Work(3, fail=True))
        await clock.advance(3.9)
        assert ref.stats().restarts == 1
        await clock.advance(0.2)
        assert ref.stats().restarts == 2


async def test_backoff_grows_and_jitters_within_bounds() -> None:
    b = Backoff(initial=0.1, factor=2.0, maximum=1.0, jitter=0.5)
    for attempt, base in [(0, 0.1), (1, 0.2), (3, 0.8), (10, 1.0)]:
        for _ in range(50):
            assert base * 0.5 <= b.delay(attempt) <= base * 1.5
    assert Backoff().delay(5) == 0.0
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=2)


class Pair(Actor, supervision=AllForOne()):
    async def on_start(self) -> None:
        await self.start_child(Worker, name="a")
        await self.start_child(Worker, name="b")


async def test_all_for_one_restarts_every_sibling() -> None:
    async with ActorSystem() as system:
        await system.start(Pair, name="pair")
        a, b = system.lookup("a"), system.lookup("b")
        assert isinstance(a, ActorRef)
        assert isinstance(b, ActorRef)
        b_before = instance(b)
        await a.tell(Work(1, fail=True))
        await settle()
        assert instance(b) is not b_before, "the sibling was restarted too"
        assert a.stats().restarts == 1
        assert b.stats().restarts == 1
        assert await b.ask(Work(5)) == 5


class Guardian(Actor, supervision=OneForOne(max_restarts=2, within=60.0)):
    starts = 0

    async def on_start(self) -> None:
        Guardian.starts += 1
        await self.start_child(Worker, name="fragile")


async def test_too_many_restarts_escalate_to_the_parent() -> None:
    Guardian.starts = 0
    failures: list[BaseException] = []

    def decide(exc: BaseException) -> Directive:
        failures.append(exc)
        return Directive.RESTART

    async with ActorSystem(supervision=OneForOne(decider=decide)) as system:
        await system.start(Guardian, name="guardian")
        for _ in range(3):
            fragile = system.lookup("fragile")
            assert fragile is not None
            await fragile.tell(Work(0, fail=True))
            await settle()
        # Two restarts were allowed; the third failure escalated: the guardian restarted,
        # which stopped its child and recreated it in on_start.
        assert Guardian.starts == 2
        assert any(isinstance(e, EscalatedError) for e in failures)
        escalated = next(e for e in failures if isinstance(e, EscalatedError))
        assert isinstance(escalated.__cause__, RuntimeError)
        fresh = system.lookup("fragile")
        assert isinstance(fresh, ActorRef)
        assert fresh.stats().restarts == 0
        assert await fresh.ask(Work(7)) == 7


async def test_top_level_escalation_stops_the_actor_not_the_system() -> None:
    strategy = OneForOne(max_restarts=0)
    async with ActorSystem(supervision=strategy) as system:
        doomed = await system.start(Worker, name="doomed")
        healthy = await system.start(Worker, name="healthy")
        await doomed.tell(Work(0, fail=True))
        await settle()
        assert not doomed.is_alive
        assert system.lookup("doomed") is None
        assert await healthy.ask(Work(1)) == 1


async def test_stop_directive_discards_the_rest() -> None:
    strategy = OneForOne(decider=lambda exc: Directive.STOP)
    async with ActorSystem(supervision=strategy) as system:
        ref = await system.start(Worker)
        ref.tell_nowait(Work(0, fail=True))
        ref.tell_nowait(Work(1))
        ref.tell_nowait(Work(2))
        await settle()
        assert not ref.is_alive
        assert ref.stats().dropped == 2


class Ticker(Worker):
    async def on_start(self) -> None:
        await super().on_start()
        self.timers.start_periodic("tick", Tick(), 1.0)
        self.timers.start_single("once", Work(100), 0.5)


async def test_timers_fire_on_the_clock_and_stop_with_the_actor() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        ref = await system.start(Ticker, name="ticker")
        await clock.advance(0.4)
        assert instance(ref).done == []
        await clock.advance(0.2)
        assert instance(ref).done == [100]
        await clock.advance(2.5)  # t = 3.1: ticks at 1, 2 and 3
        assert EVENTS.count(("tick", "ticker")) == 3
        assert "tick" in instance(ref).timers
        await ref.stop()
        assert clock.pending == 0, "timers are cancelled when the actor stops"
        await clock.advance(5)
        assert EVENTS.count(("tick", "ticker")) == 3


async def test_restart_cancels_and_on_start_rearms_timers() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        ref = await system.start(Ticker)
        await ref.tell(Work(0, fail=True))
        await settle()
        assert ref.stats().restarts == 1
        assert clock.pending == 2, "old timers cancelled, new instance armed its own"
        with pytest.raises(ValueError, match="interval"):
            instance(ref).timers.start_periodic("bad", Tick(), 0)


class Cancelling(Worker):
    @handler
    async def tick(self, msg: Tick) -> None:
        # Not a cancellation of this task: a handler that raises CancelledError itself (e.g. a
        # sub-task it awaited was cancelled). It is no ordinary error to restart from.
        raise asyncio.CancelledError("sub-task cancelled")


class CancellingParent(Actor):
    async def on_start(self) -> None:
        await self.start_child(Cancelling, name="canceller")


async def test_default_decider_restarts_errors_and_escalates_the_rest() -> None:
    decide = OneForOne().decider
    assert decide(RuntimeError("x")) is Directive.RESTART
    assert decide(asyncio.CancelledError()) is Directive.ESCALATE
    assert decide(KeyboardInterrupt()) is Directive.ESCALATE
    assert AllForOne().decider(asyncio.CancelledError()) is Directive.ESCALATE


async def test_a_handler_raising_cancelled_error_is_escalated_not_restarted() -> None:
    failures: list[BaseException] = []

    def decide(exc: BaseException) -> Directive:
        failures.append(exc)
        return Directive.STOP

    async with ActorSystem(supervision=OneForOne(decider=decide)) as system:
        parent = await system.start(CancellingParent, name="parent")
        child = system.lookup("canceller")
        assert isinstance(child, ActorRef)
        await child.tell(Tick())
        await settle()
        # The child's default strategy (its parent's class default) escalated: the parent
        # failed with EscalatedError caused by the CancelledError, and no restart happened.
        assert child.stats().restarts == 0
        assert len(failures) == 1
        assert isinstance(failures[0], EscalatedError)
        assert isinstance(failures[0].__cause__, asyncio.CancelledError)
        assert not parent.is_alive

    async with ActorSystem() as system:
        top = await system.start(Cancelling, name="top")
        await top.tell(Tick())
        await settle()
        # Top level: escalation reaches the system, which stops the actor.
        assert top.stats().restarts == 0
        assert not top.is_alive


async def test_a_fired_single_timer_is_forgotten() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        ref = await system.start(Worker, name="w")
        timers = instance(ref).timers
        timers.start_single("once", Work(1), 1.0)
        assert "once" in timers
        assert len(timers) == 1
        await clock.advance(1.5)
        assert instance(ref).done == [1]
        # Fired: no longer running, so "start it unless it is running" starts it again.
        assert "once" not in timers
        assert len(timers) == 0
        assert timers.cancel("once") is False
        if "once" not in timers:
            timers.start_single("once", Work(2), 1.0)
        await clock.advance(1.5)
        assert instance(ref).done == [1, 2]
        assert clock.pending == 0


async def test_a_periodic_timer_stays_registered_until_cancelled() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        ref = await system.start(Worker, name="w")
        timers = instance(ref).timers
        timers.start_periodic("p", Tick(), 1.0)
        await clock.advance(2.5)
        assert EVENTS.count(("tick", "w")) == 2
        assert "p" in timers
        assert len(timers) == 1
        assert timers.cancel("p") is True
        assert "p" not in timers
        assert clock.pending == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": -0.1}, "Backoff delays must be >= 0"),
        ({"maximum": -1.0}, "Backoff delays must be >= 0"),
        ({"factor": 0.99}, "Backoff factor must be >= 1"),
        ({"jitter": -0.01}, r"Backoff jitter must be within \[0, 1\]"),
        ({"jitter": 1.01}, r"Backoff jitter must be within \[0, 1\]"),
    ],
)
async def test_backoff_refuses_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        Backoff(**kwargs)


async def test_backoff_accepts_its_boundaries() -> None:
    edge = Backoff(initial=0.0, maximum=0.0, factor=1.0, jitter=1.0)
    assert edge.delay(3) == 0.0
    assert Backoff(initial=0.5, factor=1.0, maximum=0.0, jitter=0.0).delay(2) == 0.0
    # factor 1: every restart waits the same.
    assert Backoff(initial=0.5, factor=1.0, jitter=0.0).delay(7) == 0.5
    # jitter 1: anywhere from no wait to twice the base.
    rng = random.Random(7)
    spread = [Backoff(initial=1.0, jitter=1.0).delay(0, rng) for _ in range(200)]
    assert 0.0 <= min(spread) < 0.2
    assert 1.8 < max(spread) <= 2.0


async def test_backoff_jitter_spreads_on_both_sides() -> None:
    rng = random.Random(3)
    b = Backoff(initial=1.0, factor=3.0, maximum=100.0, jitter=0.25)
    delays = [b.delay(1, rng) for _ in range(400)]  # base 3.0
    assert min(delays) < 2.9
    assert max(delays) > 3.1
    assert all(2.25 <= d <= 3.75 for d in delays)
    # With initial 1.0 (not 0), the first restart is not immediate.
    assert Backoff(initial=1.0, jitter=0.0).delay(0) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_restarts": -1}, "max_restarts must be >= 0"),
        ({"within": 0.0}, "within must be > 0 seconds"),
        ({"within": -5.0}, "within must be > 0 seconds"),
    ],
)
async def test_strategy_refuses_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        OneForOne(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"^{message}$"):
        AllForOne(**kwargs)  # type: ignore[arg-type]


async def test_strategy_accepts_its_boundaries() -> None:
    assert OneForOne(max_restarts=0, within=0.5).within == 0.5
    assert not OneForOne().all_for_one
    assert AllForOne().all_for_one


@dataclass
class Hold:
    pass


class Blocked(Worker, mailbox_size=1):
    """Holds its turn on a gate, so timer messages meet a full mailbox."""

    gate: asyncio.Event

    @handler
    async def hold(self, msg: Hold) -> None:
        await self.gate.wait()


async def test_timer_messages_meeting_a_full_mailbox_are_dropped_and_counted() -> None:
    clock = VirtualClock()
    Blocked.gate = asyncio.Event()
    async with ActorSystem(clock=clock) as system:
        ref = await system.start(Blocked, name="b")
        await ref.tell(Hold())
        await settle()  # the handler is holding its turn; the mailbox is empty
        await ref.tell(Work(1))  # now the mailbox (size 1) is full
        timers = instance(ref).timers
        assert timers.dropped == 0
        timers.start_periodic("p", Tick(), 1.0)
        await clock.advance(3.5)
        assert timers.dropped == 3
        assert "p" in timers, "a dropped tick does not stop a periodic timer"
        Blocked.gate.set()
        await settle()
        assert instance(ref).done == [1]


async def test_restarting_a_running_timer_replaces_it() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        ref = await system.start(Worker, name="w")
        timers = instance(ref).timers
        timers.start_single("k", Work(1), 1.0)
        timers.start_single("k", Work(2), 2.0)
        assert len(timers) == 1
        assert clock.pending == 1, "the first timer was cancelled, not left to fire"
        timers.start_periodic("p", Work(3), 1.0)
        timers.start_periodic("p", Work(4), 5.0, initial_delay=0.5)
        assert clock.pending == 2
        await clock.advance(2.5)
        assert instance(ref).done == [4, 2]
        await clock.advance(5.0)
        assert instance(ref).done == [4, 2, 4]


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (lambda t: t.start_single("k", Tick(), -1.0), "delay must be a number of seconds >= 0"),
        (lambda t: t.start_single("k", Tick(), float("nan")), "delay must be a number"),
        (lambda t: t.start_single("k", Tick(), "1"), "delay must be a number"),
        (lambda t: t.start_periodic("k", Tick(), -1.0), "interval must be a number"),
        (lambda t: t.start_periodic("k", Tick(), 0.0), "interval must be > 0 seconds"),
        (
            lambda t: t.start_periodic("k", Tick(), 1.0, initial_delay=-1.0),
            "initial_delay must be a number of seconds >= 0",
        ),
    ],
)
async def test_timers_refuse_bad_delays(start: Any, message: str) -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        ref = await system.start(Worker)
        timers = instance(ref).timers
        with pytest.raises(ValueError, match=f"^{message}"):
            start(timers)
        assert len(timers) == 0
        assert clock.pending == 0
        # The boundaries are accepted: a zero delay fires at once, a zero initial delay too.
        timers.start_single("zero", Work(5), 0.0)
        timers.start_periodic("p", Work(6), 10.0, initial_delay=0.0)
        await clock.advance(0.0)
        await settle()
        assert sorted(instance(ref).done) == [5, 6]


@dataclass
class Count:
    n: int


class Tally(Actor):
    def __init__(self) -> None:
        self.total = 0

    @handler
    async def count(self, msg: Count) -> int:
        if msg.n < 0:
            raise ValueError(f"cannot count {msg.n}")  # rejects bad input
        self.total += msg.n
        return self.total

    @handler
    async def work(self, msg: Work) -> int:
        await asyncio.sleep(0)  # suspends: the handler finishes in the actor's task
        if msg.fail:
            raise ValueError("suspended, then failed")
        return self.total


async def test_an_ask_handler_that_raises_answers_the_asker_and_keeps_the_actor() -> None:
    strategy = OneForOne(decider=lambda exc: pytest.fail(f"supervised: {exc!r}"))
    async with ActorSystem(supervision=strategy) as system:
        ref = await system.start(Tally)
        first = instance(ref)
        assert await ref.ask(Count(5)) == 5
        with pytest.raises(ValueError, match="cannot count -1"):
            await ref.ask(Count(-1))  # inline
        with pytest.raises(ValueError, match="suspended, then failed"):
            await ref.ask(Work(0, fail=True))  # in the actor's task
        ref.tell_nowait(Count(1))
        queued = asyncio.ensure_future(ref.ask(Count(-2)))  # from the mailbox, in a turn
        ref.tell_nowait(Count(1))
        with pytest.raises(ValueError, match="cannot count -2"):
            await queued
        assert await ref.ask(Count(0)) == 7  # state kept: 5 + 1 + 1
        assert instance(ref) is first
        assert ref.stats().restarts == 0
        assert ref.stats().failures == 3


async def test_a_tell_handler_that_raises_goes_to_the_supervisor() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Tally)
        await ref.ask(Count(5))
        await ref.tell(Count(-1))  # nobody receives this error: the actor failed
        await settle()
        assert ref.stats().restarts == 1
        assert await ref.ask(Count(0)) == 0  # a fresh instance


async def test_the_resume_directive_keeps_instance_and_state() -> None:
    async with ActorSystem(supervision=OneForOne(decider=lambda exc: Directive.RESUME)) as system:
        ref = await system.start(Tally)
        first = instance(ref)
        await ref.ask(Count(5))
        ref.tell_nowait(Count(-1))
        ref.tell_nowait(Count(2))  # queued behind the failure: handled after the resume
        await settle()
        assert instance(ref) is first
        assert ref.stats().restarts == 0
        assert await ref.ask(Count(0)) == 7
