"""Two ``ActorSystem``s in one process share no state (issue 9, item 7).

Each system owns its inline-ask budget, its sampled-context cache and its capability
enforcement. These tests run two systems side by side with different settings and check that
what one does never shows in the other.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider

from swarm_actors import (
    Actor,
    ActorRef,
    ActorSystem,
    MessageCapabilityError,
    Timeouts,
    Tracing,
    handler,
)
from swarm_actors._core import _ref
from swarm_actors._core._capability import check_send
from swarm_actors._core._ref import INLINE_CHECKPOINT
from swarm_actors.testing import settle

pytestmark = pytest.mark.asyncio


class Echo(Actor):
    @handler
    async def echo(self, msg: int) -> int:
        return msg


class Sender(Actor):
    """Tells ``target`` a number (no grant: may message anyone)."""

    @handler
    async def send(self, target: ActorRef[Any]) -> None:
        await target.tell(1)


class Restricted(Actor, role="restricted", may_message=("nobody",)):
    """Its grant lets it message no other actor."""

    @handler
    async def send(self, target: ActorRef[Any]) -> None:
        await target.tell(1)


class Ticker:
    """Counts event-loop iterations, so a test can see when an ask yielded to the loop."""

    def __init__(self) -> None:
        self.ticks = 0
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)


async def test_each_system_counts_its_own_inline_asks_to_the_checkpoint() -> None:
    """A system's inline asks yield to the loop every INLINE_CHECKPOINT of *its own* asks.

    Asks alternate between the two systems in runs of half a budget: with one budget for the
    process, the checkpoints would come every INLINE_CHECKPOINT asks of both together.
    """
    half = INLINE_CHECKPOINT // 2
    async with (
        ActorSystem(timeouts=Timeouts(ask=5)) as a,
        ActorSystem(timeouts=Timeouts(ask=60), tracing=Tracing(enabled=False)) as b,
    ):
        echo_a, echo_b = await a.start(Echo), await b.start(Echo)
        ticker = Ticker()
        await settle()
        yielded: dict[str, list[int]] = {"a": [], "b": []}
        counts = {"a": 0, "b": 0}
        for name, ref in [("a", echo_a), ("b", echo_b), ("a", echo_a), ("b", echo_b)]:
            for _ in range(half):
                before = ticker.ticks
                assert await ref.ask(7) == 7
                counts[name] += 1
                if ticker.ticks != before:
                    yielded[name].append(counts[name])
        ticker.task.cancel()
    # Each system yielded once, at its own INLINE_CHECKPOINT-th ask (the budget starts full).
    assert yielded == {"a": [INLINE_CHECKPOINT], "b": [INLINE_CHECKPOINT]}


async def test_a_grant_in_one_system_costs_the_other_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Capabilities are enforced for the actors that declare them, in their own system only.

    System a runs an actor with a ``may_message`` grant, which is refused; system b has no
    grant, and none of its sends is even checked.
    """
    checked: list[str] = []

    def counting(target_class: type[Actor], target_path: str) -> None:
        checked.append(target_path)
        check_send(target_class, target_path)

    monkeypatch.setattr(_ref, "check_send", counting)
    async with ActorSystem() as a, ActorSystem(tracing=Tracing(enabled=False)) as b:
        restricted, sink_a = await a.start(Restricted), await a.start(Echo, name="sink-a")
        sender, sink_b = await b.start(Sender), await b.start(Echo, name="sink-b")
        await sender.ask(sink_b)  # from b's actor without a grant
        await sink_b.tell(2)  # from outside any actor
        assert await sink_b.ask(3) == 3
        await settle()
        assert checked == []  # b paid nothing for a's grant
        with pytest.raises(MessageCapabilityError):
            await restricted.ask(sink_a)
        assert checked == ["/sink-a"]  # a's grant was enforced
        assert sink_b.stats().processed == 3


async def test_a_systems_trace_cache_goes_with_it() -> None:
    """The sampled-context cache belongs to its system: nothing of a traced system outlives it.

    A process-wide cache kept the last context a system saw (and its span) alive after the
    system was gone, and let a second system read it.
    """
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    async with ActorSystem(tracing=Tracing(enabled=False)) as other:
        quiet = await other.start(Echo)
        a = ActorSystem(tracing=Tracing(provider=provider))
        async with a:
            echo = await a.start(Echo)
            with tracer.start_as_current_span("caller"):
                seen = weakref.ref(otel_context.get_current())
                await echo.tell(1)
                await settle()
        assert await quiet.ask(2) == 2  # the other system goes on, untraced
        del a, echo
        gc.collect()
        assert seen() is None
    provider.shutdown()
