"""Events: msgpack round trip, strict decoding, schema versions, subjects, ids and builders."""

from __future__ import annotations

import subprocess
import sys
import uuid

import msgspec
import pytest
from hypothesis import given

from event_strategies import events
from swarm_actors import SwarmError
from swarm_actors._events import _schema as _events
from swarm_actors._events._journal import subject_matches
from swarm_actors._events._schema import (
    KINDS,
    SCHEMA_VERSION,
    AgentDecision,
    ChangeForm,
    HealthStatus,
    ModelCall,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    ToolRun,
    check_role,
    decode_event,
    encode_event,
    new_event,
    new_event_id,
    state_hash,
    subject_for,
)
from swarm_actors.errors import EventDecodeError, SchemaVersionError, SubjectError
from swarm_actors.events import Payload


def sample(payload: Payload, **kw: object) -> SwarmEvent:
    fields: dict[str, object] = {"agent_role": "worker", "agent_id": "/w1", "sequence": 1}
    fields.update(kw)
    return new_event(payload, **fields)  # type: ignore[arg-type]


# --- round trip -------------------------------------------------------------------------------


@given(events())
def test_msgpack_round_trip(event: SwarmEvent) -> None:
    data = encode_event(event)
    assert decode_event(data) == event
    assert decode_event(bytearray(data)) == event
    assert decode_event(memoryview(data)) == event


# Version-1 bytes written by this build when version 1 was current. They must decode forever:
# a change to the Structs that would make old journals unreadable fails here.
GOLDEN_V1 = [
    "9ad92430313866336532612d303030302d373030302d383030302d303030303030303030303031cf17979cfe"
    "362a0001d9203061663736353139313663643433646438343438656232313163383033313963b06237616436"
    "6237313639323033333331a9617263686974656374ac4172636869746563742d30310101a0980aaa6769743a"
    "613162326333ab7265766965772050522037ab746573747320666972737491a873686970206e6f7792a26d31"
    "a26d32cb3fe8000000000000ab7772697465207465737473",
    "9ad92430313866336532612d303030302d373030302d383030302d303030303030303030303032cf17979cfe"
    "362a0002a0a0a5636f646572a8436f6465722d30310102d92430313866336532612d303030302d373030302d"
    "383030302d303030303030303030303031990bab46494c455f53595354454dab7372632f617574682e7079c4"
    "00c42059be80156e756432145bb1fb1b26fddccc385a3c8598050d98a1f36134c47d38c40c2d2d2d20610a2b"
    "2b2b20620ac302ab746578742f782d64696666",
    "9ad92430313866336532612d303030302d373030302d383030302d303030303030303030303033cf17979cfe"
    "362a0003a0a0a6776f726b6572a82f706f6f6c2f77310103a0990c07af6d61696c626f782066696c6c696e67"
    "a00002cb4055e00000000000ce075bcd15cd0384",
]


def test_version_1_bytes_stay_readable() -> None:
    decision, change, signal = (decode_event(bytes.fromhex(h)) for h in GOLDEN_V1)
    assert decision.schema_version == 1
    assert decision.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert decision.payload == AgentDecision(
        context_hash="git:a1b2c3",
        input_trigger="review PR 7",
        rationale="tests first",
        rejected_alternatives=("ship now",),
        memory_ids=("m1", "m2"),
        confidence_score=0.75,
        choice="write tests",
    )
    assert isinstance(change.payload, StateChange)
    assert change.causation_id == decision.event_id
    assert change.payload.form is ChangeForm.DELTA
    assert change.payload.data == b"--- a\n+++ b\n"
    # The hash definition is pinned too: chains written by version 1 keep verifying.
    assert change.payload.hash.hex() == (
        "59be80156e756432145bb1fb1b26fddccc385a3c8598050d98a1f36134c47d38"
    )
    assert state_hash(change) == change.payload.hash
    assert signal.payload == SystemSignal(
        kind=SignalKind.HEALTH,
        detail="mailbox filling",
        health=HealthStatus.DEGRADED,
        cpu_load_percent=87.5,
        memory_bytes=123456789,
        mailbox_depth=900,
    )
    assert [encode_event(e).hex() for e in (decision, change, signal)] == GOLDEN_V1


