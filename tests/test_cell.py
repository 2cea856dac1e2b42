"""The engine's cell: errors senders read, counters in stats(), fairness, stopping, supervision."""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import pytest

from helpers import MADE, Fail, Make, Payload, Unknown, instance, make_payload
from log_capture import capture_logs
from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    ActorSystem,
    AllForOne,
    Backoff,
    Directive,
    EscalatedError,
    MailboxFullError,
    MessageCapabilityError,
    OneForOne,
    Passivation,
    Signals,
    Timeouts,
    UnhandledMessageError,
    handler,
)
from swarm_actors._config import DEFAULT
from swarm_actors._core._cell import Deadlines
from swarm_actors.events import HealthStatus, MemoryJournal, SignalKind, SystemSignal
from swarm_actors.testing import VirtualClock, settle

pytestmark = pytest.mark.asyncio

LOG: list[Any] = []


@dataclass
class Note:
    tag: Any


@dataclass
class Hold:
    gate: asyncio.Event
    tag: str = ""


@dataclass
class Echo:
    value: int


class Recorder(Actor):
    """Logs what it handles (and its lifecycle) into ``LOG``."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def on_stop(self) -> None:
        LOG.append(("stop", self.ref.name, id(self)))

    @handler
    async def note(self, msg: Note) -> Any:
        self.seen.append(msg.tag)
        LOG.append((self.ref.name, msg.tag))
        return msg.tag

    @handler
    async def fail(self, msg: Fail) -> None:
        raise RuntimeError(f"{self.ref.name} failed")

    @handler
    async def hold(self, msg: Hold) -> str:
        LOG.append(("start", msg.tag))
        await msg.gate.wait()
        LOG.append(("end", msg.tag))
        return msg.tag


class Small(Recorder, mailbox_size=1):
    pass


class Two(Recorder, mailbox_size=2):
    pass


@pytest.fixture(autouse=True)
def _clear() -> None:
    LOG.clear()


async def within(awaitable: Any, seconds: float = 1.0) -> Any:
    """Await with an upper bound, so a hang fails the test instead of stalling it."""
    return await asyncio.wait_for(awaitable, seconds)


# --- errors a sender reads ------------------------------------------------------------------


async def test_errors_name_the_actor_and_the_reason() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Small, name="tiny")
        ref.tell_nowait(Note(1))  # queued: the dispatcher has not run yet
        with pytest.raises(MailboxFullError) as full:
            ref.tell_nowait(Note(2))
        assert full.value.actor == "/tiny"
        assert full.value.capacity == 1
        assert str(full.value) == "mailbox of /tiny is full (1 messages)"
        await ref.stop()
        with pytest.raises(ActorDeadError) as dead:
            ref.tell_nowait(Note(3))
        assert dead.value.actor == "/tiny"
        assert str(dead.value) == "/tiny is stopped"
        with pytest.raises(ActorDeadError) as dead_tell:
            await ref.tell(Note(4))
        assert dead_tell.value.actor == "/tiny"
        assert str(dead_tell.value) == "/tiny is stopped"


async def test_a_sender_waiting_for_room_learns_the_actor_stopped() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Small, name="tiny")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate))
        await settle()  # the handler holds; the mailbox is empty again
        ref.tell_nowait(Note(1))
        blocked = asyncio.create_task(ref.tell(Note(2)))
        await settle()
        assert not blocked.done()
        stopping = asyncio.create_task(ref.stop(drain=False))
        with pytest.raises(ActorDeadError) as dead:
            await within(blocked)
        assert dead.value.actor == "/tiny"
        assert str(dead.value) == "/tiny is stopped"
        assert await within(stopping) == 1


async def test_an_unhandled_queued_ask_names_the_message_type() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate))
        await settle()
        asked = asyncio.create_task(ref.ask(Unknown()))  # queued behind the held handler
        await settle()
        gate.set()
        with pytest.raises(UnhandledMessageError) as err:
            await within(asked)
        assert str(err.value) == "Recorder (/rec) has no handler for Unknown"
        assert err.value.actor == "/rec"
        assert ref.stats().failures == 0, "refusing a message is not a failure"


async def test_an_unhandled_tell_is_a_logged_dead_letter() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        with capture_logs() as logs:
            await ref.tell(Unknown())
            await settle()
        letters = [e for e in logs if e.get("event") == "dead letter"]
        assert letters == [
            {
                "event": "dead letter",
                "actor": "/rec",
                "message_type": "Unknown",
                "reason": "unhandled",
                "log_level": "warning",
                "logger": letters[0]["logger"],
            }
        ]
        assert system.dead_letters == 1
        assert ref.stats().processed == 1


# --- scheduling -----------------------------------------------------------------------------


async def test_a_busy_actor_gives_others_a_turn() -> None:
    """After TURN_BUDGET (256) messages the dispatcher moves on to the next ready actor."""
    async with ActorSystem() as system:
        hog = await system.start(Recorder, name="hog")
        other = await system.start(Recorder, name="other")
        for i in range(1000):
            hog.tell_nowait(Note(i))
        other.tell_nowait(Note("x"))
        await settle()
        order = [tag for name, tag in LOG if name in ("hog", "other")]
        assert len(order) == 1001
        assert order.index("x") == 256, "the other actor ran right after the hog's first turn"


class Hog(Recorder, mailbox_size=1000):
    pass


async def test_a_sender_that_waited_for_room_gives_no_extra_turn() -> None:
    async with ActorSystem() as system:
        hog = await system.start(Hog, name="hog")
        other = await system.start(Recorder, name="other")
        gate = asyncio.Event()
        hog.tell_nowait(Hold(gate))
        await settle()
        for i in range(1000):
            hog.tell_nowait(Note(i))

        async def sender() -> None:
            await hog.tell(Note("late"))  # waits for room, then enqueues while hog is ready
            other.tell_nowait(Note("other"))

        sending = asyncio.create_task(sender())
        await settle()
        assert not sending.done()
        gate.set()
        await within(sending)
        await settle()
        order = [tag for name, tag in LOG if name in ("hog", "other")]
        assert len(order) == 1002
        assert order.index("other") < order.index("late"), "other ran before the hog's backlog"


async def test_a_message_sent_to_self_during_an_inline_ask_is_handled() -> None:
    class Relay(Recorder):
        @handler
        async def echo(self, msg: Echo) -> int:
            self.ref.tell_nowait(Note(msg.value))  # to itself, while it is busy
            return msg.value

    async with ActorSystem() as system:
        ref = await system.start(Relay, name="relay")
        assert await ref.ask(Echo(7)) == 7
        await settle()
        assert instance(ref).seen == [7]


class Session(Actor):
    def __init__(self) -> None:
        self.count = 0

    def snapshot(self) -> int:
        return self.count

    def restore(self, state: int) -> None:
        self.count = state

    @handler
    async def note(self, msg: Note) -> int:
        self.count += 1
        return self.count


async def test_sync_passivations_keep_other_actors_scheduled() -> None:
    """A sender that never yields passivates hundreds of virtual actors with queued messages.

    Each passivation runs that actor's turn at once; actors made ready earlier still get
    their turn, and every message is handled.
    """
    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        plain = await system.start(Recorder, name="plain")
        plain.tell_nowait(Note("before"))
        refs = [system.virtual(Session, f"s{i}") for i in range(700)]
        for ref in refs:
            await ref.tell(Note(0))
        plain.tell_nowait(Note("after"))
        await settle()
        assert instance(plain).seen == ["before", "after"]
        for ref in (refs[0], refs[300], refs[699]):
            assert await within(ref.ask(Note(0))) == 2


# --- backpressure ---------------------------------------------------------------------------


async def test_a_freed_slot_wakes_the_waiting_sender() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Small, name="tiny")
        ref.tell_nowait(Note(1))
        async with asyncio.timeout(1.0):
            await ref.tell(Note(2))  # waits: the turn that handles Note(1) wakes it
        await settle()
        assert instance(ref).seen == [1, 2]


async def test_freed_slots_wake_as_many_waiting_senders() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Two, name="two")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate))
        await settle()
        ref.tell_nowait(Note(1))
        ref.tell_nowait(Note(2))
        blocked = [asyncio.create_task(ref.tell(Note(i))) for i in (3, 4, 5, 6)]
        await settle()
        assert not any(task.done() for task in blocked)
        gate.set()
        await within(asyncio.gather(*blocked))
        await settle()
        assert instance(ref).seen == [1, 2, 3, 4, 5, 6]


async def test_a_cancelled_waiting_sender_leaves_the_queue() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Small, name="tiny")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate))
        await settle()
        ref.tell_nowait(Note(1))
        quitter = asyncio.create_task(ref.tell(Note("quitter")))
        stayer = asyncio.create_task(ref.tell(Note("stayer")))
        await settle()
        quitter.cancel()
        await asyncio.wait([quitter])
        assert quitter.cancelled(), "cancellation propagates as such"
        gate.set()
        await within(stayer)
        await settle()
        assert instance(ref).seen == [1, "stayer"]


async def test_a_sender_cancelled_as_it_is_woken_passes_the_slot_on() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Small, name="tiny")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate))
        await settle()
        ref.tell_nowait(Note(1))
        first = asyncio.create_task(ref.tell(Note("first")))
        second = asyncio.create_task(ref.tell(Note("second")))
        await settle()
        gate.set()  # the handler's task resumes next, handles Note(1) and wakes `first`
        asyncio.get_running_loop().call_soon(first.cancel)  # before `first` runs again
        await asyncio.wait([first])
        assert first.cancelled()
        await within(second)
        await settle()
        assert instance(ref).seen == [1, "second"]


async def test_waking_fewer_senders_than_free_slots_raises_nothing() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        async with ActorSystem() as system:
            ref = await system.start(Two, name="two")
            ref.tell_nowait(Note(1))
            ref.tell_nowait(Note(2))
            await ref.tell(Note(3))  # it waits; the turn frees two slots and wakes it
            await settle()
            assert instance(ref).seen == [1, 2, 3]
    finally:
        loop.set_exception_handler(None)
    assert errors == [], "nothing escaped into the event loop"


# --- stopping -------------------------------------------------------------------------------


async def test_a_draining_stop_waits_for_the_handler_in_progress() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate, "h"))
        await settle()
        stopping = asyncio.create_task(ref.stop())
        await settle()
        assert not stopping.done()
        gate.set()
        assert await within(stopping) == 0
        assert ("end", "h") in LOG


async def test_a_draining_stop_after_an_inline_ask_suspends() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        gate = asyncio.Event()
        asked = asyncio.create_task(ref.ask(Hold(gate, "h")))
        await settle()
        stopping = asyncio.create_task(ref.stop())
        await settle()
        assert not stopping.done()
        gate.set()
        assert await within(asked) == "h"
        assert await within(stopping) == 0


async def test_stop_calls_after_a_cut_short_drain_agree() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate))
        ref.tell_nowait(Note(1))
        ref.tell_nowait(Note(2))
        await settle()
        draining = asyncio.create_task(ref.stop())
        await settle()
        assert await within(ref.stop(drain=False)) == 2
        assert await within(draining) == 2
        assert await within(ref.stop(drain=False)) == 2
        assert await within(ref.stop()) == 2
        assert ref.stats().dropped == 2


# --- failures and supervision ---------------------------------------------------------------


async def test_failures_are_counted() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        for _ in range(3):
            await ref.tell(Fail())
            await settle()
        assert ref.stats().failures == 3
        assert ref.stats().restarts == 3


async def test_crash_and_restart_signals_describe_the_failure() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        for _ in range(2):
            await ref.tell(Fail())
            await settle()
        journal = system.journal
        assert isinstance(journal, MemoryJournal)
        crashes = [
            e.event.payload
            for e in journal.entries()
            if e.event.agent_id == "/rec"
            and isinstance(e.event.payload, SystemSignal)
            and e.event.payload.kind is SignalKind.CRASHED
        ]
        assert [c.restart_count for c in crashes] == [0, 1]
        assert [c.error_type for c in crashes] == ["RuntimeError", "RuntimeError"]
        assert [c.detail for c in crashes] == ["restart: RuntimeError('rec failed')"] * 2
        restarted = [
            e.event.payload
            for e in journal.entries()
            if e.event.agent_id == "/rec"
            and isinstance(e.event.payload, SystemSignal)
            and e.event.payload.kind is SignalKind.RESTARTED
        ]
        assert [r.restart_count for r in restarted] == [1, 2]


async def test_a_raising_decider_escalates() -> None:
    def decide(exc: BaseException) -> Directive:
        raise LookupError("no idea")

    async with ActorSystem(supervision=OneForOne(decider=decide)) as system:
        ref = await system.start(Recorder, name="rec")
        await ref.tell(Fail())
        await settle()
        assert not ref.is_alive, "escalated from the top level: the actor is stopped"
        assert system.lookup("rec") is None


async def test_the_restart_window_includes_its_end() -> None:
    """A restart exactly ``within`` seconds ago still counts against ``max_restarts``."""
    clock = VirtualClock()
    strategy = OneForOne(max_restarts=1, within=10.0)
    async with ActorSystem(supervision=strategy, clock=clock) as system:
        ref = await system.start(Recorder, name="rec")
        await ref.tell(Fail())
        await settle()
        assert ref.stats().restarts == 1
        await clock.advance(10.0)
        await ref.tell(Fail())
        await settle()
        assert not ref.is_alive, "the second failure escalated"


async def test_the_restart_window_forgets_older_restarts() -> None:
    clock = VirtualClock()
    strategy = OneForOne(max_restarts=1, within=10.0)
    async with ActorSystem(supervision=strategy, clock=clock) as system:
        ref = await system.start(Recorder, name="rec")
        await ref.tell(Fail())
        await settle()
        await clock.advance(10.5)
        await ref.tell(Fail())
        await settle()
        assert ref.is_alive
        assert ref.stats().restarts == 2


async def test_a_short_backoff_still_delays_the_restart() -> None:
    clock = VirtualClock()
    strategy = OneForOne(backoff=Backoff(initial=0.5, jitter=0.0))
    async with ActorSystem(supervision=strategy, clock=clock) as system:
        ref = await system.start(Recorder, name="rec")
        await ref.tell(Fail())
        await ref.tell(Note(1))
        await settle()
        await clock.advance(0.4)
        assert ref.stats().restarts == 0
        assert ref.stats().pending == 1
        await clock.advance(0.2)
        assert ref.stats().restarts == 1
        assert instance(ref).seen == [1]


class Family(Actor):
    """A parent of two ``Recorder`` children, ``a`` and ``b``; fails on ``Fail``."""

    async def on_start(self) -> None:
        await self.start_child(Recorder, name="a")
        await self.start_child(Recorder, name="b")

    @handler
    async def fail(self, msg: Fail) -> None:
        raise RuntimeError("family failed")


async def test_one_for_one_leaves_the_siblings_alone() -> None:
    async with ActorSystem() as system:
        await system.start(Family, name="family")
        a, b = system.lookup("a"), system.lookup("b")
        assert isinstance(a, ActorRef)
        assert isinstance(b, ActorRef)
        before = instance(b)
        await a.tell(Fail())
        await settle()
        assert a.stats().restarts == 1
        assert instance(b) is before
        assert b.stats().restarts == 0


class Siblings(Family, supervision=AllForOne(backoff=Backoff(initial=2.0, jitter=0.0))):
    pass


async def test_all_for_one_siblings_wait_for_the_restart() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock, signals=Signals(health_interval=None)) as system:
        await system.start(Siblings, name="family")
        a, b = system.lookup("a"), system.lookup("b")
        assert a is not None
        assert b is not None
        before = instance(b)
        await a.tell(Fail())
        await settle()
        await b.tell(Note("during"))
        await settle()
        assert before.seen == [], "a suspended sibling handles nothing during the backoff"
        health = system.health()
        assert health is not None
        assert health.payload.health is HealthStatus.FAILING  # type: ignore[union-attr]
        assert "2 actor(s)" in health.payload.detail  # type: ignore[union-attr]
        await clock.advance(2.1)
        assert instance(b) is not before
        assert instance(b).seen == ["during"]


class Holder(Actor):
    """A parent whose child ``kid`` is held in a handler with messages queued behind it."""

    async def on_start(self) -> None:
        await self.start_child(Recorder, name="kid")

    @handler
    async def fail(self, msg: Fail) -> None:
        raise RuntimeError("holder failed")


async def _fail_parent_of_held_child(system: ActorSystem) -> tuple[Any, asyncio.Event]:
    parent = await system.start(Holder, name="holder")
    kid = system.lookup("kid")
    assert kid is not None
    gate = asyncio.Event()
    kid.tell_nowait(Hold(gate, "held"))
    kid.tell_nowait(Note(1))
    kid.tell_nowait(Note(2))
    await settle()
    await parent.tell(Fail())
    return kid, gate


@pytest.mark.parametrize(
    "strategy",
    [
        OneForOne(decider=lambda exc: Directive.STOP),
        OneForOne(max_restarts=0),  # escalated from the top level: stopped
        OneForOne(),  # restarted: the old children are stopped
    ],
    ids=["stop", "escalate", "restart"],
)
async def test_a_failed_parent_discards_its_childrens_mailboxes(strategy: OneForOne) -> None:
    async with ActorSystem(supervision=strategy) as system:
        kid, gate = await _fail_parent_of_held_child(system)
        await settle()
        assert not kid.is_alive
        assert kid.stats().dropped == 2
        assert ("end", "held") not in LOG, "the child's handler was cancelled"
        gate.set()


async def test_escalation_names_the_child_and_its_error() -> None:
    seen: list[BaseException] = []

    def decide(exc: BaseException) -> Directive:
        seen.append(exc)
        return Directive.ESCALATE if isinstance(exc, RuntimeError) else Directive.STOP

    class Parent(Family, supervision=OneForOne(decider=decide)):
        pass

    async with ActorSystem(supervision=OneForOne(decider=decide)) as system:
        await system.start(Parent, name="parent")
        a = system.lookup("a")
        assert a is not None
        await a.tell(Fail())
        await settle()
        escalated = [e for e in seen if isinstance(e, EscalatedError)]
        assert len(escalated) == 1
        error = escalated[0]
        assert error.actor == "/parent"
        assert str(error) == "child /parent/a escalated RuntimeError('a failed')"
        assert isinstance(error.__cause__, RuntimeError)


class Slow(Recorder):
    """``on_stop`` waits for ``gate`` (when set up); counts instances."""

    gate: ClassVar[asyncio.Event | None] = None
    made: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        Slow.made += 1
        self.number = Slow.made

    async def on_stop(self) -> None:
        LOG.append(("stop", self.number))
        if Slow.gate is not None:
            await Slow.gate.wait()


async def test_a_restart_stops_the_old_instance_before_taking_messages() -> None:
    Slow.made = 0
    Slow.gate = asyncio.Event()
    async with ActorSystem(signals=Signals(health_interval=None)) as system:
        ref = await system.start(Slow, name="slow")
        await ref.tell(Fail())
        await settle()
        assert LOG == [("stop", 1)], "the old instance's on_stop runs on restart"
        await ref.tell(Note("during"))
        await settle()
        health = system.health()
        assert health is not None
        assert health.payload.health is HealthStatus.FAILING  # type: ignore[union-attr]
        assert instance(ref).number == 1
        assert instance(ref).seen == [], "nothing is handled while the restart is under way"
        Slow.gate.set()
        await settle()
        assert instance(ref).number == 2
        assert instance(ref).seen == ["during"]
        Slow.gate = None


class Flaky(Recorder):
    starts: ClassVar[int] = 0

    async def on_start(self) -> None:
        Flaky.starts += 1
        if Flaky.starts == 2:
            raise ValueError("second start failed")

    async def on_failure(self, exc: BaseException) -> None:
        LOG.append(("failure", repr(exc)))


async def test_a_restart_whose_on_start_fails_is_supervised_again() -> None:
    Flaky.starts = 0
    async with ActorSystem() as system:
        ref = await system.start(Flaky, name="flaky")
        await ref.tell(Fail())
        await settle()
        assert [e for e in LOG if e[0] == "failure"] == [
            ("failure", "RuntimeError('flaky failed')"),
            ("failure", "ValueError('second start failed')"),
        ]
        assert Flaky.starts == 3
        assert ref.stats().failures == 2
        assert await within(ref.ask(Note("ok"))) == "ok"


REQUEST: contextvars.ContextVar[str | None] = contextvars.ContextVar("REQUEST", default=None)


@dataclass
class Peek:
    pass


class Peeker(Recorder):
    @handler
    async def peek(self, msg: Peek) -> str | None:
        return REQUEST.get()

    @handler
    async def hold_and_peek(self, msg: Hold) -> tuple[str | None, str | None]:
        before = REQUEST.get()
        await msg.gate.wait()
        return before, REQUEST.get()


async def test_an_inline_askers_context_stays_with_its_own_handler() -> None:
    """Context variables an asker bound (say a request id for its logs) are its own.

    The handler of its ask sees them even after it suspends (it runs in the asker's task at
    first); the messages of other senders the actor handles next do not.
    """
    async with ActorSystem() as system:
        ref = await system.start(Peeker, name="peeker")
        gate = asyncio.Event()

        async def asker() -> tuple[str | None, str | None]:
            REQUEST.set("request-1")
            result: tuple[str | None, str | None] = await ref.ask(Hold(gate))
            return result

        asked = asyncio.create_task(asker())
        await settle()
        other = asyncio.create_task(ref.ask(Peek()))  # queued behind the held handler
        await settle()
        gate.set()
        assert await within(asked) == ("request-1", "request-1")
        assert await within(other) is None


@dataclass
class Bind:
    """Bind ``REQUEST`` to ``value``, then suspend."""

    value: str


class Binder(Peeker):
    @handler
    async def bind(self, msg: Bind) -> str | None:
        REQUEST.set(msg.value)
        await asyncio.sleep(0)
        return REQUEST.get()


async def test_a_suspended_handler_keeps_its_context_and_the_next_messages_do_not_see_it() -> None:
    """A handler's own context variables stay its own after it suspends.

    The task that finishes it goes on with the mailbox (the messages queued meanwhile): they
    must not see what that handler bound.
    """
    async with ActorSystem() as system:
        ref = await system.start(Binder, name="binder")
        gate = asyncio.Event()
        held = asyncio.create_task(ref.ask(Hold(gate)))
        await settle()  # held: the two asks below queue up behind it
        bound = asyncio.create_task(ref.ask(Bind("bound")))
        peeked = asyncio.create_task(ref.ask(Peek()))
        await settle()
        gate.set()  # a turn starts Bind, which suspends: its task then serves Peek
        assert await within(held) == (None, None)
        assert await within(bound) == "bound"
        assert await within(peeked) is None


async def test_no_handler_served_by_a_busy_actors_task_sees_what_the_one_before_bound() -> None:
    """The task of a busy actor serves one message after another: each starts clean."""
    async with ActorSystem() as system:
        ref = await system.start(Binder, name="binder")
        gate = asyncio.Event()
        held = asyncio.create_task(ref.ask(Hold(gate)))
        await settle()  # held: the asks below queue up behind it
        first = asyncio.create_task(ref.ask(Bind("first")))
        second = asyncio.create_task(ref.ask(Bind("second")))
        peeked = asyncio.create_task(ref.ask(Peek()))
        await settle()
        gate.set()
        assert await within(held) == (None, None)
        assert await within(first) == "first"
        assert await within(second) == "second"
        assert await within(peeked) is None
        assert await within(ref.ask(Peek())) is None  # served while the task lingers, or not


@pytest.mark.parametrize("drain", [True, False])
async def test_an_actor_whose_task_lingers_after_an_answer_stops_at_once(drain: bool) -> None:
    """Right after its task answered, the actor is stopped while that task lingers."""
    async with ActorSystem() as system:
        ref = await system.start(Binder, name="binder")
        assert await ref.ask(Bind("x")) == "x"  # suspends: answered by its task
        cell = instance(ref)._cell
        assert cell.task is not None  # lingering: one iteration before the actor goes idle
        assert await within(ref.stop(drain=drain)) == 0
        assert cell.task is None
        assert not cell.busy
        assert not ref.is_alive


@dataclass
class Forward:
    to: Any


@dataclass
class Pause:
    pass


class Mute(Actor, may_message=()):
    """May message no one; forwards after suspending."""

    @handler
    async def pause(self, msg: Pause) -> None:
        await asyncio.sleep(0)

    @handler
    async def forward(self, msg: Forward) -> None:
        await asyncio.sleep(0)
        await msg.to.tell(Note("forwarded"))


async def test_sends_after_a_handler_suspends_are_still_checked_as_the_actors() -> None:
    async with ActorSystem() as system:
        mute = await system.start(Mute, name="mute")
        target = await system.start(Recorder, name="target")
        with pytest.raises(MessageCapabilityError):
            await within(mute.ask(Forward(target)))  # inline ask, finished in a task
        await mute.tell(Forward(target))  # through the mailbox
        await settle()
        mute.tell_nowait(Pause())  # suspends: its task goes on with the Forward after it
        mute.tell_nowait(Forward(target))
        await settle()
        assert mute.stats().failures == 3
        assert instance(target).seen == []


class Tidy(Recorder):
    @handler
    async def hold(self, msg: Hold) -> str:
        try:
            await msg.gate.wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # an asynchronous clean-up runs to its end
            LOG.append(("cleanup", msg.tag))
            raise
        return msg.tag


async def test_a_discarding_stop_cancels_the_handler_and_fails_its_asker() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Tidy, name="tidy")
        ref.tell_nowait(Note(0))  # the ask below goes through the mailbox
        asked = asyncio.create_task(ref.ask(Hold(asyncio.Event(), "h")))
        await settle()
        assert await within(ref.stop(drain=False)) == 0
        assert ("cleanup", "h") in LOG, "the handler saw its cancellation"
        with pytest.raises(ActorDeadError) as dead:
            await within(asked)
        assert dead.value.actor == "/tidy"
        assert str(dead.value) == "/tidy stopped"


async def test_a_sibling_suspended_mid_handler_takes_nothing_more_until_restarted() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        await system.start(Siblings, name="family")
        a, b = system.lookup("a"), system.lookup("b")
        assert a is not None
        assert b is not None
        before = instance(b)
        gate = asyncio.Event()
        b.tell_nowait(Hold(gate, "held"))
        b.tell_nowait(Note("queued"))
        await settle()
        await a.tell(Fail())  # suspends b during the backoff, its handler still running
        await settle()
        gate.set()
        await settle()
        assert ("end", "held") in LOG
        assert before.seen == [], "the old instance handles nothing after its suspension"
        await clock.advance(2.1)
        assert instance(b).seen == ["queued"]


# --- the drain deadline, second stops, handlers cancelled from elsewhere ----------------------


def stopped_details(system: ActorSystem, path: str) -> list[str]:
    """The details of ``path``'s STOPPED signals in the system's journal."""
    journal = system.journal
    assert isinstance(journal, MemoryJournal)
    return [
        e.event.payload.detail
        for e in journal.entries()
        if e.event.agent_id == path
        and isinstance(e.event.payload, SystemSignal)
        and e.event.payload.kind is SignalKind.STOPPED
    ]


class Keyed(Actor):
    def __init__(self, *, label: str) -> None:
        self.label = label

    @handler
    async def note(self, msg: Note) -> str:
        return self.label


async def test_keyword_arguments_reach_the_constructor() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Keyed, label="kw")
        assert await within(ref.ask(Note(0))) == "kw"


async def test_a_plain_stop_reports_what_it_discarded() -> None:
    system = ActorSystem()
    async with system:
        ref = await system.start(Recorder, name="rec")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate))
        ref.tell_nowait(Note(1))
        await settle()
        assert await within(ref.stop(drain=False)) == 1
        assert stopped_details(system, "/rec") == ["discarded 1 message(s)"]


async def test_a_second_draining_stop_does_not_cut_the_first_short() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate, "h"))
        ref.tell_nowait(Note(1))
        await settle()
        first = asyncio.create_task(ref.stop())
        second = asyncio.create_task(ref.stop())
        await settle()
        assert not first.done()
        assert not second.done()
        gate.set()
        assert await within(first) == 0
        assert await within(second) == 0
        assert ("end", "h") in LOG
        assert ("rec", 1) in LOG


async def test_the_drain_deadline_names_each_handler_a_task_went_on_to() -> None:
    system = ActorSystem(timeouts=Timeouts(drain=0.05))
    with capture_logs() as logs:
        async with system:
            ref = await system.start(Recorder, name="rec")
            first, second = asyncio.Event(), asyncio.Event()
            ref.tell_nowait(Hold(first, "a"))
            ref.tell_nowait(Hold(second, "b"))  # the same task goes on to it, and it hangs
            await settle()
            first.set()
            await settle()
            assert ("start", "b") in LOG
    cancelled = [e for e in logs if e["event"] == "actor.handler_cancelled"]
    assert [e["handler"] for e in cancelled] == ["Recorder.hold"]
    (detail,) = stopped_details(system, "/rec")
    assert detail.startswith("discarded 0 message(s); cancelled its handler Recorder.hold")


class Patient(Recorder):
    @handler
    async def hold(self, msg: Hold) -> str:
        try:
            await msg.gate.wait()
        except asyncio.CancelledError:
            cleaned = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, cleaned.set)  # set two callbacks from now
            await cleaned.wait()  # a clean-up that really waits for something
            LOG.append(("cleanup", msg.tag))
            raise
        return msg.tag


async def test_a_cancelled_handler_may_wait_while_it_cleans_up() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        async with ActorSystem() as system:
            ref = await system.start(Patient, name="patient")
            ref.tell_nowait(Hold(asyncio.Event(), "h"))
            await settle()
            assert await within(ref.stop(drain=False)) == 0
            assert ("cleanup", "h") in LOG
    finally:
        loop.set_exception_handler(None)
    assert errors == [], "nothing escaped into the event loop"


class Awaiter(Recorder):
    @handler
    async def wait_on(self, msg: Echo) -> int:
        self.pending: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        return await self.pending


async def test_a_handler_whose_awaited_future_is_cancelled_fails_its_asker_and_escalates() -> None:
    system = ActorSystem()
    async with system:
        ref = await system.start(Awaiter, name="aw")
        ref.tell_nowait(Note(0))  # the ask goes through the mailbox, its handler to a task
        asked = asyncio.ensure_future(ref.ask(Echo(1)))
        await settle()
        instance(ref).pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await within(asked)
        await settle()
        assert ref.stats().failures == 1
    journal = system.journal
    assert isinstance(journal, MemoryJournal)
    crashed = [
        e.event.payload
        for e in journal.entries()
        if isinstance(e.event.payload, SystemSignal) and e.event.payload.kind is SignalKind.CRASHED
    ]
    assert [(c.error_type, c.detail) for c in crashed] == [
        ("CancelledError", "escalate: CancelledError()")  # not an Exception: not resumed
    ]


async def test_an_actor_restarted_after_a_failure_in_its_task_takes_messages_again() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        gate = asyncio.Event()
        ref.tell_nowait(Hold(gate, "h"))
        ref.tell_nowait(Fail())  # the handler's task goes on to this one, which fails
        await settle()
        gate.set()
        await settle()
        assert ref.stats().failures == 1
        assert await within(ref.ask(Note("again"))) == "again"


@dataclass
class Blurt:
    to: Any


class Blurter(Actor, may_message=()):
    """May message no one; sends without suspending."""

    @handler
    async def blurt(self, msg: Blurt) -> None:
        msg.to.tell_nowait(Note("blurted"))


async def test_sends_from_a_dispatcher_turn_are_checked_as_the_actors() -> None:
    async with ActorSystem() as system:
        blurter = await system.start(Blurter, name="blurter")
        target = await system.start(Recorder, name="target")
        blurter.tell_nowait(Blurt(target))  # handled in a dispatcher turn
        await settle()
        assert blurter.stats().failures == 1
        assert instance(target).seen == []


class Farewell(Actor, may_message=()):
    """May message no one, not even on its way out."""

    def __init__(self, to: Any) -> None:
        self.to = to

    async def on_stop(self) -> None:
        try:
            self.to.tell_nowait(Note("bye"))
        except MessageCapabilityError:
            LOG.append("refused")


async def test_sends_from_on_stop_are_checked_as_the_actors() -> None:
    async with ActorSystem() as system:
        target = await system.start(Recorder, name="target")
        leaving = await system.start(Farewell, target, name="leaving")
        await within(leaving.stop())
        await settle()
        assert LOG == ["refused"]
        assert instance(target).seen == []


@dataclass
class Fragile:
    gate: asyncio.Event


class Brittle(Recorder, mailbox_size=1):
    @handler
    async def fragile(self, msg: Fragile) -> None:
        await msg.gate.wait()
        raise RuntimeError("broke after waiting")


async def test_a_sender_waiting_for_room_is_let_in_after_a_restart() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Brittle, name="brittle")
        first, second = asyncio.Event(), asyncio.Event()
        ref.tell_nowait(Hold(first))
        await settle()
        ref.tell_nowait(Fragile(second))  # the mailbox (1) is full
        waiting = asyncio.create_task(ref.tell(Note("next")))
        await settle()
        assert not waiting.done()
        first.set()  # the task goes on to Fragile, which waits in turn
        await settle()
        second.set()  # Fragile fails; the actor is restarted with an empty mailbox
        await within(waiting)
        await settle()
        assert instance(ref).seen == ["next"]


async def test_the_refs_a_cell_makes_are_actor_refs() -> None:
    from swarm_actors import ActorRef

    async with ActorSystem() as system:
        ref = await system.start(Recorder, name="rec")
        assert type(ref) is ActorRef
        assert type(instance(ref).ref) is ActorRef
        assert await within(ref.ask(Note(1))) == 1


class SlowStart(Recorder):
    def __init__(self, gate: asyncio.Event, *, fail: bool = False) -> None:
        super().__init__()
        self.gate = gate
        self.fail_start = fail

    async def on_start(self) -> None:
        await self.gate.wait()
        if self.fail_start:
            raise RuntimeError("could not start")


async def test_an_actor_stopped_while_starting_never_runs_on_stop() -> None:
    async with ActorSystem() as system:
        gate = asyncio.Event()
        starting = asyncio.create_task(system.start(SlowStart, gate, name="slow"))
        await settle()
        ref = system.lookup("slow")
        assert ref is not None
        stopping = asyncio.create_task(ref.stop())
        await settle()
        gate.set()
        await asyncio.gather(starting, stopping, return_exceptions=True)
        assert [e for e in LOG if e[0] == "stop"] == []


async def test_a_failed_start_counts_the_messages_it_dropped_even_after_a_stop() -> None:
    async with ActorSystem() as system:
        gate = asyncio.Event()
        starting = asyncio.create_task(system.start(SlowStart, gate, name="slow", fail=True))
        await settle()
        ref = system.lookup("slow")
        assert isinstance(ref, ActorRef)
        ref.tell_nowait(Note(1))
        ref.tell_nowait(Note(2))
        gate.set()
        with pytest.raises(RuntimeError, match="could not start"):
            await within(starting)
        assert await within(ref.stop()) == 0
        assert ref.stats().dropped == 2


class Parent(Recorder):
    pass


async def test_a_stopped_actor_starts_no_children() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Parent, name="parent")
        parent = instance(ref)
        await within(ref.stop())
        with pytest.raises(ActorDeadError, match="it is stopping"):
            await parent.start_child(Recorder, name="orphan")


async def test_a_failure_ends_a_draining_stop_and_the_rest_is_discarded() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Brittle, name="brittle")
        other = await system.start(Recorder, name="other")
        gate = asyncio.Event()
        ref.tell_nowait(Fragile(gate))
        await settle()
        ref.tell_nowait(Note("left"))
        draining = asyncio.create_task(ref.stop())
        await settle()
        gate.set()  # Fragile fails now: the drain ends there
        other.tell_nowait(Note("other"))  # a dispatcher run is pending as it fails
        assert await within(draining) == 1
        assert instance(ref).seen == []


class NoneToo(Actor):
    def __init__(self) -> None:
        self.seen: list[str] = []

    @handler
    async def nothing(self, msg: None) -> None:
        self.seen.append("none")

    @handler
    async def number(self, msg: int) -> None:
        self.seen.append("int")


async def test_each_queued_message_goes_to_its_own_types_handler() -> None:
    async with ActorSystem() as system:
        ref = await system.start(NoneToo)
        for message in (None, 5, None, 6):
            ref.tell_nowait(message)
        await settle()
        assert instance(ref).seen == ["none", "int", "none", "int"]


class Household(Recorder):
    async def on_start(self) -> None:
        await self.start_child(Recorder, name="kid")


async def test_a_draining_stop_drains_the_children_too() -> None:
    async with ActorSystem() as system:
        parent = await system.start(Household, name="household")
        kid = system.lookup("kid")
        assert kid is not None
        gate = asyncio.Event()
        kid.tell_nowait(Hold(gate, "h"))
        kid.tell_nowait(Note("queued"))
        await settle()
        stopping = asyncio.create_task(parent.stop())
        await settle()
        gate.set()
        assert await within(stopping) == 0
        assert ("kid", "queued") in LOG


async def test_a_discarding_stop_cancels_a_handler_whose_wait_just_ended() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Tidy, name="tidy")
        ref.tell_nowait(Note(0))  # the ask below goes through the mailbox
        gate = asyncio.Event()
        asked = asyncio.create_task(ref.ask(Hold(gate, "h")))
        await settle()
        gate.set()  # the handler's wait is over, but it has not run on yet
        # Awaited directly (not in a task, as within() would): the stop comes first.
        assert await ref.stop(drain=False) == 0
        assert ("cleanup", "h") in LOG, "the cancellation reached the handler"
        with pytest.raises(ActorDeadError):
            await within(asked)


async def test_children_are_kept_by_their_parent_and_a_childless_cell_shares_no_dict() -> None:
    # Childless cells share one read-only mapping (no dict per cell): a child is recorded
    # through ``adopt``, which gives the parent a dict of its own, and a stray write to the
    # shared mapping fails instead of giving every cell that child.
    async with ActorSystem() as system:
        family = await system.start(Family, name="family")
        a = system.lookup("a")
        assert isinstance(a, ActorRef)
        parent, child = instance(family)._cell, instance(a)._cell
        assert sorted(parent.children) == ["a", "b"]
        assert child.children == {}
        lonely = instance(await system.start(Recorder, name="lonely"))._cell
        assert lonely.children is child.children
        with pytest.raises(TypeError):
            lonely.children["x"] = child
        assert child.children == {}
        await a.stop()
        assert sorted(parent.children) == ["b"]


@dataclass
class Relay:
    to: list[ActorRef[Any]]
    depth: int = 0


class Maker(Actor):
    @handler
    async def make(self, msg: Make) -> Payload:
        return await make_payload(msg)

    @handler
    async def relay(self, msg: Relay) -> list[int]:
        # Each hop asks the next actor, which runs inline in this handler: handlers run
        # within handlers, each by a runner of its own (see _cell._runner).
        if not msg.to:
            return [msg.depth]
        rest = await msg.to[0].ask(Relay(msg.to[1:], msg.depth + 1))
        return [msg.depth, *rest]

    @handler
    async def fail(self, msg: Fail) -> None:
        raise RuntimeError("fails")


@pytest.mark.parametrize("timeout", [None, DEFAULT, 30.0])
async def test_no_handler_answer_is_kept_once_delivered(timeout: Any) -> None:
    # Neither what runs the handlers nor the deadlines of asks (see _cell.Deadlines, where
    # an answered ask is forgotten at once) keep an answer.
    MADE.clear()
    async with ActorSystem() as system:
        ref = await system.start(Maker)
        assert isinstance(await ref.ask(Make(), timeout=timeout), Payload)  # inline
        ref.tell_nowait(Make())  # a turn
        await settle()
        gate = asyncio.Event()
        slow = asyncio.ensure_future(ref.ask(Make(gate), timeout=timeout))  # finished in a task
        await settle()
        queued = asyncio.ensure_future(ref.ask(Make(), timeout=timeout))  # served by that task
        ref.tell_nowait(Make())
        gate.set()
        assert isinstance(await slow, Payload)
        assert isinstance(await queued, Payload)
        del slow, queued  # (the tasks keep their results)
        ref.tell_nowait(Make())  # a turn again, the last handler run
        await settle()
        assert len(MADE) == 6
        assert [w() for w in MADE] == [None] * 6
        # A turn whose handler failed leaves a working system behind.
        ref.tell_nowait(Fail())
        await settle()
        assert isinstance(await ref.ask(Make()), Payload)


async def test_handlers_run_inline_within_handlers_run_inline_and_in_turns() -> None:
    async with ActorSystem() as system:
        refs = [await system.start(Maker) for _ in range(4)]
        assert await refs[0].ask(Relay(refs[1:])) == [0, 1, 2, 3]
        # From a dispatcher turn: the first actor is busy, so the ask is queued.
        gate = asyncio.Event()
        busy = asyncio.ensure_future(refs[0].ask(Make(gate)))
        await settle()
        queued = asyncio.ensure_future(refs[0].ask(Relay(refs[1:])))
        gate.set()
        await busy
        assert await within(queued) == [0, 1, 2, 3]


class _TimerLoop:
    """Just what ``Deadlines`` uses of a loop, on a clock the test moves (``advance``)."""

    def __init__(self) -> None:
        self.clock = 0.0
        self.timers: list[asyncio.TimerHandle] = []

    def time(self) -> float:
        return self.clock

    def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        return self.call_at(self.clock + delay, callback, *args)

    def call_at(self, when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        timer = asyncio.TimerHandle(when, callback, args, asyncio.get_running_loop())
        self.timers.append(timer)
        return timer

    def advance(self, to: float) -> None:
        """Run every timer due by ``to`` in the order of their times, the clock at each."""
        while due := sorted(
            (t for t in self.timers if t.when() <= to and not t.cancelled()), key=lambda t: t.when()
        ):
            timer = due[0]
            self.timers.remove(timer)
            self.clock = timer.when()
            timer._run()
        self.clock = to


@dataclass
class _Path:
    path: str


async def test_default_timeout_asks_expire_no_earlier_and_at_most_an_eighth_later() -> None:
    loop = _TimerLoop()
    deadlines = Deadlines(cast("Any", loop), 8.0)  # a tick every second
    asked: dict[asyncio.Future[Any], float] = {}
    failed: dict[asyncio.Future[Any], float] = {}
    answered = []
    step = 0.125
    for i in range(int(30 / step)):
        now = i * step
        loop.advance(now)
        for future in asked:
            if future.done() and future not in failed and future not in answered:
                failed[future] = now  # (seen one step late at most)
        if now < 12 and i % 3 == 0:  # an ask, the way ActorRef.ask makes one
            future = asyncio.get_running_loop().create_future()
            deadlines.bucket[future] = cast("Any", _Path("/a"))
            if deadlines.handle is None:
                deadlines.start()
            asked[future] = now
            if i % 2:  # answered at once: the asker forgets it, it never fails
                future.set_result(i)
                del deadlines.bucket[future]
                answered.append(future)
    assert len(failed) == len(asked) - len(answered) > 10
    for future, at in failed.items():
        assert asked[future] + 8.0 <= at <= asked[future] + 8.0 + 1.0 + step
        with pytest.raises(TimeoutError, match=r"^ask to /a got no reply within 8 s$"):
            future.result()
    assert deadlines.handle is None, "nothing waits: the timer stopped"
    assert not deadlines.closed
    loop.advance(40.0)
    future = asyncio.get_running_loop().create_future()
    deadlines.bucket[future] = cast("Any", _Path("/a"))
    deadlines.start()  # (as ask does: the timer was stopped): a tick at 41, expired at 49
    loop.advance(48.9)
    assert not future.done()
    loop.advance(49.0)
    assert isinstance(future.exception(), TimeoutError)


@pytest.mark.parametrize("default", [None, 30.0])
async def test_waiting_asks_are_in_the_deadline_buckets_until_answered(default: Any) -> None:
    async with ActorSystem(timeouts=Timeouts(ask=default)) as system:
        ref = await system.start(Maker)
        deadlines = ref._cell.dispatcher.deadlines
        gate = asyncio.Event()
        slow = asyncio.ensure_future(ref.ask(Make(gate)))  # run inline, suspends
        await settle()
        queued = asyncio.ensure_future(ref.ask(Make()))  # the actor is busy: queued
        explicit = asyncio.ensure_future(ref.ask(Make(), timeout=10.0))  # buckets of its own
        await settle()
        assert len(deadlines.bucket) == 2
        assert len(deadlines.others[10.0].bucket) == 1
        # No limit: no timer at all; else one, until nothing waits.
        assert (deadlines.handle is None) == (default is None)
        gate.set()
        await asyncio.gather(slow, queued, explicit)
        assert not deadlines.bucket
        assert not deadlines.others[10.0].bucket


async def test_explicit_timeouts_share_buckets_by_value_up_to_a_bound() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Maker)
        deadlines = ref._cell.dispatcher.deadlines
        gate = asyncio.Event()
        busy = asyncio.ensure_future(ref.ask(Make(gate), timeout=None))
        await settle()
        # An explicit timeout expires from its buckets as the default does.
        with pytest.raises(TimeoutError, match=r"no reply within 0\.05 s"):
            await within(ref.ask(Make(), timeout=0.05))
        assert list(deadlines.others) == [0.05]
        values = [5.0 + i for i in range(Deadlines.MAX_TIMEOUTS + 2)]
        waiting = [asyncio.ensure_future(ref.ask(Make(), timeout=t)) for t in values * 2]
        await settle()
        # Up to the bound, buckets per value; beyond it, a timer each (not kept here).
        assert sorted(deadlines.others) == [0.05, *values[: Deadlines.MAX_TIMEOUTS - 1]]
        assert [len(d.bucket) for d in deadlines.others.values()][1:] == [2] * 15
        beyond = asyncio.ensure_future(ref.ask(Make(), timeout=0.05 + 1e-9))
        with pytest.raises(TimeoutError, match=r"no reply within 0\.05 s"):
            await within(beyond)
        gate.set()
        assert all(isinstance(a, Payload) for a in await asyncio.gather(*waiting))
        await busy
        assert not any(d.bucket for d in deadlines.others.values())
