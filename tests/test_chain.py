"""State-change hash chains: tampering is found at the right sequence; replay goes back in time."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from event_strategies import changes, events
from swarm_actors._events._chain import replay_state, verify_chain
from swarm_actors._events._schema import (
    AgentDecision,
    ChangeForm,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    new_event,
    state_hash,
)
from swarm_actors.errors import ChainBrokenError, ReplayError

T0 = 1_700_000_000_000_000_000


def history(n: int, *, agent: str = "a1", deltas: bool = False, start: int = 1) -> list[SwarmEvent]:
    """An agent's events: each state change (``s<i>`` or the delta ``+<i>``) after a decision."""
    events: list[SwarmEvent] = []
    head = b""
    seq = start
    for i in range(1, n + 1):
        decision = new_event(
            AgentDecision(rationale=f"step {i}"),
            agent_role="coder",
            agent_id=agent,
            sequence=seq,
            timestamp_ns=T0 + 10 * seq,
        )
        data, form = (f"+{i}", ChangeForm.DELTA) if deltas else (f"s{i}", ChangeForm.SNAPSHOT)
        change = new_event(
            StateChange(
                target_type="actor_state",
                target_resource=f"r{i % 2}",
                prev_hash=head,
                data=data.encode(),
                form=form,
            ),
            agent_role="coder",
            agent_id=agent,
            sequence=seq + 1,
            causation_id=decision.event_id,
            timestamp_ns=T0 + 10 * (seq + 1),
        )
        head = change.payload.hash  # type: ignore[union-attr]
        events += [decision, change]
        seq += 2
    return events


def changes_of(events: list[SwarmEvent]) -> list[int]:
    """Indexes of the state changes."""
    return [i for i, e in enumerate(events) if isinstance(e.payload, StateChange)]


def with_change(event: SwarmEvent, **fields: object) -> SwarmEvent:
    return msgspec.structs.replace(event, payload=msgspec.structs.replace(event.payload, **fields))


def test_an_untouched_chain_verifies() -> None:
    events = history(5)
    heads = verify_chain(events)
    assert heads == {"a1": events[-1].payload.hash}  # type: ignore[union-attr]
    assert verify_chain([]) == {}


def test_agents_are_chained_independently() -> None:
    a, b = history(4, agent="a"), history(3, agent="b")
    mixed = [e for pair in zip(a, b, strict=False) for e in pair] + a[len(b) :]
    assert set(verify_chain(mixed)) == {"a", "b"}
    bad = list(mixed)
    i = mixed.index(b[3])
    bad[i] = with_change(b[3], data=b"forged")
    with pytest.raises(ChainBrokenError) as info:
        verify_chain(bad)
    assert (info.value.agent_id, info.value.sequence) == ("b", 4)


TAMPERS: dict[str, Callable[[SwarmEvent], SwarmEvent]] = {
    "data": lambda e: with_change(e, data=e.payload.data + b"!"),  # type: ignore[union-attr]
    "resource": lambda e: with_change(e, target_resource="elsewhere"),
    "form": lambda e: with_change(e, form=ChangeForm.DELTA),
    "reversible": lambda e: with_change(e, is_reversible=True),
    "hash": lambda e: with_change(e, hash=bytes(32)),
    "prev_hash": lambda e: with_change(e, prev_hash=bytes(32)),
    "timestamp": lambda e: msgspec.structs.replace(e, timestamp_ns=e.timestamp_ns + 1),
    "causation": lambda e: msgspec.structs.replace(e, causation_id="someone else"),
    "role": lambda e: msgspec.structs.replace(e, agent_role="reviewer"),
    "trace": lambda e: msgspec.structs.replace(e, trace_id="0" * 32),
    "event id": lambda e: msgspec.structs.replace(e, event_id="forged"),
}


@given(n=st.integers(1, 8), data=st.data(), how=st.sampled_from(sorted(TAMPERS)))
def test_tampering_is_found_at_the_tampered_sequence(n: int, data: st.DataObject, how: str) -> None:
    events = history(n)
    k = data.draw(st.sampled_from(changes_of(events)))
    events[k] = TAMPERS[how](events[k])
    with pytest.raises(ChainBrokenError) as info:
        verify_chain(events)
    assert info.value.sequence == events[k].sequence
    assert info.value.event_id == events[k].event_id
    assert info.value.agent_id == "a1"


@given(n=st.integers(2, 8), data=st.data())
def test_a_resealed_forgery_is_found_at_the_next_change(n: int, data: st.DataObject) -> None:
    # Someone who alters a change and recomputes its hash still breaks the next link.
    events = history(n)
    changes = changes_of(events)
    k = data.draw(st.sampled_from(changes[:-1]))
    forged = with_change(events[k], data=b"forged", hash=b"")
    events[k] = with_change(forged, hash=state_hash(forged))
    verify_chain(events[: k + 1])  # on its own the forgery is consistent
    with pytest.raises(ChainBrokenError, match="prev_hash") as info:
        verify_chain(events)
    assert info.value.sequence == events[changes[changes.index(k) + 1]].sequence