# --- strict decoding --------------------------------------------------------------------------


def raw_of(event: SwarmEvent) -> list[object]:
    raw = msgspec.msgpack.decode(encode_event(event))
    assert isinstance(raw, list)
    return raw


SIGNAL = sample(SystemSignal(kind=SignalKind.STARTED))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.__setitem__(9, [99, 1]), "Invalid value 99"),  # unknown payload tag
        (lambda r: r.__setitem__(9, ["system_signal", 1]), "Expected `int`"),  # a name, not a tag
        (lambda r: r.__setitem__(9, [12, 42]), "Invalid enum value 42"),  # unknown SignalKind
        (lambda r: r.__setitem__(9, [12, 0]), "Invalid enum value 0"),  # UNSPECIFIED
        (lambda r: r.__setitem__(7, "1"), "Expected `int`, got `str`"),  # sequence
        (lambda r: r.__setitem__(7, -1), "Expected `int` >= 0"),
        (lambda r: r.__setitem__(1, 1.5), "Expected `int`, got `float`"),  # timestamp
        (lambda r: r.__setitem__(0, ""), "length >= 1"),  # empty event id
        (lambda r: r.__setitem__(4, "a.b"), "matching regex"),  # role unfit for a subject
        (lambda r: r.__setitem__(2, None), "Expected `str`, got `None`"),
        (lambda r: r.__delitem__(9), "at least length 10"),  # missing payload
        (lambda r: r.__setitem__(9, [12]), "at least length 2"),  # missing required kind
        (lambda r: r.__setitem__(9, {"type": 12, "kind": 1}), "Expected `array`"),
    ],
)
def test_malformed_events_are_typed_errors(mutate: object, message: str) -> None:
    raw = raw_of(SIGNAL)
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(EventDecodeError, match=message) as info:
        decode_event(msgspec.msgpack.encode(raw))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, SwarmError)
    assert isinstance(info.value.__cause__, msgspec.DecodeError)


def test_out_of_range_values_are_refused() -> None:
    change = sample(StateChange(form=ChangeForm.SNAPSHOT))
    raw = raw_of(change)
    raw[9][4] = b"x" * 33  # type: ignore[index]  # hash longer than SHA-256
    with pytest.raises(EventDecodeError, match="length <= 32"):
        decode_event(msgspec.msgpack.encode(raw))
    decision = raw_of(sample(AgentDecision(confidence_score=0.5)))
    decision[9][6] = 1.5  # type: ignore[index]
    with pytest.raises(EventDecodeError, match=r"<= 1\.0"):
        decode_event(msgspec.msgpack.encode(decision))
    signal = raw_of(sample(SystemSignal(kind=SignalKind.RESTARTED)))
    signal[9][4] = 2**32  # type: ignore[index]  # restart_count is a uint32
    with pytest.raises(EventDecodeError, match="<= 4294967295"):
        decode_event(msgspec.msgpack.encode(signal))


@given(events())
def test_every_truncation_is_a_typed_error(event: SwarmEvent) -> None:
    data = encode_event(event)
    for cut in range(len(data)):
        with pytest.raises(EventDecodeError):
            decode_event(data[:cut])


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"garbage", bytes(range(64)), b"\x92\x01\x02", msgspec.msgpack.encode({"a": 1})],
)
def test_garbage_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(data)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(EventDecodeError, match="trailing"):
        decode_event(encode_event(SIGNAL) + b"\x00")


