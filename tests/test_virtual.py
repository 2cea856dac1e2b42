"""Virtual actors: activation on demand, passivation to compress tokens, batch refs."""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Coroutine
from typing import Any, ClassVar

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers import Get, active
from log_capture import capture_logs
from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorSystem,
    Directive,
    InvalidArgumentError,
    MessageCapabilityError,
    OneForOne,
    Passivation,
    Signals,
    SystemStoppedError,
    Timeouts,
    Tracing,
    handler,
)
from swarm_actors._nats._cluster import NotOwnerError
from swarm_actors.events import MemoryJournal, SignalKind, SystemSignal
from swarm_actors.testing import VirtualClock, settle

pytestmark = pytest.mark.asyncio


class State(msgspec.Struct):
    count: int
    history: list[str]


class Hit(msgspec.Struct):
    tag: str = ""


class Hold(msgspec.Struct):
    """Handled only by the test actors that hold it on an event."""


class Session(Actor):
    starts: ClassVar[int] = 0
    stops: ClassVar[int] = 0

    def __init__(self) -> None:
        self.count = 0
        self.history: list[str] = []
        self.restored: State | None = None

    def snapshot(self) -> State:
        return State(self.count, self.history)

    def restore(self, state: State) -> None:
        self.restored = state
        self.count = state.count
        self.history = state.history

    async def on_start(self) -> None:
        Session.starts += 1

    async def on_stop(self) -> None:
        Session.stops += 1

    @handler
    async def hit(self, msg: Hit) -> int:
        self.count += 1
        self.history.append(msg.tag)
        return self.count

    @handler
    async def get(self, msg: Get) -> tuple[int, list[str], str]:
        return self.count, self.history, self.key


class Plain(Session):
    """Default ``on_start`` and ``on_stop``: the activation and passivation fast paths."""

    on_start = Actor.on_start
    on_stop = Actor.on_stop


@pytest.fixture(autouse=True)
def _reset() -> None:
    Session.starts = 0
    Session.stops = 0


async def test_first_message_activates_and_state_survives_passivation() -> None:
    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        alice = system.virtual(Session, "alice")
        bob = system.virtual(Session, "bob")
        assert not active(alice)
        assert await alice.ask(Hit("a1")) == 1
        assert active(alice)
        await bob.tell(Hit("b1"))  # activating bob passivates alice (least recently used)
        await settle()
        assert not active(alice)
        assert await alice.ask(Hit("a2")) == 2, "state restored from the compress token"
        assert await alice.ask(Get()) == (2, ["a1", "a2"], "alice")
        stats = system.virtual_stats()
        assert stats.activations == 3
        assert stats.passivations >= 2
        assert system.virtual(Session, "alice") == alice


async def test_untyped_restore_gets_plain_values() -> None:
    class Plain(Actor):
        def __init__(self) -> None:
            self.seen: Any = None
            self.n = 0

        def snapshot(self) -> dict[str, int]:
            return {"n": self.n}

        def restore(self, state: Any) -> None:
            self.seen = state
            self.n = state["n"]

        async def on_receive(self, message: Any) -> Any:
            self.n += 1
            return self.n, self.seen

    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        a, b = system.virtual(Plain, "a"), system.virtual(Plain, "b")
        await a.ask("x")
        await b.ask("x")
        assert await a.ask("x") == (2, {"n": 1})


async def test_idle_actors_are_passivated_on_the_clock() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock, passivation=Passivation(idle_after=10.0)) as system:
        busy = system.virtual(Session, "busy")
        idle = system.virtual(Session, "idle")
        await busy.tell(Hit())
        await idle.tell(Hit())
        for _ in range(4):
            await clock.advance(6.0)
            await busy.tell(Hit())
        assert active(busy)
        assert not active(idle), "idle for more than two periods"
        assert await idle.ask(Get()) == (1, [""], "idle")


async def test_at_most_one_activation_with_a_slow_on_start() -> None:
    gate = asyncio.Event()

    class Slow(Session):
        async def on_start(self) -> None:
            Session.starts += 1
            await gate.wait()

    async with ActorSystem() as system:
        ref = system.virtual(Slow, "k")
        senders = [asyncio.create_task(ref.ask(Hit(str(i)))) for i in range(5)]
        await settle()
        assert Session.starts == 1
        gate.set()
        results = await asyncio.gather(*senders)
        assert sorted(results) == [1, 2, 3, 4, 5]
        assert Session.starts == 1
        assert system.virtual_stats().activations == 1


async def test_messages_sent_during_passivation_are_not_lost() -> None:
    release = asyncio.Event()

    class SlowStop(Session):
        async def on_stop(self) -> None:
            await release.wait()

    async with ActorSystem() as system:
        ref = system.virtual(SlowStop, "k")
        await ref.ask(Hit("before"))
        passivating = asyncio.create_task(ref.passivate())
        await settle()
        late = [asyncio.create_task(ref.tell(Hit(f"late{i}"))) for i in range(3)]
        asked = asyncio.create_task(ref.ask(Get()))
        await settle()
        assert not asked.done()
        release.set()
        await passivating
        await asyncio.gather(*late)
        _, history, _ = await asyncio.wait_for(asked, 1.0)
        assert history[0] == "before"
        assert await ref.ask(Get()) == (4, ["before", "late0", "late1", "late2"], "k")
        assert system.virtual_stats().activations == 2


async def test_batch_spawn_gives_a_million_addressable_refs() -> None:
    async with ActorSystem(passivation=Passivation(max_active=100)) as system:
        batch = system.batch_spawn(Session, depth=4, branching=32)
        assert len(batch) == 1_048_576
        assert batch.info.count == 1_082_400
        leaf = batch[-1]
        assert await leaf.ask(Hit()) == 1
        assert system.virtual_stats().active == 1, "only the addressed actor exists"
        assert await batch[0].ask(Get()) == (0, [], batch.info.leaf_first_id)
        assert batch.node(batch.info.first_id).key == batch.info.first_id
        with pytest.raises(IndexError):
            batch[1_048_576]
        with pytest.raises(IndexError):
            batch.node(0)
        for i in range(300):
            await batch[i].tell(Hit())
        await settle()
        stats = system.virtual_stats()
        assert stats.active <= 100
        assert stats.activations == 301
        assert await batch[5].ask(Get()) == (1, [""], batch.info.leaf_first_id + 5)


async def test_stop_all_passivates_running_virtual_actors() -> None:
    async with ActorSystem() as system:
        await system.virtual(Session, "x").ask(Hit())
        await system.virtual(Session, "y").ask(Hit())
    assert Session.stops == 2
    assert system.virtual_stats().active == 0


