"""``ActorRef``: equality, stats, the errors its senders read, inline asks, fairness."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    ActorSystem,
    AskCycleError,
    MessageCapabilityError,
    OneForOne,
    handler,
)
from swarm_actors._cell import TURN_BUDGET
from swarm_actors._ref import INLINE_CHECKPOINT
from swarm_actors.testing import settle

pytestmark = pytest.mark.asyncio


@dataclass
class Ping:
    n: int


@dataclass
class Boom:
    pass


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
    async with ActorSystem(tracer_provider=provider) as system:
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
    async with ActorSystem(tracer_provider=provider) as system:
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
    async with ActorSystem(tracer_provider=provider) as system:
        ref = await system.start(Echo)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        start = ticks
        with caller_span(provider):
            for i in range(10):
                assert await ref.ask(Ping(i)) == i
        assert ticks - start <= 1  # at most one checkpoint among ten asks
        task.cancel()


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

    async with ActorSystem(max_active=1) as system:
        first, second = system.ref(Keeper, "first"), system.ref(Keeper, "second")
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
    from swarm_actors import _telemetry

    class Tracing(Actor):
        def __init__(self) -> None:
            self.trace_ids: list[int] = []

        @handler
        async def ping(self, msg: Ping) -> None:
            self.trace_ids.append(trace.get_current_span().get_span_context().trace_id)

    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    async with ActorSystem(tracer_provider=provider) as system:
        ref = await system.start(Tracing)
        _telemetry.LAST[0] = (None, None)  # the cache as in a fresh process
        with tracer.start_as_current_span("caller") as caller:
            await ref.tell(Ping(1))
        await settle()
        assert ref._cell.actor.trace_ids == [caller.get_span_context().trace_id]  # type: ignore[union-attr]
    provider.shutdown()
