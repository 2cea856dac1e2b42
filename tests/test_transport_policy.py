"""Across nodes, the same policies as locally: ``may_message`` capabilities and trace context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers import unique
from nats_sync import observe
from swarm_actors import Actor, ActorSystem, MessageCapabilityError, Ref, Tracing, handler
from swarm_actors.cluster import RemoteRef
from swarm_actors.testing import NatsServer

pytestmark = pytest.mark.asyncio


@dataclass
class Ping:
    pass


@dataclass
class Relay:
    """Ask ``to`` a ``Ping`` (from inside the actor, where capabilities apply)."""

    to: Ref[Any]
    tell: bool = False


@dataclass
class Work:
    pass


class Reviewer(Actor, role="reviewer"):
    def __init__(self) -> None:
        self.pings = 0

    @handler
    async def ping(self, msg: Ping) -> int:
        self.pings += 1
        return self.pings


class SeniorReviewer(Reviewer):
    pass


class Bystander(Actor, role="bystander"):
    def __init__(self) -> None:
        self.pings = 0

    @handler
    async def ping(self, msg: Ping) -> int:
        self.pings += 1
        return self.pings


class ByRole(Actor, may_message=("reviewer",)):
    @handler
    async def relay(self, msg: Relay) -> Any:
        if msg.tell:
            await msg.to.tell(Ping())
            return None
        return await msg.to.ask(Ping(), timeout=5.0)


class ByClass(ByRole, may_message=(Reviewer,)):
    pass


class ByPath(ByRole, may_message=("/rev-*",)):
    pass


@pytest_asyncio.fixture
async def nodes(nats_server: NatsServer) -> AsyncIterator[tuple[ActorSystem, ActorSystem]]:
    async with (
        ActorSystem(nats=nats_server.url) as a,
        ActorSystem(nats=nats_server.url) as b,
    ):
        yield a, b


async def test_may_message_applies_to_remote_refs(
    nodes: tuple[ActorSystem, ActorSystem],
) -> None:
    a, b = nodes
    reviewer, senior, bystander = f"rev-{unique()}", unique(), unique()
    await b.start(Reviewer, name=reviewer)
    await b.start(SeniorReviewer, name=senior)
    by_stander = await b.start(Bystander, name=bystander)
    refs = {n: await a.resolve(n, timeout=5.0) for n in (reviewer, senior, bystander)}
    assert all(isinstance(r, RemoteRef) for r in refs.values())
    by_role = await a.start(ByRole)
    by_class = await a.start(ByClass)
    by_path = await a.start(ByPath)
    assert await by_role.ask(Relay(refs[reviewer])) == 1  # role "reviewer"
    assert await by_role.ask(Relay(refs[senior])) == 1  # inherited role
    assert await by_class.ask(Relay(refs[senior])) == 2  # a subclass of the granted class
    assert await by_path.ask(Relay(refs[reviewer])) == 2  # path /rev-*
    for sender in (by_role, by_class, by_path):
        with pytest.raises(MessageCapabilityError) as info:
            await sender.ask(Relay(refs[bystander]))
        assert str(info.value) == (
            f"{sender._cell.actor_class.__qualname__} ({sender.path}) may not message "
            f"/{bystander} on node {b.node} (role 'bystander'); its may_message grant does "
            "not include it"
        )
        assert info.value.actor == f"/{bystander}"
        assert info.value.sender == sender.path
        with pytest.raises(MessageCapabilityError):
            await sender.ask(Relay(refs[bystander], tell=True))
    with pytest.raises(MessageCapabilityError):
        await by_path.ask(Relay(refs[senior]))  # neither role nor path is granted
    # Nothing reached the bystander; outside any actor every send is allowed.
    assert await refs[bystander].ask(Ping(), timeout=5.0) == 1
    assert by_stander.is_alive


# --- tracing ------------------------------------------------------------------------------


class Worker(Actor):
    def __init__(self) -> None:
        self.contexts: list[trace.SpanContext] = []
        self.done = asyncio.Event()

    @handler
    async def work(self, msg: Work) -> str:
        with self.step("remote-step"):
            pass
        self.contexts.append(trace.get_current_span().get_span_context())
        self.done.set()
        return "done"


@pytest_asyncio.fixture
async def traced(
    nats_server: NatsServer,
) -> AsyncIterator[tuple[ActorSystem, ActorSystem, TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with (
        ActorSystem(nats=nats_server.url, tracing=Tracing(provider=provider)) as a,
        ActorSystem(nats=nats_server.url, tracing=Tracing(provider=provider)) as b,
    ):
        yield a, b, provider, exporter


async def test_trace_context_travels_with_remote_asks(
    traced: tuple[ActorSystem, ActorSystem, TracerProvider, InMemorySpanExporter],
) -> None:
    a, b, provider, exporter = traced
    name = unique()
    worker = await b.start(Worker, name=name)
    ref = await a.resolve(name, timeout=5.0)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("root") as root:
        assert await ref.ask(Work(), timeout=5.0) == "done"
    spans = {s.name: s for s in exporter.get_finished_spans()}
    ask, step = spans["ask Work"], spans["remote-step"]
    trace_id = root.get_span_context().trace_id
    assert {ask.context.trace_id, step.context.trace_id} == {trace_id}
    assert ask.parent is not None
    assert ask.parent.span_id == root.get_span_context().span_id
    assert step.parent is not None
    assert step.parent.span_id == ask.context.span_id  # the remote handler continues the ask
    actor = worker._cell.actor
    assert isinstance(actor, Worker)
    assert actor.contexts[-1].span_id == ask.context.span_id


async def test_trace_context_travels_with_remote_tells_and_in_headers(
    traced: tuple[ActorSystem, ActorSystem, TracerProvider, InMemorySpanExporter],
    nats_client: Client,
) -> None:
    a, b, provider, _ = traced
    name = unique()
    worker = await b.start(Worker, name=name)
    ref = await a.resolve(name, timeout=5.0)
    seen = await observe(nats_client, f"swarm.node.{b.node}")
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("root") as root:
        await ref.tell(Work())
    actor = worker._cell.actor
    assert isinstance(actor, Worker)
    await asyncio.wait_for(actor.done.wait(), 5.0)
    root_context = root.get_span_context()
    assert actor.contexts[-1].trace_id == root_context.trace_id
    # A frame holding one traced message also carries it as a NATS header.
    msg = await asyncio.wait_for(seen.get(), 15.0)
    assert msg.headers is not None
    assert msg.headers["traceparent"].split("-")[1] == format(root_context.trace_id, "032x")


async def test_untraced_senders_carry_no_context(
    traced: tuple[ActorSystem, ActorSystem, TracerProvider, InMemorySpanExporter],
    nats_client: Client,
) -> None:
    a, b, _, exporter = traced
    name = unique()
    worker = await b.start(Worker, name=name)
    ref = await a.resolve(name, timeout=5.0)
    seen = await observe(nats_client, f"swarm.node.{b.node}")
    await ref.tell(Work())  # no current span
    actor = worker._cell.actor
    assert isinstance(actor, Worker)
    await asyncio.wait_for(actor.done.wait(), 5.0)
    assert not actor.contexts[-1].is_valid
    msg = await asyncio.wait_for(seen.get(), 15.0)
    assert msg.headers is None
    # The step span is a root of its own: nothing linked it to a sender's trace.
    [step] = exporter.get_finished_spans()
    assert step.name == "remote-step"
    assert step.parent is None