async def test_bad_keys_and_options() -> None:
    with pytest.raises(InvalidArgumentError, match="max_active"):
        ActorSystem(passivation=Passivation(max_active=0))
    with pytest.raises(InvalidArgumentError, match="idle_after"):
        ActorSystem(passivation=Passivation(idle_after=0))
    async with ActorSystem() as system:
        with pytest.raises(InvalidArgumentError, match="key"):
            system.virtual(Session, "")
        ref = system.virtual(Session, "never-started")
        with pytest.raises(Exception, match="not active"):
            ref.tell_nowait(Hit())


async def test_tell_right_after_an_lru_passivation_began_is_not_lost() -> None:
    release = asyncio.Event()

    class SlowStop(Session):
        async def on_stop(self) -> None:
            await release.wait()

    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        a, b = system.virtual(SlowStop, "a"), system.virtual(SlowStop, "b")
        await a.ask(Hit("a0"))
        await b.tell(Hit("b0"))  # passivates `a`; its on_stop is now suspended
        late = asyncio.create_task(a.tell(Hit("late")))  # no yield in between
        await settle()
        assert not late.done(), "the sender waits for the passivation to finish"
        release.set()
        await late
        assert await a.ask(Get()) == (2, ["a0", "late"], "a")


@pytest.mark.parametrize("started", [False, True])
async def test_a_passivation_cancelled_by_stop_all_still_ends_sealed(started: bool) -> None:
    """``stop_all`` cancels the system's pending tasks, the task finishing a passivation among
    them, whether it has taken its first step or not (a task cancelled before then never runs
    at all). The passivation must still end with the actor sealed: otherwise every later
    message to it (and the next ``stop_all``) waits forever, or its state is lost."""
    release = asyncio.Event()
    unwound: list[str] = []

    class SlowStop(Session):
        async def on_stop(self) -> None:
            try:
                await release.wait()
            finally:
                unwound.append(self.key)

    system = ActorSystem(passivation=Passivation(max_active=1))
    try:
        a, b = system.virtual(SlowStop, "a"), system.virtual(SlowStop, "b")
        await a.ask(Hit("a0"))
        await b.tell(Hit("b0"))  # passivates `a`: its on_stop suspends, finished in a task
        (task,) = system._tasks
        if started:
            await settle()
        coro = typing.cast("Coroutine[Any, Any, None]", task.get_coro())
        state = inspect.CORO_SUSPENDED if started else inspect.CORO_CREATED
        assert inspect.getcoroutinestate(coro) == state  # the case under test
        task.cancel()  # as stop_all does
        release.set()  # later passivations (of `b`, below and at the end) finish on their own
        assert await asyncio.wait_for(a.ask(Get()), 2.0) == (1, ["a0"], "a")
        # `a`'s on_stop was unwound, then `b` passivated (normally) to make room for the ask.
        assert unwound == ["a", "b"]
        assert system.virtual_stats().passivations == 2
    finally:
        # Not ``async with``: its exit would wait for the passivation forever, past any guard.
        await asyncio.wait_for(system.stop_all(), 2.0)


async def test_an_on_stop_unwound_after_stop_all_still_sends_as_its_actor() -> None:
    """The passivation task cancelled before its first step: on_stop's finally blocks run
    when it is closed, and what they send comes from the actor, under its grant."""
    release = asyncio.Event()
    sent: list[str] = []

    class Guarded(Session, may_message=("/Session:allowed",)):
        async def on_stop(self) -> None:
            try:
                await release.wait()
            finally:
                try:
                    self.system.virtual(Session, "denied").tell_nowait(Hit("from on_stop"))
                    sent.append("sent")
                except MessageCapabilityError:
                    sent.append("refused")

    system = ActorSystem(passivation=Passivation(max_active=1))
    try:
        a, b = system.virtual(Guarded, "a"), system.virtual(Guarded, "b")
        await a.ask(Hit("a0"))
        await b.tell(Hit("b0"))  # passivates `a`: its on_stop suspends, finished in a task
        (task,) = system._tasks
        task.cancel()  # before its first step, as stop_all does
        await asyncio.wait_for(settle(), 2.0)
        assert sent == ["refused"]
    finally:
        release.set()
        await asyncio.wait_for(system.stop_all(), 2.0)


async def test_passivating_a_busy_actor_lets_its_handler_finish() -> None:
    """A passivation drains: a handler in progress finishes and its asker gets the answer."""
    entered, gate = asyncio.Event(), asyncio.Event()

    class Held(Session):
        @handler
        async def hold(self, msg: Hold) -> int:
            entered.set()
            await gate.wait()
            self.count += 1
            self.history.append("held")
            return self.count

    async with ActorSystem() as system:
        ref = system.virtual(Held, "k")
        assert await ref.ask(Hit("a")) == 1
        asking = asyncio.create_task(ref.ask(Hold()))
        await entered.wait()  # the handler awaits its gate; the mailbox is empty
        # A callback runs only once this task suspends: the gate opens after the passivation
        # below has stopped the actor taking messages and decided whether to wait for it.
        asyncio.get_running_loop().call_soon(gate.set)
        await ref.passivate()
        assert not active(ref)
        assert await asyncio.wait_for(asking, 1.0) == 2
        assert Session.stops == 1
        assert await ref.ask(Get()) == (2, ["a", "held"], "k"), "its snapshot came after it"
        assert system.virtual_stats().activations == 2


async def test_a_failed_reactivation_keeps_the_passivated_state() -> None:
    """``on_start`` failing on reactivation fails that message only: the state the actor was
    passivated with is still there for the next activation."""

    class Flaky(Session):
        fail_next_start: ClassVar[bool] = False

        async def on_start(self) -> None:
            if Flaky.fail_next_start:
                Flaky.fail_next_start = False
                raise RuntimeError("on_start failed")

    async with ActorSystem() as system:
        ref = system.virtual(Flaky, "k")
        for tag in ("a", "b", "c"):
            await ref.tell(Hit(tag))
        assert await ref.ask(Get()) == (3, ["a", "b", "c"], "k")
        await ref.passivate()
        Flaky.fail_next_start = True
        with pytest.raises(RuntimeError, match="on_start failed"):
            await ref.ask(Hit("refused"))
        assert not active(ref)
        assert await ref.ask(Get()) == (3, ["a", "b", "c"], "k"), "the saved state is kept"
        assert await ref.ask(Hit("d")) == 4
        stats = system.virtual_stats()
        assert (stats.activations, stats.passivations) == (2, 1)


