"""``ActorRef``: equality, stats, the errors its senders read, inline asks, fairness."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from helpers import Boom, count_turns
from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    ActorSystem,
    AskCycleError,
    InvalidArgumentError,
    MessageCapabilityError,
    OneForOne,
    Passivation,
    Timeouts,
    Tracing,
    handler,
)
from swarm_actors._config import DEFAULT
from swarm_actors._core._cell import TURN_BUDGET
from swarm_actors._core._ref import INLINE_CHECKPOINT, resolve_timeout
from swarm_actors.testing import settle

pytestmark = pytest.mark.asyncio


@dataclass
class Ping:
    n: int


@dataclass
class Touch:
    other: Any


@dataclass
class Block:
    entered: asyncio.Event
    gate: asyncio.Event


class Echo(Actor, mailbox_size=7):
    def __init__(self) -> None:
        self.seen: list[int] = []

    @handler
    async def ping(self, msg: Ping) -> int:
        self.seen.append(msg.n)
        return msg.n

    @handler
    async def boom(self, msg: Boom) -> None:
        raise ValueError("boom")

    @handler
    async def block(self, msg: Block) -> None:
        msg.entered.set()
        await msg.gate.wait()


async def test_refs_are_equal_exactly_when_they_point_at_the_same_actor() -> None:
    async with ActorSystem() as system:
        a = await system.start(Echo, name="a")
        b = await system.start(Echo, name="b")
        again: ActorRef[Echo] = ActorRef(a._cell)  # another ref to the same actor
        assert system.lookup("a") == a
        assert again == a
        assert hash(again) == hash(a)
        assert a != b
        assert a != "a"
        assert a != object()
        assert {a: 1, b: 2}[again] == 1
        assert len({a, b, again}) == 2


async def test_stats_report_capacity_failures_and_restarts() -> None:
    async with ActorSystem(supervision=OneForOne()) as system:
        ref = await system.start(Echo, name="echo")
        assert ref.stats().capacity == 7
        with pytest.raises(ValueError, match="boom"):
            await ref.ask(Boom())  # the asker's answer: counted, no restart
        await settle()
        stats = ref.stats()
        assert (stats.failures, stats.restarts, stats.processed) == (1, 0, 1)
        await ref.tell(Boom())  # a tell's failure goes to the supervisor: a restart
        await settle()
        stats = ref.stats()
        assert (stats.failures, stats.restarts, stats.processed) == (2, 1, 2)
        assert await ref.ask(Ping(1)) == 1
        assert ref.stats().capacity == 7


async def test_an_ask_to_a_stopped_actor_names_it() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Echo, name="gone")
        await ref.stop()
        with pytest.raises(ActorDeadError, match=r"^/gone is stopped$") as info:
            await ref.ask(Ping(1))
        assert info.value.actor == "/gone"


def caller_span(provider: TracerProvider | None) -> AbstractContextManager[Any]:
    """A sampled span around the caller when tracing (asks then take the traced path)."""
    if provider is None:
        return contextlib.nullcontext()
    return provider.get_tracer("test").start_as_current_span("caller")


@pytest.mark.parametrize("traced", [False, True])
async def test_an_ask_queued_behind_a_busy_handler_times_out(traced: bool) -> None:
    provider = TracerProvider() if traced else None
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        ref = await system.start(Echo, name="busy")
        entered, gate = asyncio.Event(), asyncio.Event()
        await ref.tell(Block(entered, gate))
        await entered.wait()
        try:
            with (
                caller_span(provider),
                pytest.raises(TimeoutError, match=r"^ask to /busy got no reply within 0\.01 s$"),
            ):
                # Bounded, so that an ask that never times out fails rather than hangs.
                await asyncio.wait_for(ref.ask(Ping(1), timeout=0.01), 5)
        finally:
            gate.set()  # even when the test fails: the system's draining stop waits for it
        with caller_span(provider):
            assert await ref.ask(Ping(2), timeout=5) == 2


@pytest.mark.parametrize("traced", [False, True])
async def test_an_ask_is_handled_after_the_tells_sent_before_it(traced: bool) -> None:
    provider = TracerProvider() if traced else None
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        ref = await system.start(Echo)
        with caller_span(provider):
            await ref.tell(Ping(1))  # queued: the actor's turn has not run yet
            assert await ref.ask(Ping(2)) == 2
        assert ref._cell.actor.seen == [1, 2]  # type: ignore[union-attr]


class Sender(Actor, may_message=("/pool-*",)):
    @handler
    async def send(self, msg: tuple[ActorRef[Any], str]) -> Any:
        target, how = msg
        if how == "tell_nowait":
            target.tell_nowait(Ping(1))
            return None
        return await target.ask(Ping(2))


async def test_sends_are_checked_against_the_targets_path() -> None:
    async with ActorSystem() as system:
        sender = await system.start(Sender, name="sender")
        pooled = await system.start(Echo, name="pool-1")
        outside = await system.start(Echo, name="outside")
        assert await sender.ask((pooled, "tell_nowait")) is None
        assert await sender.ask((pooled, "ask")) == 2
        for how in ("tell_nowait", "ask"):
            with pytest.raises(MessageCapabilityError, match="may not message /outside") as info:
                await sender.ask((outside, how))
            assert info.value.actor == "/outside"
            assert info.value.sender == "/sender"
        await settle()
        assert pooled._cell.actor.seen == [1, 2]  # type: ignore[union-attr]
        assert outside.stats().processed == 0


@pytest.mark.parametrize("traced", [False, True])
async def test_inline_asks_do_not_yield_to_the_event_loop(traced: bool) -> None:
    """An ask to an idle actor whose handler does not suspend runs the handler in the caller's
    task and returns without an event-loop iteration (only every INLINE_CHECKPOINT-th yields).
    """
    provider = TracerProvider() if traced else None
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        ref = await system.start(Echo)
        async with count_turns() as turns:
            with caller_span(provider):
                for i in range(10):
                    assert await ref.ask(Ping(i)) == i
            assert turns.count <= 1  # at most one checkpoint among ten asks


async def test_inline_checkpoints_do_not_stall_the_asker() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Echo)
        async with asyncio.timeout(0.5):  # a few milliseconds of work
            for i in range(3 * INLINE_CHECKPOINT):
                assert await ref.ask(Ping(i)) == i


async def test_an_actor_handles_one_message_at_a_time_even_inline() -> None:
    """A handler run inline that asks its own actor is refused: never re-entered."""

    class Reentrant(Actor):
        def __init__(self) -> None:
            self.depth = 0
            self.deepest = 0

        @handler
        async def ping(self, msg: Ping) -> Any:
            self.depth += 1
            self.deepest = max(self.deepest, self.depth)
            try:
                if msg.n:
                    return await self.ref.ask(Ping(msg.n - 1), timeout=0.01)
                return "bottom"
            finally:
                self.depth -= 1

    async with ActorSystem() as system:
        ref = await system.start(Reentrant)
        with pytest.raises(AskCycleError):
            await ref.ask(Ping(1))
        await settle()
        assert ref._cell.actor.deepest == 1  # type: ignore[union-attr]
        assert await ref.ask(Ping(0)) == "bottom"


async def test_a_virtual_actor_is_not_passivated_halfway_through_an_inline_handler() -> None:
    """Passivating past ``max_active`` waits for the handler in progress (run inline here):
    the snapshot must include what the whole handler did."""

    class Keeper(Actor):
        def __init__(self) -> None:
            self.n = 0

        def snapshot(self) -> int:
            return self.n

        def restore(self, state: Any) -> None:
            self.n = state

        @handler
        async def touch(self, msg: Touch) -> int:
            if msg.other is not None:
                await msg.other.tell(Touch(None))  # activates it: one actor too many
            self.n += 1
            return self.n

    async with ActorSystem(passivation=Passivation(max_active=1)) as system:
        first, second = system.virtual(Keeper, "first"), system.virtual(Keeper, "second")
        assert await first.ask(Touch(None)) == 1
        assert await first.ask(Touch(second)) == 2
        await settle()
        assert await first.ask(Touch(None)) == 3


async def test_busy_senders_do_not_starve_other_actors() -> None:
    """A turn handles at most TURN_BUDGET messages before other ready actors get theirs."""
    order: list[str] = []

    class Recorder(Actor, mailbox_size=4 * TURN_BUDGET):
        @handler
        async def ping(self, msg: Ping) -> None:
            order.append(self.ref.name)

    async with ActorSystem() as system:
        a = await system.start(Recorder, name="a")
        b = await system.start(Recorder, name="b")
        for _ in range(2 * TURN_BUDGET):
            await a.tell(Ping(0))
        for _ in range(2 * TURN_BUDGET):
            await b.tell(Ping(0))
        await settle()
        assert len(order) == 4 * TURN_BUDGET
        # a's first turn, then b's, then the rest of each.
        assert order.index("b") == TURN_BUDGET


async def test_the_first_traced_tell_of_a_process_carries_the_senders_context() -> None:
    """The tell path keeps a one-entry cache of the last sampling verdict; a fresh process
    (empty cache) must still carry its first tell's trace."""

    class Traced(Actor):
        def __init__(self) -> None:
            self.trace_ids: list[int] = []

        @handler
        async def ping(self, msg: Ping) -> None:
            self.trace_ids.append(trace.get_current_span().get_span_context().trace_id)

    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        ref = await system.start(Traced)
        ref._cell.dispatcher.traces.last = (None, None)  # the cache as in a fresh system
        with tracer.start_as_current_span("caller") as caller:
            await ref.tell(Ping(1))
        await settle()
        assert ref._cell.actor.trace_ids == [caller.get_span_context().trace_id]  # type: ignore[union-attr]
    provider.shutdown()