@given(n=st.integers(2, 8), data=st.data())
def test_dropped_reordered_or_repeated_changes_are_found(n: int, data: st.DataObject) -> None:
    events = history(n)
    changes = changes_of(events)
    i = data.draw(st.integers(0, len(changes) - 2))
    a, b = changes[i], changes[i + 1]
    dropped = events[:a] + events[a + 1 :]
    with pytest.raises(ChainBrokenError) as info:
        verify_chain(dropped)
    assert info.value.sequence == events[b].sequence
    swapped = list(events)
    swapped[a], swapped[b] = swapped[b], swapped[a]
    with pytest.raises(ChainBrokenError) as info:
        verify_chain(swapped)
    assert info.value.sequence == events[b].sequence
    repeated = [*events[: a + 1], events[a], *events[a + 1 :]]
    with pytest.raises(ChainBrokenError, match="does not follow") as info:
        verify_chain(repeated)
    assert info.value.sequence == events[a].sequence


def test_decisions_and_signals_are_not_links() -> None:
    events = history(3)
    signal = SystemSignal(kind=SignalKind.HEALTH)
    events.insert(2, new_event(signal, agent_role="coder", agent_id="a1", sequence=4))
    events[0] = msgspec.structs.replace(events[0], agent_role="edited")
    verify_chain(events)


def test_a_chain_without_its_start() -> None:
    events = history(4)
    suffix = events[changes_of(events)[1] :]
    with pytest.raises(ChainBrokenError, match="genesis") as info:
        verify_chain(suffix)
    assert info.value.sequence == suffix[0].sequence
    assert verify_chain(suffix, from_genesis=False) == verify_chain(events)


# --- replay -----------------------------------------------------------------------------------


def test_replay_returns_the_state_at_an_earlier_sequence() -> None:
    events = history(5)  # changes at sequences 2, 4, 6, 8, 10 with states s1..s5
    for until, state, seq in [(2, b"s1", 2), (3, b"s1", 2), (7, b"s3", 6), (None, b"s5", 10)]:
        replayed = replay_state(events, "a1", until_sequence=until)
        assert (replayed.state, replayed.sequence) == (state, seq)
        assert replayed.hash == next(e for e in events if e.sequence == seq).payload.hash  # type: ignore[union-attr]
    nothing = replay_state(events, "a1", until_sequence=1, initial=b"init")
    assert (nothing.state, nothing.sequence, nothing.hash, nothing.changes) == (b"init", 0, b"", 0)
    assert replay_state(events, "someone else").changes == 0


def test_replay_by_time() -> None:
    events = history(3)  # change timestamps T0 + 20, + 40, + 60
    assert replay_state(events, "a1", until_time_ns=T0 + 45).state == b"s2"
    assert replay_state(events, "a1", until_time_ns=T0 + 40).state == b"s2"
    assert replay_state(events, "a1", until_time_ns=T0 + 39).timestamp_ns == T0 + 20
    both = replay_state(events, "a1", until_time_ns=T0 + 100, until_sequence=2)
    assert both.state == b"s1"


def test_replay_applies_deltas() -> None:
    events = history(4, deltas=True)
    replayed = replay_state(events, "a1", apply=lambda state, delta: state + delta, initial=b"0")
    assert replayed.state == b"0+1+2+3+4"
    assert replayed.changes == 4
    earlier = replay_state(events, "a1", until_sequence=5, apply=lambda s, d: s + d)
    assert earlier.state == b"+1+2"
    with pytest.raises(ReplayError) as info:
        replay_state(events, "a1")
    assert info.value.sequence == 2


def test_replay_of_one_resource_verifies_all() -> None:
    events = history(4)  # resources r1, r0, r1, r0
    r1 = replay_state(events, "a1", resource="r1")
    assert (r1.state, r1.changes, r1.sequence) == (b"s3", 2, 8)  # head is the agent's head
    events[changes_of(events)[1]] = TAMPERS["data"](events[changes_of(events)[1]])  # an r0 change
    with pytest.raises(ChainBrokenError):
        replay_state(events, "a1", resource="r1")


def test_replay_verifies_what_it_folds_and_no_further() -> None:
    events = history(4)
    k = changes_of(events)[2]  # sequence 6
    events[k] = TAMPERS["data"](events[k])
    assert replay_state(events, "a1", until_sequence=5).state == b"s2"
    with pytest.raises(ChainBrokenError) as info:
        replay_state(events, "a1", until_sequence=6)
    assert info.value.sequence == 6


@given(events(changes))
def test_the_fast_canonical_bytes_are_encode_protos(event: SwarmEvent) -> None:
    # state_hash has the Rust core write a state change's canonical bytes in one pass
    # (_tuplecore.state_change_bytes): they must stay encode_proto's, field for field.
    from swarm_actors._events._protomap import encode_proto
    from swarm_actors._tuplecore import state_change_bytes

    unsealed = with_change(event, hash=b"")
    canonical = encode_proto(unsealed)
    assert state_change_bytes(event) == canonical
    prev = event.payload.prev_hash  # type: ignore[union-attr]
    assert state_hash(event) == hashlib.sha256(prev + canonical).digest()