async def test_messages_arriving_while_a_busy_actor_passivates_are_not_lost() -> None:
    """Tells and asks that arrive while the passivation waits for a handler in progress, or for
    ``on_stop``, wait for it to finish and are each handled once, by the next activation."""
    entered, gate = asyncio.Event(), asyncio.Event()
    stopping, release = asyncio.Event(), asyncio.Event()

    class Held(Session):
        @handler
        async def hold(self, msg: Hold) -> int:
            entered.set()
            await gate.wait()
            self.count += 1
            self.history.append("held")
            return self.count

        async def on_stop(self) -> None:
            stopping.set()
            await release.wait()

    async with ActorSystem() as system:
        loop = asyncio.get_running_loop()
        ref = system.virtual(Held, "k")
        holding = asyncio.create_task(ref.ask(Hold()))
        await entered.wait()
        # Tasks take their first steps in the order they were created: the passivation begins
        # (waiting for the handler), then the two messages arrive, then the handler finishes.
        passivating = asyncio.create_task(ref.passivate())
        draining = [
            asyncio.create_task(ref.tell(Hit("told while draining"))),
            asyncio.create_task(ref.ask(Hit("asked while draining"))),
        ]
        loop.call_soon(gate.set)
        await stopping.wait()
        in_on_stop = [
            asyncio.create_task(ref.tell(Hit("told in on_stop"))),
            asyncio.create_task(ref.ask(Hit("asked in on_stop"))),
        ]
        loop.call_soon(release.set)  # after both arrived
        assert await asyncio.wait_for(holding, 1.0) == 1
        await passivating
        await asyncio.wait_for(asyncio.gather(*draining, *in_on_stop), 1.0)
        count, history, _ = await ref.ask(Get())
        assert history[0] == "held", "the old activation handled only its own message"
        assert sorted(history[1:]) == sorted(
            ["told while draining", "asked while draining", "told in on_stop", "asked in on_stop"]
        )
        assert count == 5
        stats = system.virtual_stats()
        assert (stats.activations, stats.passivations) == (2, 1)


@pytest.mark.parametrize("busy", [True, False], ids=["handler-in-progress", "idle"])
async def test_senders_waiting_for_room_when_a_passivation_begins_are_not_lost(
    busy: bool,
) -> None:
    """A tell and an ask blocked on a full mailbox when a passivation begins: each is handled
    once, by the next activation, and neither gets ``ActorDeadError``.

    Busy, the passivation stops the actor after its handler in progress (refusing the waiting
    senders). Idle, it handles what is queued and seals the mailbox in one go, having woken
    only the one sender it made room for.
    """
    entered, gate = asyncio.Event(), asyncio.Event()

    class Box(Session, mailbox_size=1):
        @handler
        async def hold(self, msg: Hold) -> int:
            entered.set()
            await gate.wait()
            self.count += 1
            self.history.append("held")
            return self.count

    async with ActorSystem() as system:
        ref = system.virtual(Box, "k")
        old = ["queued"]
        if busy:
            holding = asyncio.create_task(ref.ask(Hold()))
            await entered.wait()
            old.insert(0, "held")
        else:
            await ref.ask(Get())  # activates it
        # Tasks take their first steps in the order they were created: both senders find the
        # mailbox full (filled below, before any of them runs) and wait for room; then the
        # passivation begins; then (busy) the handler finishes.
        told = asyncio.create_task(ref.tell(Hit("told")))
        asked = asyncio.create_task(ref.ask(Hit("asked")))
        passivating = asyncio.create_task(ref.passivate())
        ref.tell_nowait(Hit("queued"))
        asyncio.get_running_loop().call_soon(gate.set)
        if busy:
            assert await asyncio.wait_for(holding, 1.0) == 1
        await passivating
        await asyncio.wait_for(told, 1.0)
        answer = await asyncio.wait_for(asked, 1.0)
        count, history, _ = await ref.ask(Get())
        assert history[: len(old)] == old, "the old activation handled what it had queued"
        assert sorted(history[len(old) :]) == ["asked", "told"]
        assert count == len(history)
        assert answer == history.index("asked") + 1
        stats = system.virtual_stats()
        assert (stats.activations, stats.passivations) == (2, 1)


# --- state: what is kept and what is restored ---------------------------------------------------


async def test_restore_without_an_annotation_or_with_more_parameters_gets_plain_values() -> None:
    """The state decoder follows ``restore``'s annotation; without one, plain values."""

    class Bare(Actor):
        def __init__(self) -> None:
            self.n = 0
            self.seen: list[Any] = []

        def snapshot(self) -> dict[str, int]:
            return {"n": self.n}

        def restore(self, state, strict=True):  # type: ignore[no-untyped-def]
            self.seen.append(state)
            self.n = state["n"]

        async def on_receive(self, message: Any) -> Any:
            self.n += 1
            return self.n, self.seen

    class Unannotated(Bare):
        def restore(self, state):  # type: ignore[no-untyped-def,override]
            self.seen.append(state)
            self.n = state["n"]

    for cls in (Bare, Unannotated):
        async with ActorSystem() as system:
            ref = system.virtual(cls, "k")
            await ref.ask("x")
            await ref.passivate()
            assert await ref.ask("x") == (2, [{"n": 1}]), cls.__name__


async def test_restore_is_called_only_when_a_snapshot_was_kept() -> None:
    """A ``snapshot`` of ``None`` keeps nothing: the next activation starts fresh, without
    ``restore``; a ``snapshot`` that raises loses the state (logged) and nothing else."""

    class Optional(Session):
        keep: ClassVar[str] = "none"

        def snapshot(self) -> State:
            if Optional.keep == "raise":
                raise RuntimeError("cannot snapshot")
            return None if Optional.keep == "none" else super().snapshot()  # type: ignore[return-value]

    async with ActorSystem() as system:
        ref = system.virtual(Optional, "k")
        for keep in ("none", "raise"):
            Optional.keep = keep
            await ref.ask(Hit("a"))
            await ref.passivate()
            assert await ref.ask(Get()) == (0, [], "k"), keep
            await ref.passivate()
        Optional.keep = "state"
        await ref.ask(Hit("kept"))
        await ref.passivate()
        assert await ref.ask(Get()) == (1, ["kept"], "k")
        assert system.virtual_stats().passivations == 5