# --- an ask's timeout covers the wait for room and the answer ---------------------------------


@dataclass
class Wait:
    """Answered with ``"done"`` once ``gate`` is set (at once if it is)."""

    gate: asyncio.Event


@dataclass
class Stall:
    """Block the whole event loop for ``seconds`` (a handler doing blocking work)."""

    seconds: float


class Narrow(Actor, mailbox_size=1):
    def __init__(self) -> None:
        self.handled: list[str] = []

    @handler
    async def wait(self, msg: Wait) -> str:
        await msg.gate.wait()
        self.handled.append("wait")
        return "done"

    @handler
    async def stall(self, msg: Stall) -> None:
        time.sleep(msg.seconds)  # noqa: ASYNC251 - the point: the loop stalls
        self.handled.append("stall")


async def fill(ref: ActorRef[Narrow], gate: asyncio.Event) -> asyncio.Future[Any]:
    """Make ``ref`` busy on ``gate`` with its mailbox (1) full; the held ask's future."""
    held = asyncio.ensure_future(ref.ask(Wait(gate), timeout=None))
    await settle()
    opened = asyncio.Event()
    opened.set()
    await ref.tell(Wait(opened))  # queued behind the held one, answered at once
    return held


def seconds_in(error: BaseException) -> float:
    found = re.search(r"within ([0-9.e-]+) s$", str(error))
    assert found is not None, str(error)
    return float(found.group(1))


