"""Events from the runtime and from actors: lifecycle signals, decisions, chained state changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider

from helpers import Boom, Set
from swarm_actors import (
    Actor,
    ActorSystem,
    Backoff,
    InvalidArgumentError,
    OneForOne,
    Passivation,
    Signals,
    Tracing,
    handler,
)
from swarm_actors.errors import ChainBrokenError, JournalFullError, NoJournalError
from swarm_actors.events import (
    AgentDecision,
    HealthStatus,
    JournalEntry,
    MemoryJournal,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    replay_state,
    verify_chain,
)
from swarm_actors.testing import VirtualClock, settle

pytestmark = pytest.mark.asyncio


@dataclass
class Think:
    pass


class Register(Actor, role="register"):
    def __init__(self) -> None:
        self.value = 0

    @handler
    async def set(self, msg: Set) -> SwarmEvent:
        why = self.decide(f"set {msg.value}", rationale="asked to", confidence=0.9)
        self.value = msg.value
        return self.record_change({"value": msg.value}, resource="value", cause=why)

    @handler
    async def boom(self, msg: Boom) -> None:
        raise KeyError("boom")

    @handler
    async def think(self, msg: Think) -> SwarmEvent:
        with self.step("think"):
            return self.decide("thought")

    def snapshot(self) -> int:
        return self.value

    def restore(self, state: int) -> None:
        self.value = state


def journal_of(system: ActorSystem) -> MemoryJournal:
    journal = system.journal
    assert isinstance(journal, MemoryJournal)
    return journal


def events(system: ActorSystem, agent_id: str | None = None) -> list[SwarmEvent]:
    entries: Sequence[JournalEntry] = journal_of(system).entries()
    return [e.event for e in entries if agent_id is None or e.event.agent_id == agent_id]


def signals(system: ActorSystem, agent_id: str) -> list[SignalKind]:
    return [e.payload.kind for e in events(system, agent_id) if isinstance(e.payload, SystemSignal)]


async def test_lifecycle_signals_are_journaled() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        ref = await system.start(Register, name="reg")
        await ref.tell(Boom())
        await settle()
        await ref.stop()
        kinds = signals(system, "/reg")
        assert kinds == [
            SignalKind.STARTED,
            SignalKind.CRASHED,
            SignalKind.RESTARTED,
            SignalKind.STOPPED,
        ]
        mine = events(system, "/reg")
        assert [e.sequence for e in mine] == [1, 2, 3, 4]
        assert {e.agent_role for e in mine} == {"register"}
        crashed = mine[1].payload
        assert isinstance(crashed, SystemSignal)
        assert crashed.error_type == "KeyError"
        assert "restart" in crashed.detail
        restarted = mine[2].payload
        assert isinstance(restarted, SystemSignal)
        assert restarted.restart_count == 1


async def test_decisions_and_changes_are_chained_and_replayable() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Register, name="reg")
        changes = [await ref.ask(Set(v)) for v in (1, 2, 3)]
        mine = events(system, "/reg")
        decisions = [e for e in mine if isinstance(e.payload, AgentDecision)]
        assert [d.payload.choice for d in decisions] == ["set 1", "set 2", "set 3"]  # type: ignore[union-attr]
        # Each change names the decision that caused it and carries its predecessor's hash.
        for change, why in zip(changes, decisions, strict=True):
            assert change.causation_id == why.event_id
        payloads = [c.payload for c in changes]
        assert all(isinstance(p, StateChange) for p in payloads)
        assert payloads[1].prev_hash == payloads[0].hash
        assert verify_chain(mine) == {"/reg": payloads[2].hash}
        # Time travel: the state as of the second change.
        past = replay_state(mine, "/reg", until_sequence=changes[1].sequence)
        assert msgspec.msgpack.decode(past.state) == {"value": 2}
        assert past.changes == 2
        # Sequences are the agent's own, increasing over every kind of event.
        seqs = [e.sequence for e in mine]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)


async def test_tampering_is_detected() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Register, name="reg")
        for v in (1, 2, 3):
            await ref.ask(Set(v))
        mine = events(system, "/reg")
        index = next(
            i
            for i, e in enumerate(mine)
            if isinstance(e.payload, StateChange)
            and e.payload.data == msgspec.msgpack.encode({"value": 2})
        )
        forged = msgspec.structs.replace(
            mine[index],
            payload=msgspec.structs.replace(
                mine[index].payload, data=msgspec.msgpack.encode({"value": 99})
            ),
        )
        with pytest.raises(ChainBrokenError) as info:
            verify_chain([*mine[:index], forged, *mine[index + 1 :]])
        assert info.value.sequence == mine[index].sequence


async def test_events_carry_the_current_trace() -> None:
    provider = TracerProvider()
    async with ActorSystem(tracing=Tracing(provider=provider)) as system:
        ref = await system.start(Register, name="reg")
        event = await ref.ask(Think())
        assert len(event.trace_id) == 32
        assert len(event.span_id) == 16
        untraced = await ref.ask(Set(1))
        assert untraced.trace_id == ""
    provider.shutdown()


async def test_a_virtual_actor_keeps_its_chain_across_passivation() -> None:
    async with ActorSystem() as system:
        ref = system.virtual(Register, "r1")
        first = await ref.ask(Set(1))
        await ref.passivate()
        assert not ref.is_active
        second = await ref.ask(Set(2))
        assert second.sequence > first.sequence
        assert second.payload.prev_hash == first.payload.hash
        verify_chain(events(system, "/Register:r1"))
        assert signals(system, "/Register:r1") == []  # virtual signals are off by default


async def test_virtual_signals_when_asked_for() -> None:
    async with ActorSystem(
        signals=Signals(virtual=True), passivation=Passivation(max_active=1)
    ) as system:
        await system.virtual(Register, "a").tell(Set(1))
        await system.virtual(Register, "b").tell(Set(2))
        await settle()
        assert signals(system, "/Register:a") == [SignalKind.ACTIVATED, SignalKind.PASSIVATED]
        assert signals(system, "/Register:b") == [SignalKind.ACTIVATED]


async def test_bad_values_record_nothing() -> None:
    class Careless(Register):
        @handler
        async def set(self, msg: Set) -> Any:
            if msg.value == 1:
                return self.decide("x", confidence=2.0)
            return self.record_change(object())

    async with ActorSystem() as system:
        ref = await system.start(Careless, name="c")
        before = len(journal_of(system))
        with pytest.raises(ValueError, match="confidence"):
            await ref.ask(Set(1))
        with pytest.raises(TypeError, match="msgspec-encodable"):
            await ref.ask(Set(2))
        await settle()
        # Nothing was added: no decision or change, and (an ask's error being its answer) no
        # crash or restart either. The actor goes on, and its sequence has no gap.
        assert len(journal_of(system)) == before
        assert ref.stats().restarts == 0
        assert ref.stats().failures == 2


class Refusing(MemoryJournal):
    """A journal whose buffer is full: refuses every event."""

    def append_nowait(self, event: SwarmEvent) -> int:
        raise JournalFullError("full", capacity=0)


async def test_a_refusing_journal_fails_the_recorder_not_the_runtime() -> None:
    async with ActorSystem(journal=Refusing()) as system:
        ref = await system.start(Register, name="reg")  # its STARTED signal is refused: logged
        with pytest.raises(JournalFullError):
            await ref.ask(Think())
        await settle()
        assert ref.is_alive  # restarted by its supervisor, as for any handler error


class RefusesOnce(MemoryJournal):
    """A journal whose buffer is full exactly once: the event after ``refuse_after`` events."""

    def __init__(self, refuse_after: int) -> None:
        super().__init__()
        self.left = refuse_after
        self.refused: list[SwarmEvent] = []

    def append_nowait(self, event: SwarmEvent) -> int:
        self.left -= 1
        if self.left == -1:
            self.refused.append(event)
            raise JournalFullError("full", capacity=0)
        return super().append_nowait(event)


@pytest.mark.parametrize(
    "refuse_after",
    [3, 4],  # STARTED, Set(1)'s decision and change, then Set(2)'s decision (3) or change (4)
)
async def test_a_refused_event_leaves_no_gap_in_sequence_or_chain(refuse_after: int) -> None:
    journal = RefusesOnce(refuse_after)
    async with ActorSystem(journal=journal) as system:
        ref = await system.start(Register, name="reg")
        await ref.ask(Set(1))
        with pytest.raises(JournalFullError):
            await ref.ask(Set(2))
        await settle()
        await ref.ask(Set(3))
        await settle()
        assert len(journal.refused) == 1
        mine = events(system, "/reg")
        sequences = [e.sequence for e in mine]
        assert sequences == list(range(1, len(mine) + 1)), sequences
        changes = [e.payload for e in mine if isinstance(e.payload, StateChange)]
        # The refused event moved neither the sequence nor the chain's head: Set(3)'s change
        # links to Set(1)'s, and the whole chain verifies.
        assert len(changes) == 2
        assert changes[1].prev_hash == changes[0].hash
        verify_chain(mine)


async def test_without_a_journal() -> None:
    async with ActorSystem(journal=None) as system:
        assert system.journal is None
        assert system.health() is None
        ref = await system.start(Register, name="reg")
        with pytest.raises(NoJournalError, match="no journal"):
            await ref.ask(Think())
    with pytest.raises(InvalidArgumentError, match="journal must be"):
        ActorSystem(journal="disk")  # type: ignore[arg-type]


async def test_health_signal_reports_mailboxes_and_failures() -> None:
    clock = VirtualClock()
    slow = OneForOne(backoff=Backoff(initial=60.0, jitter=0.0))
    async with ActorSystem(
        clock=clock, supervision=slow, signals=Signals(health_interval=None)
    ) as system:
        ref = await system.start(Register, name="reg")
        healthy = system.health()
        assert healthy is not None
        signal = healthy.payload
        assert isinstance(signal, SystemSignal)
        assert signal.kind is SignalKind.HEALTH
        assert signal.health is HealthStatus.OK
        assert signal.memory_bytes > 1_000_000
        assert healthy.agent_role == "system"
        await ref.tell(Boom())  # fails; its restart waits 60 virtual seconds
        await ref.tell(Set(5))
        await settle()
        failing = system.health()
        assert failing is not None
        assert failing.payload.health is HealthStatus.FAILING  # type: ignore[union-attr]
        assert failing.payload.mailbox_depth == 1  # type: ignore[union-attr]
        assert failing.sequence == healthy.sequence + 1
        await clock.advance(61)
    with pytest.raises(ValueError, match="health_interval"):
        ActorSystem(signals=Signals(health_interval=0))