async def test_a_restarted_virtual_actor_keeps_its_key() -> None:
    """Supervision restarts a failed virtual actor with a fresh instance: same key, and it
    keeps taking messages."""

    class Fragile(Session):
        @handler
        async def hold(self, msg: Hold) -> None:
            raise RuntimeError("handler failed")

    async with ActorSystem() as system:
        ref = system.virtual(Fragile, "k")
        assert await ref.ask(Hit("a")) == 1
        await ref.tell(Hold())  # a tell's failure goes to the supervisor (an ask's would not)
        await settle()
        assert await ref.ask(Get()) == (0, [], "k"), "a restart starts from a fresh instance"
        assert await ref.ask(Hit("b")) == 1
        assert system.virtual_stats().activations == 1


async def test_an_actor_stopped_by_its_supervisor_is_activated_again() -> None:
    """A virtual actor whose failure stops it is no longer active; its next message activates
    it again."""

    class Fragile(Session):
        fail_start: ClassVar[bool] = False

        async def on_start(self) -> None:
            if Fragile.fail_start:
                Fragile.fail_start = False
                raise RuntimeError("on_start failed")

        @handler
        async def hold(self, msg: Hold) -> None:
            raise RuntimeError("handler failed")

    stop = OneForOne(decider=lambda exc: Directive.STOP)
    async with ActorSystem(supervision=stop, passivation=Passivation(max_active=1)) as system:
        ref = system.virtual(Fragile, "k")
        for fail_start in (False, True):
            await ref.ask(Hit("a"))
            await ref.tell(Hold())  # supervised: stopped
            await settle()
            assert not active(ref)
            assert system.virtual_stats().active == 0
            Fragile.fail_start = fail_start
            if fail_start:
                with pytest.raises(RuntimeError, match="on_start failed"):
                    await ref.ask(Get())
            else:  # over the limit, the LRU counts it no more
                await system.virtual(Session, "b").ask(Hit())
                await system.virtual(Session, "c").ask(Hit())
                await settle()
                assert system.virtual_stats().active == 1
            assert await ref.ask(Get()) == (0, [], "k")
            assert active(ref)
            await settle()
            assert system.virtual_stats().active == 1


async def test_on_stop_raising_still_passivates_with_the_state() -> None:
    class Raising(Session):
        async def on_stop(self) -> None:
            Session.stops += 1
            raise RuntimeError("on_stop failed")

    class RaisingLater(Raising):
        async def on_stop(self) -> None:
            await asyncio.sleep(0)
            await super().on_stop()

    for cls in (Raising, RaisingLater):
        with capture_logs() as logs:
            async with ActorSystem() as system:
                ref = system.virtual(cls, "k")
                await ref.ask(Hit("a"))
                await ref.passivate()
                assert not active(ref)
                assert await ref.ask(Get()) == (1, ["a"], "k"), cls.__name__
                await ref.passivate()
        failures = [e for e in logs if e["event"] == "on_stop raised during passivation"]
        assert len(failures) == 2, cls.__name__
    assert Session.stops == 4


async def test_on_stop_that_suspends_runs_to_its_end() -> None:
    class Slow(Session):
        async def on_stop(self) -> None:
            await asyncio.sleep(0)
            Session.stops += 1

    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        a, b = system.virtual(Slow, "a"), system.virtual(Slow, "b")
        await a.ask(Hit("a"))
        await b.ask(Hit("b"))  # passivates `a` (its on_stop in a task)
        await a.ask(Hit("a"))  # waits for that passivation, then passivates `b`
        await settle()
        assert Session.stops == 2
        assert await a.ask(Get()) == (2, ["a", "a"], "a")


async def test_event_sequence_survives_passivation_and_a_failed_activation() -> None:
    """An actor's events keep one sequence across activations, even when an ``on_start`` that
    recorded an event failed; actors that never recorded anything are unaffected."""

    class Recording(Session):
        fail: ClassVar[bool] = False

        async def on_start(self) -> None:
            self.decide("starting")
            if Recording.fail:
                Recording.fail = False
                raise RuntimeError("on_start failed")

    async with ActorSystem() as system:
        ref = system.virtual(Recording, "k")
        await ref.ask(Hit())
        await ref.passivate()
        Recording.fail = True
        with pytest.raises(RuntimeError, match="on_start failed"):
            await ref.ask(Hit())
        await system.virtual(Session, "quiet").ask(Hit())  # never recorded: no ledger
        await ref.ask(Hit())
        journal = system.journal
        assert isinstance(journal, MemoryJournal)
        mine = [e.event for e in journal.entries() if e.event.agent_id.endswith("Recording:k")]
        assert [e.sequence for e in mine] == [1, 2, 3]


# --- addressing ----------------------------------------------------------------------------------


async def test_refs_compare_by_actor_and_batch_refs_check_their_range() -> None:
    async with ActorSystem() as system:
        a = system.virtual(Session, "a")
        assert a == system.virtual(Session, "a")
        assert hash(a) == hash(system.virtual(Session, "a"))
        assert a != system.virtual(Session, "b")
        assert a != "a"
        assert a != object()
        assert repr(a) == "<VirtualRef Session:'a'>"
        assert a.key == "a"
        batch = system.batch_spawn(Session, depth=2, branching=3)
        info = batch.info
        assert len({batch[i] for i in range(9)} | {batch[-9], batch[8]}) == 9
        with pytest.raises(IndexError, match="leaf 9 out of range for a batch of 9 leaves"):
            batch[9]
        with pytest.raises(IndexError, match="leaf -1 out of range"):
            batch[-10]
        last = info.first_id + info.count - 1
        assert batch.node(last) == batch[8]
        with pytest.raises(IndexError, match=f"agent {last + 1} is not in this batch"):
            batch.node(last + 1)
        top = batch.node(info.first_id)
        assert top.agent_id == top.key == info.first_id
        assert await top.ask(Hit()) == 1, "an intermediate node is an actor too"
        assert await top.ask(Get()) == (1, [""], info.first_id)
        stats = system.virtual_stats()
        assert stats.known == 2 + info.count, "two keyed refs and the batch"
        assert stats.active == 1


# --- the LRU bound -------------------------------------------------------------------------------


async def test_passing_max_active_passivates_a_batch_of_a_64th() -> None:
    """Going over ``max_active`` passivates the least recently used and 1/64 more at once."""
    async with ActorSystem(passivation=Passivation(max_active=128)) as system:
        refs = [system.virtual(Session, f"k{i}") for i in range(129)]
        for ref in refs[:128]:
            await ref.tell(Hit())
        await settle()
        assert system.virtual_stats().active == 128, "up to max_active, all stay active"
        await refs[128].tell(Hit())
        await settle()
        assert system.virtual_stats().active == 126
        assert not active(refs[0])
        assert not active(refs[1])
        assert not active(refs[2])
        assert active(refs[3])
        assert active(refs[128])