async def test_an_ask_that_waited_for_room_is_enqueued_and_answered() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Narrow, name="n")
        gate = asyncio.Event()
        held = asyncio.ensure_future(ref.ask(Wait(gate), timeout=None))
        await settle()
        opened = asyncio.Event()
        opened.set()
        await ref.tell(Wait(opened))  # the mailbox (1) is full
        asking = asyncio.ensure_future(ref.ask(Wait(opened), timeout=1.0))
        await settle()
        assert not asking.done(), "it waits for room"
        assert ref.stats().pending == 1
        gate.set()
        assert await asyncio.wait_for(asking, 2.0) == "done"
        assert await held == "done"
        assert ref._cell.actor.handled == ["wait"] * 3  # type: ignore[union-attr]


async def test_the_wait_for_room_is_taken_from_the_time_left_for_the_answer() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Narrow, name="n")
        gate = asyncio.Event()
        held = await fill(ref, gate)
        # Room comes after about 0.1 s of the ask's 0.3 s; the answer never does.
        asyncio.get_running_loop().call_later(0.1, gate.set)
        never = asyncio.Event()
        with pytest.raises(TimeoutError, match=r"^ask to /n got no reply within ") as info:
            await asyncio.wait_for(ref.ask(Wait(never), timeout=0.3), 2.0)
        assert 0 < seconds_in(info.value) < 0.3
        assert await held == "done"
        never.set()


async def test_an_ask_whose_time_ran_out_while_it_was_enqueued_waits_for_no_answer() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Narrow, name="n")
        gate = asyncio.Event()
        held = asyncio.ensure_future(ref.ask(Wait(gate), timeout=None))
        await settle()
        await ref.tell(Stall(0.1))  # full; when its turn comes, it blocks the loop for 0.1 s
        opened = asyncio.Event()
        opened.set()
        asking = asyncio.ensure_future(ref.ask(Wait(opened), timeout=0.05))
        await settle()
        gate.set()
        # Room came, and the message went in, but only after the ask's 0.05 s were spent.
        with pytest.raises(TimeoutError, match=r"^ask to /n got no reply within 0\.05 s$"):
            await asyncio.wait_for(asking, 2.0)
        assert await held == "done"
        await asyncio.wait_for(settle(), 2.0)
        assert ref._cell.actor.handled == ["wait", "stall", "wait"]  # type: ignore[union-attr]
        assert await ref.ask(Wait(opened)) == "done"


async def test_the_systems_ask_timeout_covers_asks_to_a_busy_or_full_actor() -> None:
    async with ActorSystem(timeouts=Timeouts(ask=0.05)) as system:
        ref = await system.start(Narrow, name="n")
        gate = asyncio.Event()
        held = asyncio.ensure_future(ref.ask(Wait(gate), timeout=None))
        await settle()
        never = asyncio.Event()
        with pytest.raises(TimeoutError, match=r"^ask to /n got no reply within 0\.05 s$"):
            await asyncio.wait_for(ref.ask(Wait(never)), 2.0)  # busy: queued, never answered
        assert ref.stats().pending == 1, "its message stays: the mailbox (1) is full"
        pattern = r"^ask to /n found the mailbox full for 0\.05 s \(nothing was sent\)$"
        with pytest.raises(TimeoutError, match=pattern):
            await asyncio.wait_for(ref.ask(Wait(never)), 2.0)
        gate.set()
        never.set()
        assert await held == "done"


