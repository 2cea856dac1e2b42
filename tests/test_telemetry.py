"""Tracing and actor logging: context carried by tell and ask, ask spans, steps, ``self.log``.

Every test passes its own SDK ``TracerProvider`` to
``ActorSystem(tracing=Tracing(provider=...))``; the global provider is never set, so nothing leaks
between tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler
from opentelemetry.trace import StatusCode

from helpers import Fail
from log_capture import capture_logs
from swarm_actors import Actor, ActorDeadError, ActorRef, ActorSystem, Tracing, handler
from swarm_actors._core._cell import Ask
from swarm_actors.testing import settle

pytestmark = pytest.mark.asyncio


@dataclass
class Work:
    """Handled by making a ``step`` span (after an optional suspension)."""

    suspend: bool = False


@dataclass
class Relay:
    """Ask ``to`` with ``Forward``; that actor tells ``then`` a ``Work``."""

    to: ActorRef[Any]
    then: ActorRef[Any]


@dataclass
class Forward:
    then: ActorRef[Any]


@dataclass
class Hold:
    gate: asyncio.Event = field(default_factory=asyncio.Event)


class Worker(Actor):
    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.seen_spans: list[trace.SpanContext] = []

    @handler
    async def work(self, msg: Work) -> str:
        if msg.suspend:
            await asyncio.sleep(0)
        with self.step("work", detail="x"):
            self.log.info("working")
        self.seen_spans.append(trace.get_current_span().get_span_context())
        self.done.set()
        return "ok"

    @handler
    async def fail(self, msg: Fail) -> None:
        raise ValueError("nope")

    @handler
    async def relay(self, msg: Relay) -> Any:
        return await msg.to.ask(Forward(msg.then))

    @handler
    async def forward(self, msg: Forward) -> str:
        await msg.then.tell(Work())
        return "forwarded"

    @handler
    async def hold(self, msg: Hold) -> None:
        await msg.gate.wait()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def make_provider(exporter: InMemorySpanExporter, sampler: Sampler | None = None) -> TracerProvider:
    provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = make_provider(exporter)
    yield provider
    provider.shutdown()


@pytest.fixture
def tracer(provider: TracerProvider) -> trace.Tracer:
    return provider.get_tracer("tests")


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    named = {s.name: s for s in spans}
    assert len(named) == len(spans), f"span names repeat: {[s.name for s in spans]}"
    return named


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None, f"{child.name} has no parent"
    assert parent.context is not None
    return (
        child.parent.span_id == parent.context.span_id
        and child.context is not None
        and child.context.trace_id == parent.context.trace_id
    )


async def test_no_provider_means_no_tracing_and_no_spans(
    exporter: InMemorySpanExporter, tracer: trace.Tracer
) -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    async with ActorSystem() as system:
        assert not system.is_tracing
        worker = await system.start(Worker)
        with tracer.start_as_current_span("root"):
            assert await worker.ask(Work()) == "ok"
            await worker.ask(Work(suspend=True))
            await worker.tell(Work())
            worker.tell_nowait(Work())
            assert not any(type(i) is Ask and i.context is not None for i in worker._cell.queue)
            await settle()
            with pytest.raises(ValueError, match="nope"):
                await worker.ask(Fail())
    assert [s.name for s in exporter.get_finished_spans()] == ["root"]


async def test_telemetry_false_turns_a_real_provider_off(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider, enabled=False)) as system:
        assert not system.is_tracing
        worker = await system.start(Worker)
        with tracer.start_as_current_span("root"):
            await worker.ask(Work())
    assert [s.name for s in exporter.get_finished_spans()] == ["root"]


async def test_ask_span_is_a_child_of_the_caller_on_the_inline_path(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        assert system.is_tracing
        worker = await system.start(Worker, name="w")
        with tracer.start_as_current_span("root"):
            assert await worker.ask(Work()) == "ok"
    spans = spans_by_name(exporter)
    ask = spans["ask Work"]
    assert is_child(ask, spans["root"])
    assert is_child(spans["work"], ask)
    assert ask.attributes is not None
    assert ask.attributes["swarm.actor.path"] == "/w"
    assert ask.attributes["swarm.message.type"] == "Work"
    assert ask.status.status_code is StatusCode.UNSET
    step = spans["work"]
    assert step.attributes is not None
    assert step.attributes["detail"] == "x"
    assert step.attributes["swarm.actor.path"] == "/w"


@pytest.mark.parametrize("suspend", [False, True])
async def test_ask_through_the_mailbox(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer, suspend: bool
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        worker = await system.start(Worker)
        hold = Hold()
        await worker.tell(hold)  # busy: the ask below queues behind it
        await settle()
        with tracer.start_as_current_span("root"):
            reply = asyncio.ensure_future(worker.ask(Work(suspend=suspend)))
            await settle()
            assert any(type(i) is Ask and i.context is not None for i in worker._cell.queue)
            hold.gate.set()
            assert await reply == "ok"
    spans = spans_by_name(exporter)
    assert is_child(spans["ask Work"], spans["root"])
    assert is_child(spans["work"], spans["ask Work"])


async def test_inline_ask_whose_handler_suspends(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        worker = await system.start(Worker)
        with tracer.start_as_current_span("root"):
            assert await worker.ask(Work(suspend=True)) == "ok"
    spans = spans_by_name(exporter)
    assert is_child(spans["ask Work"], spans["root"])
    assert is_child(spans["work"], spans["ask Work"])


@pytest.mark.parametrize("suspend", [False, True])
async def test_tell_carries_the_senders_context(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer, suspend: bool
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        worker = await system.start(Worker)
        with tracer.start_as_current_span("root"):
            await worker.tell(Work(suspend=suspend))
        await asyncio.wait_for(worker._cell.actor.done.wait(), 5)  # type: ignore[union-attr]
        with tracer.start_as_current_span("root2"):
            worker.tell_nowait(Work())
        await settle()
    spans = exporter.get_finished_spans()
    root, root2 = (next(s for s in spans if s.name == n) for n in ("root", "root2"))
    steps = [s for s in spans if s.name == "work"]
    assert len(steps) == 2
    assert is_child(steps[0], root)
    assert is_child(steps[1], root2)
    assert not [s for s in spans if s.name.startswith("ask")], "no span per tell"


async def test_two_hops_a_asks_b_which_tells_c(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        a, b, c = [await system.start(Worker, name=n) for n in "abc"]
        with tracer.start_as_current_span("root"):
            assert await a.ask(Relay(to=b, then=c)) == "forwarded"
        await asyncio.wait_for(c._cell.actor.done.wait(), 5)  # type: ignore[union-attr]
    spans = spans_by_name(exporter)
    ask_a, ask_b = spans["ask Relay"], spans["ask Forward"]
    assert ask_a.attributes is not None
    assert ask_b.attributes is not None
    assert ask_a.attributes["swarm.actor.path"] == "/a"
    assert ask_b.attributes["swarm.actor.path"] == "/b"
    assert is_child(ask_a, spans["root"])
    assert is_child(ask_b, ask_a)
    step = spans["work"]
    assert is_child(step, ask_b)
    assert step.attributes is not None
    assert step.attributes["swarm.actor.path"] == "/c"


async def test_two_hops_when_the_inner_inline_ask_is_the_checkpoint(
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    tracer: trace.Tracer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As above, with b's inline ask the one in INLINE_CHECKPOINT that yields to the loop.

    That suspends a's handler, which goes on in a's own task and context: b's ask must have
    reset its sender token and left its span before (the suite failed on this once in a few
    runs, depending on how many inline asks earlier tests made).
    """
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        a, b, c = [await system.start(Worker, name=n) for n in "abc"]
        a._cell.dispatcher.inline_left = 1  # b's ask, done first: the checkpoint
        with tracer.start_as_current_span("root"):
            assert await a.ask(Relay(to=b, then=c)) == "forwarded"
        await asyncio.wait_for(c._cell.actor.done.wait(), 5)  # type: ignore[union-attr]
        assert a.stats().failures == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    spans = spans_by_name(exporter)
    assert is_child(spans["ask Relay"], spans["root"])
    assert is_child(spans["ask Forward"], spans["ask Relay"])
    assert is_child(spans["work"], spans["ask Forward"])