async def test_the_lru_passivates_a_busy_actor_once_its_handler_finishes() -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    class Held(Session):
        @handler
        async def hold(self, msg: Hold) -> int:
            entered.set()
            await gate.wait()
            return self.count

    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        a, b, c = system.virtual(Held, "a"), system.virtual(Held, "b"), system.virtual(Held, "c")
        holding = asyncio.create_task(a.ask(Hold()))
        await entered.wait()
        await b.ask(Hit())  # `a` is the least recently used, but busy
        await c.ask(Hit())  # picks `a` again (and `b`)
        gate.set()
        assert await holding == 0
        await settle()
        assert not active(a)
        assert system.virtual_stats().active == 1
        # Passivated by a task once: it is picked again the next time it is least recently used.
        await a.ask(Hit())
        await settle()
        assert active(a)
        assert not active(c)
        entered.clear()
        gate.clear()
        holding = asyncio.create_task(a.ask(Hold()))
        await entered.wait()
        await b.ask(Hit())
        gate.set()
        await holding
        await settle()
        assert not active(a)
        assert active(b)
        assert await a.ask(Get()) == (1, [""], "a")


async def test_a_queued_message_waits_for_the_handler_in_progress_when_the_lru_picks_it() -> None:
    """An actor handles one message at a time, also while the LRU passivates it."""
    entered, gate = asyncio.Event(), asyncio.Event()
    overlaps: list[str] = []

    class Held(Session):
        running = False

        @handler
        async def hold(self, msg: Hold) -> int:
            entered.set()
            self.running = True
            await gate.wait()
            self.running = False
            return self.count

        @handler
        async def hit(self, msg: Hit) -> int:
            if self.running:
                overlaps.append(msg.tag)
            return await super().hit(msg)

    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        a, b = system.virtual(Held, "a"), system.virtual(Held, "b")
        holding = asyncio.create_task(a.ask(Hold()))
        await entered.wait()
        await a.tell(Hit("queued"))
        await b.tell(Hit())  # `a` is the least recently used: busy, with a queued message
        gate.set()
        await holding
        await settle()
        assert overlaps == []
        assert await a.ask(Get()) == (1, ["queued"], "a")


async def test_an_activation_in_progress_is_not_passivated_by_the_lru() -> None:
    gate = asyncio.Event()

    class SlowStart(Session):
        async def on_start(self) -> None:
            if self.key == "a" and self.restored is not None:
                await gate.wait()

    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        a, b = system.virtual(SlowStart, "a"), system.virtual(SlowStart, "b")
        await a.ask(Hit("a1"))
        await b.ask(Hit("b1"))  # passivates `a`
        reactivating = asyncio.create_task(a.ask(Hit("a2")))
        await settle()
        await b.ask(Hit("b2"))  # `a` is restored but not started: the LRU leaves it alone
        gate.set()
        assert await reactivating == 2
        await b.ask(Hit("b3"))
        await settle()
        assert await a.ask(Get()) == (2, ["a1", "a2"], "a")


async def test_an_actor_whose_first_activation_failed_is_used_again_in_lru_order() -> None:
    class Flaky(Session):
        failed: ClassVar[bool] = False

        async def on_start(self) -> None:
            if not Flaky.failed:
                Flaky.failed = True
                raise RuntimeError("on_start failed")

    async with ActorSystem(passivation=Passivation(max_active=2)) as system:
        batch = system.batch_spawn(Flaky, depth=1, branching=8)
        with pytest.raises(RuntimeError, match="on_start failed"):
            await batch[0].ask(Hit())
        for i in (1, 2, 3):
            await batch[i].ask(Hit())
        await settle()
        assert await batch[0].ask(Hit()) == 1
        await settle()
        assert active(batch[0])
        assert active(batch[3])
        await batch[4].ask(Hit())
        await settle()
        assert active(batch[0])
        assert not active(batch[3]), "`3` is now the least recently used"
        assert system.virtual_stats().active == 2


# --- passivation on the clock --------------------------------------------------------------------


async def test_the_sweep_passivates_only_actors_idle_for_a_whole_period() -> None:
    clock = VirtualClock()
    async with ActorSystem(
        clock=clock, passivation=Passivation(idle_after=10.0), signals=Signals(health_interval=None)
    ) as system:
        a, b = system.virtual(Session, "a"), system.virtual(Session, "b")
        await a.tell(Hit())  # the sweep runs at 10, 20, ...
        await clock.advance(5.0)
        await b.tell(Hit())  # activated mid-period: no sweep of its own
        await clock.advance(7.0)
        await a.tell(Hit())  # t=12
        await clock.advance(3.5)  # t=15.5: one sweep so far
        assert active(a)
        assert active(b)
        await clock.advance(5.0)  # t=20.5
        assert active(a), "a handled a message between the sweeps at 10 and 20"
        assert not active(b), "b handled nothing between the sweeps at 10 and 20"
        await clock.advance(10.0)  # t=30.5
        assert not active(a)
        assert clock.pending == 0, "nothing active: no sweep left on the clock"
        # A later activation starts the sweeps again.
        await a.tell(Hit())
        await clock.advance(20.5)
        assert not active(a)
        assert await a.ask(Get()) == (3, ["", "", ""], "a")


# --- sends -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Session, Plain], ids=["on_start", "fast-path"])
async def test_tell_to_a_full_mailbox_waits_and_activates_nothing_more(
    cls: type[Session],
) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    handled = asyncio.Event()

    class Box(cls, mailbox_size=1):  # type: ignore[valid-type,misc,call-arg]
        @handler
        async def hold(self, msg: Hold) -> int:
            entered.set()
            await gate.wait()
            return int(self.count)

        @handler
        async def hit(self, msg: Hit) -> int:
            handled.set()
            return int(await super().hit(msg))

    async with ActorSystem() as system:
        ref = system.virtual(Box, "k")
        holding = asyncio.create_task(ref.ask(Hold()))
        await entered.wait()
        await ref.tell(Hit("queued"))  # fills the mailbox
        waiting = asyncio.create_task(ref.tell(Hit("waiting")))
        await settle()
        assert not waiting.done(), "a full mailbox takes nothing more"
        gate.set()
        await holding
        await waiting
        assert await ref.ask(Get()) == (2, ["queued", "waiting"], "k")
        assert system.virtual_stats().activations == 1
        # A tell to a running, idle actor is handled without another message behind it.
        handled.clear()
        await ref.tell(Hit("alone"))
        await asyncio.wait_for(handled.wait(), 1.0)