def test_future_schema_version_is_a_typed_error() -> None:
    future = msgspec.structs.replace(SIGNAL, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(SchemaVersionError) as info:
        decode_event(encode_event(future))
    assert info.value.version == SCHEMA_VERSION + 1
    assert info.value.supported == SCHEMA_VERSION
    assert isinstance(info.value, EventDecodeError)


def test_future_version_with_a_new_shape_is_still_a_version_error() -> None:
    # A newer writer may change the payload in ways this build cannot decode at all; the
    # version it carries still explains the failure.
    raw = raw_of(SIGNAL)
    raw[6] = SCHEMA_VERSION + 1
    raw[9] = [13, "a payload kind from the future"]
    with pytest.raises(SchemaVersionError):
        decode_event(msgspec.msgpack.encode(raw))
    raw.append("a field appended by a later version")
    with pytest.raises(SchemaVersionError):
        decode_event(msgspec.msgpack.encode(raw))


def test_an_older_version_decodes_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # Version 2 appended fields; a later build that appends more reads both as they are.
    old = decode_event(bytes.fromhex(GOLDEN_V1[1]))
    assert old.schema_version == 1
    assert old.run_id == ""  # the field version 2 appended, at its default
    assert state_hash(old) == old.payload.hash  # type: ignore[union-attr]
    monkeypatch.setattr(_events, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    assert decode_event(encode_event(SIGNAL)) == SIGNAL
    newer = msgspec.structs.replace(SIGNAL, schema_version=SCHEMA_VERSION + 1)
    assert decode_event(encode_event(newer)) == newer
    with pytest.raises(SchemaVersionError):
        decode_event(encode_event(msgspec.structs.replace(SIGNAL, schema_version=9)))


def test_an_empty_run_id_is_left_out_of_the_bytes() -> None:
    # An event without a run encodes as version 1 laid it out (10 fields); one with a run
    # carries it as the 11th. Both read back whole.
    assert len(raw_of(SIGNAL)) == 10
    with_run = sample(ModelCall(model="m"), run_id="run-1")
    raw = raw_of(with_run)
    assert (len(raw), raw[10]) == (11, "run-1")
    assert decode_event(encode_event(with_run)) == with_run
    explicit = msgspec.msgpack.encode([*raw_of(SIGNAL), ""])  # an explicit empty run_id
    assert decode_event(explicit) == SIGNAL


def test_a_version_1_event_cannot_carry_what_version_2_added() -> None:
    # Claiming version 1 while carrying a version-2 payload or field is no version-1 event.
    v1_signal = raw_of(msgspec.structs.replace(SIGNAL, schema_version=1))
    assert decode_event(msgspec.msgpack.encode(v1_signal)).schema_version == 1
    with pytest.raises(EventDecodeError, match="version 2 introduced"):
        decode_event(msgspec.msgpack.encode([*v1_signal, "run-1"]))
    for payload in (ModelCall(), ToolRun()):
        raw = raw_of(msgspec.structs.replace(sample(payload), schema_version=1))
        with pytest.raises(EventDecodeError, match=f"carries a {type(payload).__name__}"):
            decode_event(msgspec.msgpack.encode(raw))
        raw[6] = 2
        assert type(decode_event(msgspec.msgpack.encode(raw)).payload) is type(payload)


def test_an_older_layout_goes_through_its_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    def upgrade(data: bytes) -> SwarmEvent:
        seen.append(data)
        return SIGNAL

    monkeypatch.setitem(_events._UPGRADES, 1, upgrade)
    golden = bytes.fromhex(GOLDEN_V1[2])
    assert decode_event(golden) is SIGNAL
    raw = raw_of(SIGNAL)
    raw[6] = 1
    raw[9] = [99, "a payload the current Structs do not know"]
    odd = msgspec.msgpack.encode(raw)
    assert decode_event(odd) is SIGNAL
    assert seen == [golden, odd]


def test_version_zero_never_existed() -> None:
    with pytest.raises(EventDecodeError, match="never existed"):
        decode_event(encode_event(msgspec.structs.replace(SIGNAL, schema_version=0)))


# --- subjects ---------------------------------------------------------------------------------


def test_subjects() -> None:
    assert subject_for(sample(AgentDecision())) == "swarm.events.worker.decision"
    assert subject_for(sample(StateChange(form=ChangeForm.SNAPSHOT))) == (
        "swarm.events.worker.state_change"
    )
    assert subject_for(sample(SystemSignal(kind=SignalKind.CRASHED), agent_role="A-b_9")) == (
        "swarm.events.A-b_9.system_signal"
    )
    assert subject_for(sample(ModelCall())) == "swarm.events.worker.model_call"
    assert subject_for(sample(ToolRun())) == "swarm.events.worker.tool_run"
    assert KINDS == ("decision", "state_change", "system_signal", "model_call", "tool_run")


@pytest.mark.parametrize("role", ["", "a.b", "a*", ">", "a b", "tab\t", "é", "x" * 65, "a\n"])
def test_invalid_roles_are_refused(role: str) -> None:
    with pytest.raises(SubjectError) as info:
        check_role(role)
    assert info.value.token == role
    with pytest.raises(SubjectError):
        sample(AgentDecision(), agent_role=role)
    unchecked = msgspec.structs.replace(SIGNAL, agent_role=role)
    with pytest.raises(SubjectError):
        subject_for(unchecked)


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("swarm.events.>", "swarm.events.coder.decision", True),
        ("swarm.events.*.decision", "swarm.events.coder.decision", True),
        ("swarm.events.*.decision", "swarm.events.coder.state_change", False),
        ("swarm.events.coder.*", "swarm.events.coder.state_change", True),
        ("swarm.events.coder.*", "swarm.events.coder", False),
        ("swarm.events.>", "swarm.events", False),
        ("swarm.*", "swarm.events.coder.decision", False),
        ("swarm.events.coder.decision", "swarm.events.coder.decision", True),
        (">", "anything.at.all", True),
    ],
)
def test_subject_filters(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


@pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a.b*", "a.>x", "a. b", "swarm.>.>"])
def test_invalid_subject_filters(pattern: str) -> None:
    with pytest.raises(SubjectError):
        subject_matches(pattern, "a.b")


# --- ids and builders -------------------------------------------------------------------------


def test_event_ids_are_uuid7_time_ordered_and_unique() -> None:
    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == ids[0]
    ms = 1_700_000_000_123
    assert uuid.UUID(new_event_id(ms * 1_000_000)).int >> 80 == ms


FORK_CHECK = """
import os
from swarm_actors._events._schema import new_event_id
new_event_id(0)  # the parent's state is set up before the fork
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, "".join(new_event_id(0) for _ in range(100)).encode())
    os._exit(0)
os.close(write)
assert os.waitpid(pid, 0)[1] == 0
child = os.read(read, 1 << 16).decode()
child_ids = {child[i : i + 36] for i in range(0, len(child), 36)}
parent_ids = {new_event_id(0) for _ in range(100)}
assert len(child_ids) == 100 and not child_ids & parent_ids, "a forked child repeated ids"
print("ok")
"""


def test_a_forked_child_draws_other_ids() -> None:
    # In a fresh interpreter: forking this (possibly threaded) test process would be unsafe.
    proc = subprocess.run(
        [sys.executable, "-c", FORK_CHECK], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_new_event_fills_in_id_time_and_version() -> None:
    event = sample(AgentDecision(rationale="r"), causation_id="c", trace_id="t", span_id="s")
    assert uuid.UUID(event.event_id).version == 7
    assert event.timestamp_ns > 1_600_000_000 * 10**9
    assert event.schema_version == SCHEMA_VERSION
    assert (event.causation_id, event.trace_id, event.span_id) == ("c", "t", "s")
    fixed = sample(AgentDecision(), event_id="e-1", timestamp_ns=5)
    assert (fixed.event_id, fixed.timestamp_ns) == ("e-1", 5)


def test_new_event_seals_state_changes() -> None:
    change = StateChange(form=ChangeForm.SNAPSHOT, data=b"s1", hash=b"ignored")
    event = sample(change)
    assert isinstance(event.payload, StateChange)
    assert len(event.payload.hash) == 32
    assert event.payload.hash == state_hash(event)
    with pytest.raises(TypeError, match="only state changes"):
        state_hash(SIGNAL)


def test_events_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SIGNAL.sequence = 2  # type: ignore[misc]