@pytest.mark.parametrize("queued", [False, True])
async def test_failing_ask_marks_its_span_as_an_error(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer, queued: bool
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        worker = await system.start(Worker)
        hold = Hold()
        if queued:
            await worker.tell(hold)
            await settle()
        with tracer.start_as_current_span("root"):
            reply = asyncio.ensure_future(worker.ask(Fail()))
            await settle()
            hold.gate.set()
            with pytest.raises(ValueError, match="nope"):
                await reply
    span = spans_by_name(exporter)["ask Fail"]
    assert span.status.status_code is StatusCode.ERROR
    assert "ValueError: nope" in (span.status.description or "")
    assert [e.name for e in span.events] == ["exception"]


async def test_a_stopped_actor_fails_a_queued_traced_ask(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        worker = await system.start(Worker)
        await worker.tell(Hold())
        await settle()
        with tracer.start_as_current_span("root"):
            reply = asyncio.ensure_future(worker.ask(Work()))
            await settle()
            assert await worker.stop(drain=False) == 1
            with pytest.raises(ActorDeadError):
                await reply
    assert spans_by_name(exporter)["ask Work"].status.status_code is StatusCode.ERROR


async def test_step_records_an_error_and_roots_a_trace(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    class Stepper(Actor):
        async def on_receive(self, message: Any) -> None:
            with self.step("outer", n=1), self.step("inner"):
                raise RuntimeError("step failed")

    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        stepper = await system.start(Stepper)
        with pytest.raises(RuntimeError):
            await stepper.ask("go")  # no caller span: no ask span, the step is a root
    spans = spans_by_name(exporter)
    assert set(spans) == {"outer", "inner"}
    assert spans["outer"].parent is None
    assert is_child(spans["inner"], spans["outer"])
    assert spans["outer"].status.status_code is StatusCode.ERROR


async def test_unsampled_callers_make_no_spans_and_carry_nothing(
    exporter: InMemorySpanExporter,
) -> None:
    provider = make_provider(exporter, ALWAYS_OFF)
    tracer = provider.get_tracer("tests")
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        assert system.is_tracing
        worker = await system.start(Worker)
        await worker.tell(Hold())
        with tracer.start_as_current_span("root"):
            await worker.tell(Work())
            reply = asyncio.ensure_future(worker.ask(Work()))
            await settle()
            assert not any(type(i) is Ask and i.context is not None for i in worker._cell.queue)
        await worker.stop(drain=False)
        with pytest.raises(ActorDeadError):
            await reply
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


async def test_untraced_messages_do_not_inherit_a_traced_senders_context(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        worker = await system.start(Worker)
        with tracer.start_as_current_span("root"):
            await worker.tell(Work())  # schedules the turn from inside "root"
        await worker.tell(Work())  # same turn, no sender span
        await settle()
        seen = worker._cell.actor.seen_spans  # type: ignore[union-attr]
    assert len(seen) == 2
    assert seen[0].is_valid
    assert not seen[1].is_valid


async def test_log_is_bound_with_the_actor_and_the_handled_messages_trace(
    provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        worker = await system.start(Worker, name="logger")
        with capture_logs(Worker.__module__) as logs:
            with tracer.start_as_current_span("root") as root:
                await worker.tell(Work(suspend=True))
            await asyncio.wait_for(worker._cell.actor.done.wait(), 5)  # type: ignore[union-attr]
            with tracer.start_as_current_span("root2") as root2:
                await worker.ask(Work())
            await worker.tell(Work())
            await settle()
    entries = [e for e in logs if e["event"] == "working"]
    assert len(entries) == 3
    for entry in entries:
        assert entry["actor"] == "/logger"
        assert entry["actor_name"] == "logger"
    assert entries[0]["trace_id"] == format(root.get_span_context().trace_id, "032x")
    assert entries[1]["trace_id"] == format(root2.get_span_context().trace_id, "032x")
    assert len(entries[0]["span_id"]) == 16
    # No sender span: the handler's step started a trace of its own.
    assert entries[2]["trace_id"] not in (entries[0]["trace_id"], entries[1]["trace_id"])


async def test_an_actor_may_use_log_as_its_own_attribute() -> None:
    class Own(Actor):
        def __init__(self) -> None:
            self.log = ["mine"]

    async with ActorSystem() as system:
        own = await system.start(Own)
        assert own._cell.actor.log == ["mine"]  # type: ignore[union-attr]


async def test_refresh_tracing_picks_up_a_provider_installed_later(
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    tracer: trace.Tracer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ActorSystem() as system:
        worker = await system.start(Worker)
        assert not system.is_tracing
        monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
        assert system.refresh_tracing()
        with tracer.start_as_current_span("root"):
            await worker.ask(Work())
        monkeypatch.undo()
        assert not system.refresh_tracing()
        with tracer.start_as_current_span("root2"):
            await worker.ask(Work())
    assert sorted(s.name for s in exporter.get_finished_spans()) == [
        "ask Work",
        "root",
        "root2",
        "work",
    ]


async def test_timeout_and_cancellation_of_traced_asks(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        worker = await system.start(Worker)
        hold = Hold()
        with tracer.start_as_current_span("root"):
            with pytest.raises(TimeoutError):
                await worker.ask(hold, timeout=0.01)  # inline, then finished in a task
            reply = asyncio.ensure_future(worker.ask(Work()))  # queued behind the hold
            await settle()
            reply.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reply
            hold.gate.set()
            assert await worker.ask(Work()) == "ok", "the actor is undisturbed"
    spans = exporter.get_finished_spans()
    hold_span = next(s for s in spans if s.name == "ask Hold")
    assert hold_span.status.status_code is StatusCode.ERROR
    assert "TimeoutError" in (hold_span.status.description or "")
    assert len([s for s in spans if s.name == "ask Work"]) == 2
    assert len([s for s in spans if s.name == "work"]) == 2, "the cancelled ask was handled"


async def test_the_fast_context_reader_agrees_with_the_api(tracer: trace.Tracer) -> None:
    from opentelemetry import context as otel_context

    from swarm_actors._core._telemetry import current_context

    assert current_context() is otel_context.get_current()
    with tracer.start_as_current_span("root"):
        assert current_context() is otel_context.get_current()


async def test_messages_served_after_a_suspended_inline_ask_do_not_inherit_its_trace(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        worker = await system.start(Worker)
        hold = Hold()
        with tracer.start_as_current_span("root"):
            reply = asyncio.ensure_future(worker.ask(hold))  # inline, then suspends
            await settle()
        await worker.tell(Work(suspend=True))  # no sender span; served by the same task
        hold.gate.set()
        await reply
        await asyncio.wait_for(worker._cell.actor.done.wait(), 5)  # type: ignore[union-attr]
        seen = worker._cell.actor.seen_spans  # type: ignore[union-attr]
    assert len(seen) == 1
    assert not seen[0].is_valid
    spans = spans_by_name(exporter)
    assert spans["work"].parent is None, "the step started its own trace"


async def test_virtual_actor_tells_carry_the_senders_context(
    exporter: InMemorySpanExporter, provider: TracerProvider, tracer: trace.Tracer
) -> None:
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        ref = system.virtual(Worker, "v")
        with tracer.start_as_current_span("root"):
            await ref.tell(Work())  # activates the actor
            await settle()
            ref.tell_nowait(Work(suspend=True))
            await ref.ask(Work())
        await settle()
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "root")
    steps = [s for s in spans if s.name == "work"]
    assert len(steps) == 3
    ask = next(s for s in spans if s.name == "ask Work")
    assert sum(is_child(s, root) for s in steps) == 2
    assert sum(is_child(s, ask) for s in steps) == 1