async def test_passivate_is_a_no_op_unless_running_and_waits_for_one_in_progress() -> None:
    release = asyncio.Event()

    class SlowStop(Session):
        async def on_stop(self) -> None:
            await release.wait()
            Session.stops += 1

    async with ActorSystem() as system:
        ref = system.virtual(SlowStop, "k")
        await ref.passivate()  # never activated
        assert system.virtual_stats().passivations == 0
        await ref.ask(Hit("a"))
        first = asyncio.create_task(ref.passivate())
        second = asyncio.create_task(ref.passivate())
        await settle()
        assert not first.done()
        assert not second.done()
        release.set()
        await asyncio.wait_for(asyncio.gather(first, second), 1.0)
        assert Session.stops == 1
        assert system.virtual_stats().passivations == 1
        assert await ref.ask(Get()) == (1, ["a"], "k")


async def test_the_actor_ref_of_a_passivated_activation_refuses_messages() -> None:
    """A handler's ``self.ref`` addresses that activation: once it is passivated, sends to it
    fail with ``ActorDeadError`` rather than vanish."""

    class Own(Session):
        @handler
        async def hold(self, msg: Hold) -> Any:
            return self.ref

    async with ActorSystem() as system:
        ref = system.virtual(Own, "k")
        own = await ref.ask(Hold())
        await ref.passivate()
        with pytest.raises(ActorDeadError):
            await own.tell(Hit("lost?"))
        with pytest.raises(ActorDeadError):
            own.tell_nowait(Hit("lost?"))
        assert await ref.ask(Get()) == (0, [], "k")


async def test_passivation_stops_the_actors_children() -> None:
    class Child(Actor):
        async def on_stop(self) -> None:
            Session.stops += 10

    class Parent(Session):
        @handler
        async def hold(self, msg: Hold) -> None:
            await self.start_child(Child, name="child")

    async with ActorSystem() as system:
        ref = system.virtual(Parent, "k")
        await ref.ask(Hold())
        await ref.passivate()
        assert Session.stops == 11, "the child stopped with its parent"
        assert await ref.ask(Get()) == (0, [], "k")


async def test_sends_from_on_start_and_on_stop_are_checked_as_the_actors_own() -> None:
    """``may_message`` applies to ``on_start`` and ``on_stop`` of a virtual actor, also when
    ``on_stop`` suspends and ends in a task of the passivation."""

    class Sealed(Session, may_message=()):
        mode: ClassVar[str] = ""

        async def on_start(self) -> None:
            if Sealed.mode == "start":
                await self.system.virtual(Session, "other").tell(Hit("from on_start"))

        async def on_stop(self) -> None:
            if Sealed.mode == "stop-later":
                await asyncio.sleep(0)
            if Sealed.mode.startswith("stop"):
                await self.system.virtual(Session, "other").tell(Hit("from on_stop"))

    async with ActorSystem() as system:
        ref = system.virtual(Sealed, "k")
        Sealed.mode = "start"
        with pytest.raises(MessageCapabilityError):
            await ref.ask(Hit())
        for mode in ("stop", "stop-later"):
            Sealed.mode = ""
            await ref.ask(Hit())
            Sealed.mode = mode
            with capture_logs() as logs:
                await ref.passivate()
            assert [e["event"] for e in logs if e["log_level"] == "error"] == [
                "on_stop raised during passivation"
            ], mode
        assert not active(system.virtual(Session, "other"))
        assert system.virtual_stats().known == 2


async def test_a_turn_run_by_a_passivation_is_not_traced_in_the_senders_context() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    class Traced(Session):
        @handler
        async def hit(self, msg: Hit) -> int:
            with self.step(f"step {msg.tag}"):
                return await super().hit(msg)

    async with ActorSystem(
        passivation=Passivation(max_active=1), tracing=Tracing(provider=provider)
    ) as system:
        a, b = system.virtual(Traced, "a"), system.virtual(Traced, "b")
        await a.ask(Hit("first"))
        await a.tell(Hit("queued"))  # not yet handled: a is not scheduled until we yield
        with provider.get_tracer("tests").start_as_current_span("root"):
            await b.tell(Hit("b"))  # passivates a, which handles "queued" first
        await settle()
    provider.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root, queued = spans["root"], spans["step queued"]
    assert root.context is not None
    assert queued.context is not None
    assert queued.context.trace_id != root.context.trace_id


# --- across nodes: what the registry asks of the cluster layer ------------------------------------


class StoreCluster:
    """Stands in for ``_cluster.ClusterState`` in front of a system's registry: it places agents
    (as ``Cluster.bind`` does), owns them or not, keeps their state in a dict and counts reads.

    Like the real one, it knows only the agents placed on it (``KeyError`` for others).
    """

    def __init__(self, system: ActorSystem) -> None:
        self.registry = system._virtual
        self.registry.attach_placer(self)
        self.store: dict[str, bytes] = {}
        self.reads: list[str] = []
        self.owner = True
        self.gate: asyncio.Event | None = None

    def place(self, actor_class: type[Session], key: str, target: str) -> Any:
        local = self.registry.ref(actor_class, key, target)
        self.registry.place(local.agent_id, target)
        return local

    def check_owner(self, agent: int) -> None:
        target = self.registry.placed[agent]
        if not self.owner:
            raise NotOwnerError(f"{target} is not held here")

    async def fetch(self, agent: int) -> bytes | None:
        target = self.registry.placed[agent]
        self.reads.append(target)
        if self.gate is not None:
            await self.gate.wait()
        return self.store.get(target)

    def on_seal(self, agent: int, data: bytes) -> None:
        self.store[self.registry.placed[agent]] = data

    def release_soon(self, agent: int) -> None:
        pass  # keeps every agent (``ClusterState`` forgets those whose state is stored)


@pytest.mark.parametrize("cls", [Session, Plain], ids=["on_start", "fast-path"])
async def test_a_placed_actor_starts_from_the_stored_state_and_stores_it_back(
    cls: type[Session],
) -> None:
    encode = msgspec.msgpack.encode
    async with ActorSystem() as system:
        cluster = StoreCluster(system)
        ref = cluster.place(cls, "k", "t1")
        empty = cluster.place(cls, "k", "t2")  # same key, another target: another actor
        local = system.virtual(cls, "k")  # not placed: never asks the cluster
        assert len({ref.agent_id, empty.agent_id, local.agent_id}) == 3
        cluster.store["t1"] = encode(State(5, ["elsewhere"]))
        await ref.tell(Hit("here"))  # the fast path of tell, for default on_start
        assert await ref.ask(Get()) == (6, ["elsewhere", "here"], "k")
        assert await empty.ask(Hit("here")) == 1, "nothing stored: a fresh actor"
        assert await local.ask(Hit("local")) == 1
        await ref.passivate()
        await local.passivate()
        assert msgspec.msgpack.decode(cluster.store["t1"], type=State) == State(
            6, ["elsewhere", "here"]
        )
        assert await ref.ask(Get()) == (6, ["elsewhere", "here"], "k")
        assert cluster.reads == ["t1", "t2"], "read once, before the first activation"
        cluster.owner = False
        await ref.passivate()
        with pytest.raises(NotOwnerError):
            await ref.ask(Get())
        assert await local.ask(Get()) == (1, ["local"], "k")


