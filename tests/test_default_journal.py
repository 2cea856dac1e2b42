"""The default journal: durable on JetStream with ``nats=``, in memory without; ``journal=`` wins.

These systems share the session's ``nats_server``, so they share its ``SWARM_EVENTS`` stream
with every other test's systems: each test reads back only the events of its own actors (a
unique name, hence a unique ``agent_id``, under this module's role).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from helpers import unique
from swarm_actors import Actor, ActorSystem, Signals, handler
from swarm_actors._nats._conn import connect
from swarm_actors.cluster import NatsOptions
from swarm_actors.errors import NotConnectedError
from swarm_actors.events import (
    AgentDecision,
    JetStreamJournal,
    Journal,
    MemoryJournal,
    SignalKind,
    SwarmEvent,
    SystemSignal,
)
from swarm_actors.testing import NatsServer

pytestmark = pytest.mark.asyncio

ROLE = "default_journal_test"


class Decide(msgspec.Struct):
    choice: str


class Recorder(Actor, role=ROLE):
    @handler
    async def decide_now(self, msg: Decide) -> None:
        self.decide(msg.choice, rationale="asked to")


async def stored_events(server: NatsServer, agent_id: str) -> list[SwarmEvent]:
    """The events of ``agent_id`` in ``SWARM_EVENTS``, read on a connection of our own."""
    client = await connect(NatsOptions(servers=server.url))
    try:
        journal = JetStreamJournal(client, configure=False)  # the defaults: SWARM_EVENTS
        try:
            read = journal.read(subject=f"swarm.events.{ROLE}.>")
            return [e.event async for e in read if e.event.agent_id == agent_id]
        finally:
            await journal.close()
    finally:
        await client.close()


def kinds(events: Sequence[SwarmEvent]) -> list[object]:
    return [
        e.payload.kind if isinstance(e.payload, SystemSignal) else type(e.payload) for e in events
    ]


async def test_a_system_on_nats_journals_durably_to_jetstream_by_default(
    nats_server: NatsServer,
) -> None:
    name = unique()
    system = ActorSystem(nats=nats_server.url, signals=Signals(health_interval=None))
    before = system.journal
    assert before is None  # made when the system connects
    async with system:
        journal = system.journal
        assert isinstance(journal, JetStreamJournal)
        assert journal.stream == "SWARM_EVENTS"
        assert journal.client is system._transport.client  # type: ignore[union-attr]
        ref = await system.start(Recorder, name=name)
        await ref.ask(Decide("left"), timeout=5)
    assert journal.closed  # closed by stop_all, after its final flush
    # Stored for good: read back on another connection once the node has gone.
    events = await stored_events(nats_server, f"/{name}")
    assert kinds(events) == [SignalKind.STARTED, AgentDecision, SignalKind.STOPPED]
    assert [e.sequence for e in events] == [1, 2, 3]


async def test_an_unnamed_start_connects_before_it_records(nats_server: NatsServer) -> None:
    # No `async with`: start() connects first, so its STARTED signal has a journal to go to.
    system = ActorSystem(nats=nats_server.url, signals=Signals(health_interval=None))
    with pytest.raises(NotConnectedError, match="journals once connected"):
        system.batch_spawn(Recorder, depth=1, branching=2)
    try:
        ref = await system.start(Recorder)
        assert isinstance(system.journal, JetStreamJournal)
        assert system.nats_url is not None  # connected
        await ref.ask(Decide("right"), timeout=5)
        agent = ref.path
    finally:
        await system.stop_all()
    # Paths of generated names repeat across nodes: this node's events are the last three.
    events = await stored_events(nats_server, agent)
    assert kinds(events)[-3:] == [SignalKind.STARTED, AgentDecision, SignalKind.STOPPED]
    assert any(isinstance(e.payload, AgentDecision) and e.payload.choice == "right" for e in events)


async def test_without_nats_the_default_journal_is_in_memory() -> None:
    system = ActorSystem(signals=Signals(health_interval=None))
    assert isinstance(system.journal, MemoryJournal)
    async with system:
        ref = await system.start(Recorder, name=unique())
        await ref.ask(Decide("up"), timeout=5)
        journal = system.journal
        assert isinstance(journal, MemoryJournal)
        assert len(journal.entries(f"swarm.events.{ROLE}.>")) == 2  # STARTED, the decision
    explicit = ActorSystem(journal="auto", signals=Signals(health_interval=None))
    assert isinstance(explicit.journal, MemoryJournal)


@pytest.mark.parametrize("choice", ["memory", "given", None])
async def test_an_explicit_journal_wins_over_jetstream(
    nats_server: NatsServer, choice: str | None
) -> None:
    given = MemoryJournal()
    journal: Journal | str | None = given if choice == "given" else choice
    name = unique()
    quiet = Signals(health_interval=None)
    system = ActorSystem(nats=nats_server.url, journal=journal, signals=quiet)  # type: ignore[arg-type]
    async with system:
        ref = await system.start(Recorder, name=name)
        if choice is None:
            assert system.journal is None
        else:
            kept = system.journal
            assert isinstance(kept, MemoryJournal)
            assert kept is given if choice == "given" else kept is not given
            await ref.ask(Decide("down"), timeout=5)
            assert len(kept.entries(f"swarm.events.{ROLE}.>")) == 2
    assert await stored_events(nats_server, f"/{name}") == []  # nothing went to JetStream