async def test_resolve_timeout_checks_and_fills_in_the_systems_default() -> None:
    async with ActorSystem(timeouts=Timeouts(ask=0.25)) as system:
        assert resolve_timeout(DEFAULT, system) == 0.25
        assert resolve_timeout(0.5, system) == 0.5
        assert resolve_timeout(None, system) is None
        for bad in (0.0, -1.0, float("nan"), True):
            with pytest.raises(InvalidArgumentError, match="timeout must be"):
                resolve_timeout(bad, system)


# --- whose answer a handler awaits: ask cycles ---------------------------------------------------


@dataclass
class Call:
    """Wait for ``wait``; then ask ``to`` for ``then`` or, with no ``to``, answer the name."""

    wait: asyncio.Event | None = None
    to: str | None = None
    then: Call | None = None
    pause: bool = False  # suspend once before answering
    timeout: float = 1.0


class Node(Actor):
    @handler
    async def call(self, msg: Call) -> Any:
        if msg.wait is not None:
            await msg.wait.wait()
        if msg.to is not None:
            target = self.system.lookup(msg.to)
            assert target is not None
            return await target.ask(msg.then or Call(), timeout=msg.timeout)
        if msg.pause:
            await asyncio.sleep(0)
        return self.ref.name


async def test_an_ask_queued_behind_a_busy_actor_counts_as_waiting_in_a_cycle() -> None:
    async with ActorSystem() as system:
        a = await system.start(Node, name="a")
        b = await system.start(Node, name="b")
        gate = asyncio.Event()
        first = asyncio.ensure_future(b.ask(Call(wait=gate, to="a")))
        await settle()  # b is busy on the gate
        second = asyncio.ensure_future(a.ask(Call(to="b")))
        await settle()  # a waits for b, its message queued behind b's held one
        gate.set()  # b now asks a, which waits for b: refused at once
        with pytest.raises(AskCycleError, match=r"^ask cycle: /b -> /a -> /b ") as info:
            await asyncio.wait_for(first, 2.0)
        assert info.value.cycle == ("/b", "/a", "/b")
        assert str(info.value).endswith(
            " (each waits for the next; an actor handles one message at a time, so this ask"
            " would never be answered)"
        )
        assert await asyncio.wait_for(second, 2.0) == "b"


@pytest.mark.parametrize("how", ["inline", "inline-suspended", "queued"])
async def test_an_answered_ask_leaves_its_asker_waiting_for_nobody(how: str) -> None:
    async with ActorSystem() as system:
        a = await system.start(Node, name="a")
        b = await system.start(Node, name="b")
        busy = asyncio.Event()
        if how == "queued":
            holding = asyncio.ensure_future(b.ask(Call(wait=busy)))
            await settle()
        asked = asyncio.ensure_future(a.ask(Call(to="b", then=Call(pause=how != "inline"))))
        await settle()
        busy.set()
        assert await asyncio.wait_for(asked, 2.0) == "b"
        if how == "queued":
            assert await holding == "b"
        # a, busy again, is waiting for nobody: b may ask it and wait its turn.
        gate = asyncio.Event()
        held = asyncio.ensure_future(a.ask(Call(wait=gate)))
        await settle()
        asking = asyncio.ensure_future(b.ask(Call(to="a")))
        await settle()
        assert not asking.done()
        gate.set()
        assert await asyncio.wait_for(held, 2.0) == "a"
        assert await asyncio.wait_for(asking, 2.0) == "a"


async def test_a_handlers_ask_to_an_idle_actor_keeps_its_timeout() -> None:
    async with ActorSystem() as system:
        a = await system.start(Node, name="a")
        await system.start(Node, name="b")
        never = asyncio.Event()
        # b is idle: a's handler runs b's in its own task, until b's suspends on the gate.
        with pytest.raises(TimeoutError, match=r"^ask to /b got no reply within 0\.05 s$"):
            await asyncio.wait_for(a.ask(Call(to="b", then=Call(wait=never), timeout=0.05)), 2.0)
        never.set()


async def test_a_traced_actor_asking_itself_gets_the_cycle_error() -> None:
    provider = TracerProvider()
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        a = await system.start(Node, name="a")
        with (
            provider.get_tracer("test").start_as_current_span("caller"),
            pytest.raises(AskCycleError, match=r"^ask cycle: /a -> /a "),
        ):
            await asyncio.wait_for(a.ask(Call(to="a")), 2.0)
    provider.shutdown()