async def test_senders_arriving_while_a_placed_actor_loads_its_state_share_one_load() -> None:
    async with ActorSystem() as system:
        cluster = StoreCluster(system)
        cluster.gate = asyncio.Event()
        ref = cluster.place(Session, "k", "t")
        cluster.store["t"] = msgspec.msgpack.encode(State(1, ["stored"]))
        senders = [asyncio.create_task(ref.ask(Hit(str(i)))) for i in range(3)]
        await settle()
        assert cluster.reads == ["t"]
        cluster.gate.set()
        assert sorted(await asyncio.gather(*senders)) == [2, 3, 4]
        assert system.virtual_stats().activations == 1


@pytest.mark.parametrize("send", ["tell", "ask", "tell_nowait"])
async def test_every_send_to_a_running_actor_makes_it_the_most_recently_used(send: str) -> None:
    async with ActorSystem(passivation=Passivation(max_active=2)) as system:
        a, b, c = (system.virtual(Session, k) for k in "abc")
        await a.ask(Hit())
        await b.ask(Hit())
        if send == "tell":
            await a.tell(Hit())
        elif send == "ask":
            await a.ask(Hit())
        else:
            a.tell_nowait(Hit())
        await c.ask(Hit())  # passivates the least recently used: `b`
        await settle()
        assert active(a)
        assert not active(b)
        assert await a.ask(Get()) == (2, ["", ""], "a")


async def test_ask_timeouts_are_checked_and_applied() -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    class Stuck(Session):
        @handler
        async def hold(self, msg: Hold) -> None:
            entered.set()
            await gate.wait()

    async with ActorSystem() as system:
        ref = system.virtual(Stuck, "k")
        with pytest.raises(ValueError, match="timeout must be"):
            await ref.ask(Hit(), timeout=0)
        assert not active(ref), "a bad timeout sends nothing"
        # Should the timeout be lost, the handler still ends (and the test fails) in a second.
        release = asyncio.get_running_loop().call_later(1.0, gate.set)
        with pytest.raises(TimeoutError):
            await ref.ask(Hold(), timeout=0.01)
        assert entered.is_set()
        assert not gate.is_set()
        release.cancel()
        gate.set()


async def test_a_virtual_actor_may_message_itself_and_the_paths_its_grant_names() -> None:
    class Self(Session, may_message=("/Session:allowed",)):
        @handler
        async def hold(self, msg: Hold) -> None:
            await self.system.virtual(Session, "allowed").tell(Hit("from k"))
            await self.system.virtual(Self, self.key).tell(Hit("to myself"))
            await self.system.virtual(Session, "denied").tell(Hit("from k"))

    async with ActorSystem() as system:
        ref = system.virtual(Self, "k")
        with pytest.raises(MessageCapabilityError, match="may not message /Session:denied"):
            await ref.ask(Hold())
        assert await ref.ask(Get()) == (1, ["to myself"], "k")
        assert await system.virtual(Session, "allowed").ask(Get()) == (1, ["from k"], "allowed")
        assert not active(system.virtual(Session, "denied"))


async def test_tells_carry_the_senders_trace_context() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    class Traced(Session):
        @handler
        async def hit(self, msg: Hit) -> int:
            with self.step(f"step {msg.tag}"):
                return await super().hit(msg)

    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        ref = system.virtual(Traced, "k")
        with provider.get_tracer("tests").start_as_current_span("root"):
            await ref.tell(Hit("activating"))
            await ref.tell(Hit("running"))
            ref.tell_nowait(Hit("nowait"))
        await ref.tell(Hit("untraced"))
        assert await ref.ask(Get()) == (4, ["activating", "running", "nowait", "untraced"], "k")
    provider.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    trace_of = {name: span.context.trace_id for name, span in spans.items() if span.context}
    root = trace_of["root"]
    assert [trace_of[f"step {tag}"] == root for tag in ("activating", "running", "nowait")] == [
        True,
        True,
        True,
    ]
    assert trace_of["step untraced"] != root


async def test_activations_and_passivations_are_signalled_when_asked_for() -> None:
    for asked in (True, False):
        async with ActorSystem(signals=Signals(virtual=asked)) as system:
            ref = system.virtual(Session, "k")
            await ref.ask(Hit())
            await ref.passivate()
            journal = system.journal
            assert isinstance(journal, MemoryJournal)
            kinds = [
                e.event.payload.kind
                for e in journal.entries()
                if e.event.agent_id == "/Session:k" and isinstance(e.event.payload, SystemSignal)
            ]
        assert kinds == ([SignalKind.ACTIVATED, SignalKind.PASSIVATED] if asked else [])


async def test_a_state_that_fails_to_restore_is_kept_for_the_next_activation() -> None:
    class Picky(Session):
        refuse: ClassVar[bool] = False

        def restore(self, state: State) -> None:
            if Picky.refuse:
                raise ValueError("cannot restore")
            super().restore(state)

    async with ActorSystem() as system:
        ref = system.virtual(Picky, "k")
        await ref.ask(Hit("a"))
        await ref.passivate()
        Picky.refuse = True
        with pytest.raises(ValueError, match="cannot restore"):
            await ref.ask(Hit("b"))
        Picky.refuse = False
        assert await ref.ask(Get()) == (1, ["a"], "k")


async def test_an_actor_being_or_having_been_passivated_starts_no_children() -> None:
    """``start_child`` from ``on_stop`` (at once or after suspending), or from a task that
    outlived the activation, fails: no child outlives its passivated parent."""

    class Child(Actor):
        pass

    class Parent(Session):
        late: ClassVar[bool] = False

        async def on_stop(self) -> None:
            if Parent.late:
                await asyncio.sleep(0)
            await self.start_child(Child, name="child")

        @handler
        async def hold(self, msg: Hold) -> Any:
            return self

    async with ActorSystem() as system:
        ref = system.virtual(Parent, "k")
        for late in (False, True):
            Parent.late = late
            instance = await ref.ask(Hold())
            with capture_logs() as logs:
                await ref.passivate()
            assert [e["event"] for e in logs if e["log_level"] == "error"] == [
                "on_stop raised during passivation"
            ]
            assert system.lookup("/Parent:k/child") is None
            with pytest.raises(ActorDeadError, match="it is stopping"):
                await instance.start_child(Child, name="child")
            assert system.lookup("/Parent:k/child") is None


