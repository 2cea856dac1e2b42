"""``max_concurrency``: up to N handler calls of one actor at once, locally and across processes.

Overlap is shown by what the handlers see (how many are inside at once), never by wall time:
``Gathering``'s handler returns only once the wanted number of calls are in flight together.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from concurrency_peer import Arrive, Gathering, Peak, peer
from helpers import (
    MADE,
    Fail,
    Get,
    Make,
    Payload,
    count_turns,
    instance,
    make_payload,
    unique,
    until,
)
from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorSystem,
    Directive,
    InvalidArgumentError,
    OneForOne,
    Tracing,
    handler,
)
from swarm_actors._core._cell import Cell, TrackedCell
from swarm_actors.cluster import RemoteRef
from swarm_actors.testing import NatsServer

pytestmark = pytest.mark.asyncio


class Hold(msgspec.Struct):
    """Stay in the handler until the actor's ``release`` event is set; returns ``n``."""

    n: int


class Quick(msgspec.Struct):
    pass


class Held(Actor, max_concurrency=4):
    """Calls wait for ``release``; the actor records what starts, finishes and is cancelled."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.inside = 0
        self.peak = 0
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []

    @handler
    async def hold(self, msg: Hold) -> int:
        self.started.append(msg.n)
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(msg.n)
            raise
        finally:
            self.inside -= 1
        self.finished.append(msg.n)
        return msg.n

    @handler
    async def quick(self, msg: Quick) -> str:
        return "quick"

    @handler
    async def get(self, msg: Get) -> int:
        return self.peak

    @handler
    async def fail(self, msg: Fail) -> None:
        raise RuntimeError("a tell's failure: the supervisor's")


class Two(Held, max_concurrency=2):
    pass


class One(Held, max_concurrency=1):
    pass


async def test_calls_overlap_up_to_max_concurrency() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Gathering)
        assert type(ref._cell) is TrackedCell
        # Each call returns only once all 8 are inside at once: without overlap they time out.
        peaks = await asyncio.gather(*(ref.ask(Arrive(8), timeout=10.0) for _ in range(8)))
        assert peaks == [8] * 8
        assert ref.stats().in_flight == 0


async def test_never_more_than_max_concurrency_calls_at_once() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Held)
        asks = [asyncio.ensure_future(ref.ask(Hold(n))) for n in range(20)]
        await until(lambda: ref.stats().in_flight == 4, what="4 calls in flight")
        await until(lambda: ref.stats().pending == 16, what="the other 16 queued")
        actor = instance(ref)
        assert actor.inside == 4
        assert ref._cell.handler_in_progress() == ", ".join(["Held.hold"] * 4)
        actor.release.set()
        assert await asyncio.gather(*asks) == list(range(20))
        assert actor.peak == 4
        stats = ref.stats()
        assert (stats.in_flight, stats.pending, stats.processed) == (0, 0, 20)


async def test_handlers_start_in_mailbox_order_and_finish_in_any() -> None:
    class Order(Actor, max_concurrency=4):
        def __init__(self) -> None:
            self.started: list[int] = []
            self.finished: list[int] = []

        @handler
        async def record(self, n: int) -> None:
            self.started.append(n)
            for _ in range(n % 5):  # later messages may finish first
                await asyncio.sleep(0)
            self.finished.append(n)

    async with ActorSystem() as system:
        ref = await system.start(Order)
        for n in range(100):
            await ref.tell(n)
        await ref.stop()  # drains: every call finishes
        actor: Any = ref._cell.actor
        assert actor.started == list(range(100))
        assert sorted(actor.finished) == list(range(100))
        assert actor.finished != actor.started  # they did overlap and overtake


async def test_the_default_is_one_at_a_time_on_the_plain_engine() -> None:
    class Plain(Actor):
        @handler
        async def get(self, msg: Get) -> int:
            return 1

    assert Plain.max_concurrency == 1
    async with ActorSystem() as system:
        plain = await system.start(Plain)
        assert type(plain._cell) is Cell  # the engine's fast paths, unchanged
        one = await system.start(One)  # max_concurrency=1 said explicitly: the same
        assert type(one._cell) is Cell
        asks = [asyncio.ensure_future(one.ask(Hold(n))) for n in range(3)]
        await until(lambda: one.stats().in_flight == 1 and one.stats().pending == 2)
        instance(one).release.set()
        assert await asyncio.gather(*asks) == [0, 1, 2]
        assert instance(one).peak == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8"])
async def test_max_concurrency_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="max_concurrency must be an int >= 1"):

        class Bad(Actor, max_concurrency=bad):  # type: ignore[arg-type]
            pass


async def test_a_pool_of_concurrent_actors_is_refused_for_now() -> None:
    async with ActorSystem() as system:
        with pytest.raises(InvalidArgumentError, match="not supported in a pool"):
            await system.pool(Gathering, size=2)


async def test_an_asks_failure_leaves_the_other_calls_alone() -> None:
    class Mixed(Held):
        @handler
        async def boom(self, msg: str) -> None:
            await asyncio.sleep(0)
            raise ValueError(msg)

    async with ActorSystem() as system:
        ref = await system.start(Mixed)
        held = [asyncio.ensure_future(ref.ask(Hold(n))) for n in range(3)]
        await until(lambda: ref.stats().in_flight == 3)
        with pytest.raises(ValueError, match="bad input"):
            await ref.ask("bad input")
        instance(ref).release.set()
        assert await asyncio.gather(*held) == [0, 1, 2]
        stats = ref.stats()
        assert (stats.failures, stats.restarts) == (1, 0)


async def test_a_restart_cancels_the_old_instances_calls_in_flight() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Held)
        old = instance(ref)
        held = [asyncio.ensure_future(ref.ask(Hold(n))) for n in range(3)]
        await until(lambda: ref.stats().in_flight == 3)
        await ref.tell(Fail())  # a tell's failure: the supervisor restarts the actor
        for ask in held:
            with pytest.raises(ActorDeadError, match="restarted"):
                await ask
        assert sorted(old.cancelled) == [0, 1, 2]
        await until(lambda: ref.stats().restarts == 1)
        new = instance(ref)
        assert new is not old
        new.release.set()
        assert await ref.ask(Hold(7)) == 7  # the new instance serves


async def test_failures_while_the_supervisor_decides_are_covered_by_its_decision() -> None:
    class FailTogether(Held):
        @handler
        async def fail_later(self, msg: str) -> None:
            await self.release.wait()
            raise RuntimeError(msg)

    async with ActorSystem() as system:
        ref = await system.start(FailTogether)
        old = instance(ref)
        await ref.tell("first")
        await ref.tell("second")
        await until(lambda: ref.stats().in_flight == 2)
        old.release.set()  # both fail in the same turn of the loop: one decision, one restart
        await until(lambda: ref.stats().failures == 2 and ref.stats().restarts == 1)
        assert await ref.ask(Quick()) == "quick"
        assert ref.stats().restarts == 1


async def test_a_restart_whose_on_start_fails_is_supervised_again() -> None:
    starts: list[int] = []

    class Flaky(Held):
        async def on_start(self) -> None:
            starts.append(1)
            if len(starts) == 2:  # the first restart fails; the next one works
                raise RuntimeError("on_start failed")

    async with ActorSystem() as system:
        ref = await system.start(Flaky)
        await ref.tell(Fail())
        await until(lambda: len(starts) == 3, what="a second restart after the failed one")
        assert await ref.ask(Quick()) == "quick"


async def test_resume_lets_the_calls_in_flight_finish() -> None:
    resume = OneForOne(decider=lambda exc: Directive.RESUME)
    async with ActorSystem(supervision=resume) as system:
        ref = await system.start(Held)
        held = [asyncio.ensure_future(ref.ask(Hold(n))) for n in range(3)]
        await until(lambda: ref.stats().in_flight == 3)
        await ref.tell(Fail())
        await until(lambda: ref.stats().failures == 1)
        assert await ref.ask(Quick()) == "quick"  # resumed: it takes messages again
        instance(ref).release.set()
        assert await asyncio.gather(*held) == [0, 1, 2]
        assert instance(ref).cancelled == []


async def test_stop_with_drain_waits_for_every_call_in_flight() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Two)
        asks = [asyncio.ensure_future(ref.ask(Hold(n))) for n in range(5)]
        await until(lambda: ref.stats().in_flight == 2 and ref.stats().pending == 3)
        stopping = asyncio.ensure_future(ref.stop())
        await until(lambda: not ref.is_alive)
        assert not stopping.done()
        instance(ref).release.set()
        assert await stopping == 0  # nothing discarded
        assert await asyncio.gather(*asks) == list(range(5))


async def test_stop_without_drain_cancels_every_call_in_flight() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Two)
        actor = instance(ref)
        asks = [asyncio.ensure_future(ref.ask(Hold(n))) for n in range(5)]
        await until(lambda: ref.stats().in_flight == 2 and ref.stats().pending == 3)
        assert await ref.stop(drain=False) == 3  # the queued ones
        results = await asyncio.gather(*asks, return_exceptions=True)
        assert all(isinstance(r, ActorDeadError) for r in results), results
        assert sorted(actor.cancelled) == [0, 1]


async def test_an_ask_runs_inline_while_a_slot_is_free() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Two)
        held = asyncio.ensure_future(ref.ask(Hold(0)))
        await until(lambda: ref.stats().in_flight == 1)
        async with count_turns() as turns:
            assert await ref.ask(Quick()) == "quick"
            assert turns.count == 0  # answered in this task, no event-loop turn
        instance(ref).release.set()
        assert await held == 0


async def test_a_concurrent_actor_may_ask_itself() -> None:
    class Recursive(Actor, max_concurrency=2):
        @handler
        async def outer(self, msg: str) -> str:
            inner: str = await self.ref.ask(len(msg))
            return f"{msg}:{inner}"

        @handler
        async def inner(self, msg: int) -> str:
            await asyncio.sleep(0)
            return str(msg)

    async with ActorSystem() as system:
        ref = await system.start(Recursive)
        # A one-at-a-time actor gets AskCycleError here; this one has a second slot.
        assert await ref.ask("abc") == "abc:3"


async def test_a_virtual_actor_runs_its_calls_concurrently() -> None:
    async with ActorSystem() as system:
        ref = system.virtual(Gathering, "k")
        peaks = await asyncio.gather(*(ref.ask(Arrive(5), timeout=10.0) for _ in range(5)))
        assert peaks == [5] * 5


async def test_a_call_keeps_its_trace_across_its_awaits() -> None:
    class Traced(Actor, max_concurrency=2):
        @handler
        async def work(self, msg: str) -> str:
            await asyncio.sleep(0)  # finished in a task of its own: the trace goes with it
            with self.step(f"step {msg}"):
                await asyncio.sleep(0)
            return msg

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    try:
        async with ActorSystem(tracing=Tracing(provider=provider)) as system:
            ref = await system.start(Traced)
            with tracer.start_as_current_span("root"):
                # The first two start inline; the third waits in the mailbox for a slot.
                assert await asyncio.gather(*(ref.ask(m) for m in "abc")) == list("abc")
    finally:
        provider.shutdown()
    finished = exporter.get_finished_spans()
    spans = {s.name: s for s in finished}
    root = spans["root"].context
    assert root is not None
    asks = {s.context.span_id for s in finished if s.name == "ask str" and s.context}
    assert len(asks) == 3
    parents = set()
    for name in ("step a", "step b", "step c"):
        span = spans[name]
        assert span.parent is not None
        assert span.context is not None
        assert span.context.trace_id == root.trace_id, name
        parents.add(span.parent.span_id)
    assert parents == asks  # each step under its own ask's span


async def test_concurrent_calls_across_os_processes(nats_server: NatsServer) -> None:
    """Asks from this process to a max_concurrency actor on another are handled together."""
    name, node = unique(), unique("peer")
    async with ActorSystem(nats=nats_server.url) as system, peer(nats_server.url, node, name):
        ref = await system.resolve(name, timeout=10.0)
        assert isinstance(ref, RemoteRef)
        peaks = await asyncio.gather(*(ref.ask(Arrive(8), timeout=10.0) for _ in range(8)))
        assert peaks == [8] * 8  # the handler saw all 8 calls inside at once
        assert await ref.ask(Peak(), timeout=10.0) == 8


# --- handlers run by the dispatcher's runner (``_cell._runner``) -----------------------------


class Relay(msgspec.Struct):
    """Ask the next actor in ``to`` (inline when it is idle), suspending first if ``suspend``."""

    to: Any
    suspend: bool = False
    depth: int = 0


class Crash(msgspec.Struct):
    suspend: bool = False


class Maker(Actor, max_concurrency=4):
    @handler
    async def make(self, msg: Make) -> Payload:
        return await make_payload(msg)

    @handler
    async def relay(self, msg: Relay) -> list[int]:
        if msg.suspend:
            await asyncio.sleep(0)
        if not msg.to:
            return [msg.depth]
        rest = await msg.to[0].ask(Relay(msg.to[1:], msg.suspend, msg.depth + 1))
        return [msg.depth, *rest]

    @handler
    async def crash(self, msg: Crash) -> None:
        if msg.suspend:
            await asyncio.sleep(0)
        raise RuntimeError("crash")


class StashingMaker(Maker, max_concurrency=1, stash=True):
    pass


class PlainMaker(Maker, max_concurrency=1):
    pass


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def all_freed() -> bool:
    # No gc.collect(): a call that suspended and its task must not hold each other either
    # (its task's context holds the call), or its answer waits for the cyclic GC.
    return all(made() is None for made in MADE)


@pytest.mark.parametrize("actor_class", [Maker, StashingMaker])
async def test_no_handler_answer_is_kept_once_delivered(actor_class: type[Maker]) -> None:
    # Asks without a timeout: the deadline queue keeps answered asks' futures for a while
    # (see _cell.Deadlines); here only what runs the handlers could keep an answer. Checked
    # after each path, the one that ran last being the one that could keep it.
    MADE.clear()
    async with ActorSystem() as system:
        ref = await system.start(actor_class)
        assert type(ref._cell) is TrackedCell
        assert isinstance(await ref.ask(Make(), timeout=None), Payload)  # inline first step
        assert all_freed()
        ref.tell_nowait(Make())  # a first step in a turn
        await settle()
        assert len(MADE) == 2
        assert all_freed()
        gate = asyncio.Event()
        slow = asyncio.ensure_future(ref.ask(Make(gate), timeout=None))  # a call's task
        await settle()
        assert ref.stats().in_flight == 1
        gate.set()
        assert isinstance(await slow, Payload)
        del slow  # (the task keeps its result)
        await settle()  # (the call's task ends after its asker has the answer)
        assert len(MADE) == 3
        assert all_freed()
        gate = asyncio.Event()
        ref.tell_nowait(Make(gate))  # a told call's task
        await settle()
        gate.set()
        await settle()
        assert len(MADE) == 4
        assert all_freed()
        assert ref.stats().in_flight == 0


@pytest.mark.parametrize("suspend", [False, True])
async def test_handlers_run_inline_within_handlers_of_tracked_actors(suspend: bool) -> None:
    # Each hop asks the next actor from its handler: inline in the asker's first step, or
    # (``suspend``) in the task of a call in flight, whose runner is in the middle of its own
    # handler meanwhile. Tracked and plain actors mixed.
    async with ActorSystem() as system:
        classes = [Maker, PlainMaker, StashingMaker, Maker, Maker]
        refs = [await system.start(cls) for cls in classes]
        assert type(refs[1]._cell) is Cell
        want = list(range(len(refs)))
        assert await refs[0].ask(Relay(refs[1:], suspend), timeout=5.0) == want
        # Several chains at once: calls in flight on every actor, asks queued behind them.
        chains = [refs[0].ask(Relay(refs[1:], suspend), timeout=5.0) for _ in range(6)]
        assert await asyncio.gather(*chains) == [want] * 6
        assert [ref.stats().in_flight for ref in refs] == [0] * len(refs)
        # From a dispatcher turn: told, so it starts in a turn, and answers to this ask.
        ref = refs[0]
        assert await ref.ask(Relay(refs[1:], suspend), timeout=5.0) == want


@pytest.mark.parametrize("suspend", [False, True])
@pytest.mark.parametrize("actor_class", [Maker, StashingMaker])
async def test_a_failing_handler_is_followed_by_more_messages(
    actor_class: type[Maker], suspend: bool
) -> None:
    async with ActorSystem() as system:
        ref = await system.start(actor_class)
        for _ in range(3):  # an ask's error is its answer; the actor goes on
            with pytest.raises(RuntimeError, match="crash"):
                await ref.ask(Crash(suspend), timeout=5.0)
            assert isinstance(await ref.ask(Make(), timeout=5.0), Payload)
            assert await ref.ask(Relay([], suspend), timeout=5.0) == [0]
        # A told failure goes to the supervisor (a restart); what follows is handled.
        ref.tell_nowait(Crash(suspend))
        ref.tell_nowait(Make())
        assert await ref.ask(Relay([], suspend), timeout=5.0) == [0]
        assert isinstance(await ref.ask(Make(), timeout=5.0), Payload)
        assert ref.stats().failures == 4