async def test_an_actor_picked_twice_by_the_lru_is_passivated_once() -> None:
    """The LRU picks a busy actor, then picks it again before its passivation began; a message
    sent in between reactivates it afterwards, and that activation stays."""
    entered, gate = asyncio.Event(), asyncio.Event()

    class Held(Session):
        @handler
        async def hold(self, msg: Hold) -> int:
            entered.set()
            await gate.wait()
            return self.count

    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        a = system.virtual(Held, "a")
        holding = asyncio.create_task(a.ask(Hold()))
        await entered.wait()
        await system.virtual(Plain, "b").tell(Hit())  # picks `a`, busy: a task will passivate it
        late = asyncio.create_task(a.ask(Hit("late")))  # will wait for that passivation
        await system.virtual(Plain, "c").tell(Hit())  # picks `a` again (and `b`)
        gate.set()
        assert await holding == 0
        assert await late == 1
        await settle()
        assert active(a), "reactivated by `late`, and the most recently used"
        stats = system.virtual_stats()
        assert (stats.active, stats.passivations) == (1, 3)


@pytest.mark.parametrize("cls", [Session, Plain], ids=["on_start", "fast-path"])
async def test_a_tell_activates_the_actor_fully_and_is_handled(cls: type[Session]) -> None:
    handled = asyncio.Event()

    class Told(cls):  # type: ignore[valid-type,misc]
        @handler
        async def hit(self, msg: Hit) -> int:
            handled.set()
            return int(await super().hit(msg))

    async with ActorSystem() as system:
        ref = system.virtual(Told, "k")
        await ref.tell(Hit("first"))
        await asyncio.wait_for(handled.wait(), 1.0)
        assert Session.starts == (1 if cls is Session else 0)
        assert await ref.ask(Get()) == (1, ["first"], "k")
        assert system.virtual_stats().activations == 1


# --- an ask's timeout covers the wait for room in a full mailbox, then the answer --------------


def holding_box(gates: list[asyncio.Event]) -> type[Session]:
    """A session with a mailbox of one whose ``Hold`` handlers wait on ``gates``, in turn."""

    class Box(Session, mailbox_size=1):
        @handler
        async def hold(self, msg: Hold) -> str:
            await gates.pop(0).wait()
            return "held"

    return Box


async def fill_box(ref: Any) -> asyncio.Future[Any]:
    """Activate ``ref``, hold it busy and fill its mailbox (1) with a ``Hit``."""
    held: asyncio.Future[Any] = asyncio.ensure_future(ref.ask(Hold(), timeout=None))
    await settle()
    await ref.tell(Hit("queued"))
    return held


async def test_a_virtual_ask_to_a_full_mailbox_times_out_by_the_systems_default() -> None:
    gate = asyncio.Event()
    async with ActorSystem(timeouts=Timeouts(ask=0.05)) as system:
        ref = system.virtual(holding_box([gate]), "k")
        held = await fill_box(ref)
        pattern = r"^ask to /\S*Box:k found the mailbox full for 0\.05 s \(nothing was sent\)$"
        with pytest.raises(TimeoutError, match=pattern):
            await asyncio.wait_for(ref.ask(Hit("refused")), 2.0)
        gate.set()
        assert await held == "held"
        assert await ref.ask(Get()) == (1, ["queued"], "k"), "nothing was sent"


async def test_a_virtual_ask_that_waited_for_room_gets_only_the_rest_of_its_time() -> None:
    first, never = asyncio.Event(), asyncio.Event()
    async with ActorSystem() as system:
        ref = system.virtual(holding_box([first, never]), "k")
        held = await fill_box(ref)
        # Room comes after about 0.1 s of the ask's 0.3 s; the answer never does.
        asyncio.get_running_loop().call_later(0.1, first.set)
        with pytest.raises(TimeoutError, match=r"^ask to /\S*Box:k got no reply within ") as info:
            await asyncio.wait_for(ref.ask(Hold(), timeout=0.3), 2.0)
        found = re.search(r"within ([0-9.e-]+) s$", str(info.value))
        assert found is not None
        assert 0 < float(found.group(1)) < 0.3
        assert await held == "held"
        never.set()


async def test_a_virtual_ask_without_a_limit_waits_for_room_and_is_answered() -> None:
    gate = asyncio.Event()
    async with ActorSystem(timeouts=Timeouts(ask=0.05)) as system:
        ref = system.virtual(holding_box([gate]), "k")
        held = await fill_box(ref)
        asking = asyncio.ensure_future(ref.ask(Hit("late"), timeout=None))
        with pytest.raises(TimeoutError):  # it outlasts the system's 0.05 s
            await asyncio.wait_for(asyncio.shield(asking), 0.2)
        gate.set()
        assert await asyncio.wait_for(asking, 2.0) == 2
        assert await held == "held"


async def test_a_stopped_system_activates_no_virtual_actor() -> None:
    async with ActorSystem() as system:
        ref = system.virtual(Session, "k")
    with pytest.raises(
        SystemStoppedError, match=r"^cannot activate Session:k: the ActorSystem is stopped$"
    ):
        await ref.ask(Hit())


class Named(Actor):
    """Answers with its own name and path, as its cell gives them."""

    @handler
    async def hit(self, msg: Hit) -> tuple[str, str]:
        return self.ref.name, self.ref.path


async def test_a_virtual_actor_is_named_by_its_class_and_key_whenever_asked() -> None:
    # Cells of virtual actors make their name and path on first use: the same strings as a
    # spawned actor's, before and after a passivation, for string keys and batch leaves.
    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        ref = system.virtual(Named, "k-1")
        assert await ref.ask(Hit("a")) == ("Named:k-1", "/Named:k-1")
        batch = system.batch_spawn(Named, depth=1, branching=2)
        leaf = batch[1].agent_id
        assert await batch[1].ask(Hit("b")) == (f"Named:{leaf}", f"/Named:{leaf}")
        assert not ref.is_active  # passivated by the leaf's activation
        assert await ref.ask(Hit("c")) == ("Named:k-1", "/Named:k-1")
        assert ref.path == "/Named:k-1"
