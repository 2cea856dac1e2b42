"""The ``.proto`` is the schema of record: the Structs must match it, and the mapping must be real.

The proto is compiled in the test with grpcio-tools (a FileDescriptorSet for the drift check,
generated Python code for the round trips), so nothing generated is checked in.
"""

from __future__ import annotations

import copy
import enum
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import msgspec
import pytest
from google.protobuf import descriptor_pb2, json_format
from grpc_tools import protoc
from hypothesis import given

from event_strategies import events
from swarm_actors._events._protomap import encode_proto, enum_prefix, oneof, proto, proto_fields
from swarm_actors._events._schema import (
    SCHEMA_VERSION,
    AgentDecision,
    ChangeForm,
    ModelCall,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    ToolRun,
    from_proto_dict,
    new_event,
    to_proto_dict,
)
from swarm_actors.errors import EventDecodeError, SchemaVersionError

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"
PROTO_FILE = "swarm/events/v1/events.proto"

# A field as both sides describe it: (number, type, repeated, oneof, message or enum name).
Field = tuple[int, str, bool, str | None, str | None]
Schema = dict[str, dict[str, Any]]  # {"messages": {name: {field: Field}}, "enums": {...}}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, ModuleType]:
    """(FileDescriptorProto of events.proto, the generated events_pb2 module)."""
    out = tmp_path_factory.mktemp("proto")
    fds_path = out / "events.fds"
    args = [f"-I{PROTO_ROOT}", f"--python_out={out}", f"--descriptor_set_out={fds_path}"]
    assert protoc.main(["protoc", *args, PROTO_FILE]) == 0
    fds = descriptor_pb2.FileDescriptorSet.FromString(fds_path.read_bytes())
    (file,) = fds.file
    spec = importlib.util.spec_from_file_location(
        "swarm_events_v1_pb2", out / "swarm" / "events" / "v1" / "events_pb2.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return file, module


# --- the two sides as tables ------------------------------------------------------------------

_TYPE_NAMES = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in descriptor_pb2.FieldDescriptorProto.Type.items()
}


def proto_schema(file: Any) -> Schema:
    """Messages and enums of a FileDescriptorProto."""
    messages: dict[str, dict[str, Field]] = {}
    for message in file.message_type:
        fields: dict[str, Field] = {}
        for f in message.field:
            oneof_name = (
                message.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None
            )
            type_name = f.type_name.rsplit(".", 1)[-1] or None
            repeated = f.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            fields[f.name] = (f.number, _TYPE_NAMES[f.type], repeated, oneof_name, type_name)
        for nested in (*message.nested_type, *message.enum_type):
            fields[f"<nested {nested.name}>"] = (0, "unsupported", False, None, None)
        messages[message.name] = fields
    enums = {e.name: {v.name: v.number for v in e.value} for e in file.enum_type}
    return {"messages": messages, "enums": enums}


def python_schema(root: type[msgspec.Struct]) -> Schema:
    """Messages and enums reachable from ``root``, from the Structs' proto metadata."""
    messages: dict[str, dict[str, Field]] = {}
    enums: dict[str, dict[str, int]] = {}
    todo = [root]
    while todo:
        cls = todo.pop()
        if cls.__name__ in messages:
            continue
        fields: dict[str, Field] = {}
        for f in proto_fields(cls):
            ref = f.type_ref
            fields[f.name] = (f.number, f.proto_type, f.repeated, f.oneof, ref and ref.__name__)
            if f.proto_type == "message":
                todo.append(ref)
            elif f.proto_type == "enum":
                prefix = enum_prefix(ref)
                enums[ref.__name__] = {prefix + m.name: m.value for m in ref}
        messages[cls.__name__] = fields
    return {"messages": messages, "enums": enums}


def schema_diff(proto_side: Schema, python_side: Schema) -> list[str]:
    """Every difference between the two tables, in both directions; empty when they agree."""
    diffs: list[str] = []
    pm, ym = proto_side["messages"], python_side["messages"]
    for name in sorted(pm.keys() | ym.keys()):
        if name not in ym:
            diffs.append(f"message {name} is in the .proto only")
            continue
        if name not in pm:
            diffs.append(f"message {name} is in Python only")
            continue
        for field in sorted(pm[name].keys() | ym[name].keys()):
            a, b = pm[name].get(field), ym[name].get(field)
            if a is None:
                diffs.append(f"{name}.{field} is in Python only")
            elif b is None:
                diffs.append(f"{name}.{field} is in the .proto only")
            elif a != b:
                diffs.append(f"{name}.{field}: .proto {a} != Python {b}")
    pe, ye = proto_side["enums"], python_side["enums"]
    for name in sorted(pe.keys() | ye.keys()):
        if name not in ye or name not in pe:
            diffs.append(f"enum {name} is in {'Python' if name in ye else 'the .proto'} only")
            continue
        proto_values = dict(pe[name])
        # The proto's zero value may be left out in Python: then an unset enum never validates.
        unspecified = next((k for k, v in proto_values.items() if k.endswith("_UNSPECIFIED")), "")
        if proto_values.get(unspecified) == 0 and unspecified not in ye[name]:
            del proto_values[unspecified]
        if proto_values != ye[name]:
            diffs.append(f"enum {name}: .proto {proto_values} != Python {ye[name]}")
    return diffs


# --- drift ------------------------------------------------------------------------------------


def test_file_is_proto3_in_a_versioned_package(compiled: tuple[Any, ModuleType]) -> None:
    file, _ = compiled
    assert file.syntax == "proto3"
    assert file.package == "swarm.events.v1"
    assert not file.dependency  # self-contained: no imports to compile along


def test_structs_match_the_proto(compiled: tuple[Any, ModuleType]) -> None:
    file, _ = compiled
    assert schema_diff(proto_schema(file), python_schema(SwarmEvent)) == []


@pytest.mark.parametrize(
    "cls", [SwarmEvent, AgentDecision, StateChange, SystemSignal, ModelCall, ToolRun]
)
def test_wire_positions_follow_field_numbers(cls: type[msgspec.Struct]) -> None:
    # array_like: a field's position is its place in the Struct, so the Struct order must be the
    # number order and new fields can only be appended (a new, higher number).
    order = list(dict.fromkeys(f.attr for f in proto_fields(cls)))
    assert order == list(cls.__struct_fields__)
    assert cls.__struct_config__.array_like


# Each mutation of one side's table must be reported, naming what drifted.
MUTATIONS: list[tuple[str, str, Any]] = [
    ("renumbered", "sequence", lambda s: _set(s, "SwarmEvent", "sequence", 0, 99)),
    ("retyped", "timestamp_ns", lambda s: _set(s, "SwarmEvent", "timestamp_ns", 1, "uint64")),
    ("made repeated", "data", lambda s: _set(s, "StateChange", "data", 2, True)),
    ("out of the oneof", "decision", lambda s: _set(s, "SwarmEvent", "decision", 3, None)),
    ("other enum", "kind", lambda s: _set(s, "SystemSignal", "kind", 4, "HealthStatus")),
    ("dropped", "choice", lambda s: s["messages"]["AgentDecision"].pop("choice")),
    (
        "added",
        "extra",
        lambda s: _add(s, "AgentDecision", "extra", (8, "string", False, None, None)),
    ),
    ("renamed", "rationale", lambda s: _rename(s, "AgentDecision", "rationale", "reason")),
    ("message added", "Extra", lambda s: s["messages"].__setitem__("Extra", {})),
    ("enum value added", "SignalKind", lambda s: _add_value(s, "SignalKind", "SIGNAL_KIND_X", 8)),
    (
        "enum renumbered",
        "ChangeForm",
        lambda s: _add_value(s, "ChangeForm", "CHANGE_FORM_DELTA", 5),
    ),
    ("enum dropped", "HealthStatus", lambda s: s["enums"].pop("HealthStatus")),
]


def _add(schema: Schema, message: str, field: str, value: Field) -> None:
    schema["messages"][message][field] = value


def _add_value(schema: Schema, name: str, value_name: str, number: int) -> None:
    schema["enums"][name][value_name] = number


def _set(schema: Schema, message: str, field: str, index: int, value: object) -> None:
    old = list(schema["messages"][message][field])
    old[index] = value
    schema["messages"][message][field] = tuple(old)


def _rename(schema: Schema, message: str, field: str, new: str) -> None:
    schema["messages"][message][new] = schema["messages"][message].pop(field)


@pytest.mark.parametrize("side", ["proto", "python"])
@pytest.mark.parametrize(("what", "where", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_the_comparator_reports_drift(
    compiled: tuple[Any, ModuleType], side: str, what: str, where: str, mutate: Any
) -> None:
    file, _ = compiled
    sides = {"proto": proto_schema(file), "python": python_schema(SwarmEvent)}
    mutated = copy.deepcopy(sides[side])
    mutate(mutated)
    sides[side] = mutated
    diffs = schema_diff(sides["proto"], sides["python"])
    assert diffs, f"{what} on the {side} side went unnoticed"
    assert any(where in d for d in diffs), diffs


def test_a_drifted_descriptor_is_reported(compiled: tuple[Any, ModuleType]) -> None:
    file, _ = compiled
    drifted = copy.deepcopy(file)
    (signal,) = (m for m in drifted.message_type if m.name == "SystemSignal")
    (field,) = (f for f in signal.field if f.name == "mailbox_depth")
    field.number = 9
    field.type = descriptor_pb2.FieldDescriptorProto.TYPE_UINT32
    diffs = schema_diff(proto_schema(drifted), python_schema(SwarmEvent))
    assert diffs == [
        "SystemSignal.mailbox_depth: .proto (9, 'uint32', False, None, None) != "
        "Python (8, 'uint64', False, None, None)"
    ]


class _Kind(enum.IntEnum):  # SignalKind without HEALTH
    STARTED = 1
    STOPPED = 2
    CRASHED = 3
    RESTARTED = 4
    PASSIVATED = 5
    ACTIVATED = 6


class _Signal(msgspec.Struct, tag=12, frozen=True, kw_only=True, array_like=True):
    kind: Annotated[_Kind, proto(1)]
    detail: Annotated[str, proto(2, "string")] = ""
    severity: Annotated[int, proto(9, "uint32")] = 0


class _Event(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    event_id: Annotated[str, proto(1, "string")]
    payload: Annotated[_Signal, oneof("payload", system_signal=12)]


_Kind.__name__, _Signal.__name__, _Event.__name__ = "SignalKind", "SystemSignal", "SwarmEvent"


def test_a_drifted_struct_is_reported(compiled: tuple[Any, ModuleType]) -> None:
    file, _ = compiled
    diffs = schema_diff(proto_schema(file), python_schema(_Event))
    assert "SystemSignal.severity is in Python only" in diffs
    assert "SystemSignal.error_type is in the .proto only" in diffs
    assert "SwarmEvent.decision is in the .proto only" in diffs
    assert "SwarmEvent.agent_id is in the .proto only" in diffs
    assert any(d.startswith("enum SignalKind") for d in diffs)
    assert "message AgentDecision is in the .proto only" in diffs


class _Unnumbered(msgspec.Struct, frozen=True):
    a: Annotated[str, proto(1, "string")]
    b: str = ""


class _Mistyped(msgspec.Struct, frozen=True):
    a: Annotated[str, proto(1, "uint64")]


def test_every_field_needs_a_number_and_a_fitting_type() -> None:
    # A field the table left out would escape the drift check, so it is an error.
    with pytest.raises(TypeError, match=r"_Unnumbered\.b has no proto number"):
        proto_fields(_Unnumbered)
    with pytest.raises(TypeError, match="cannot hold a proto uint64"):
        proto_fields(_Mistyped)
    with pytest.raises(ValueError, match="unsupported proto type"):
        proto(1, "sint32")


# --- the mapping is real: round trips through the generated code -------------------------------


@given(event=events())
def test_protobuf_round_trip(compiled: tuple[Any, ModuleType], event: SwarmEvent) -> None:
    _, pb = compiled
    message = json_format.ParseDict(to_proto_dict(event), pb.SwarmEvent())
    assert (
        message.WhichOneof("payload")
        == {
            AgentDecision: "decision",
            StateChange: "state_change",
            SystemSignal: "system_signal",
            ModelCall: "model_call",
            ToolRun: "tool_run",
        }[type(event.payload)]
    )
    assert json_format.MessageToDict(message) == to_proto_dict(event)
    assert from_proto_dict(json_format.MessageToDict(message)) == event
    by_name = json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert from_proto_dict(by_name) == event
    # The binary encoding (what state hashes are taken over) is protobuf's, byte for byte.
    binary = encode_proto(event)
    assert binary == message.SerializeToString(deterministic=True)
    assert pb.SwarmEvent.FromString(binary) == message


def test_fields_read_through_the_generated_code(compiled: tuple[Any, ModuleType]) -> None:
    _, pb = compiled
    event = new_event(
        StateChange(
            target_resource="src/a.py", form=ChangeForm.DELTA, data=b"\x00\xff", prev_hash=b"p"
        ),
        agent_role="coder",
        agent_id="c1",
        sequence=2**40,
        timestamp_ns=2**64 - 1,
    )
    message = pb.SwarmEvent.FromString(encode_proto(event))
    assert message.timestamp_ns == 2**64 - 1
    assert message.sequence == 2**40
    assert message.agent_role == "coder"
    assert message.state_change.form == pb.CHANGE_FORM_DELTA
    assert message.state_change.data == b"\x00\xff"
    assert message.state_change.hash == event.payload.hash  # type: ignore[union-attr]
    built = pb.SwarmEvent(
        event_id="e",
        timestamp_ns=1,
        agent_role="w",
        agent_id="a",
        schema_version=1,
        sequence=1,
        system_signal=pb.SystemSignal(kind=pb.SIGNAL_KIND_CRASHED, error_type="builtins.KeyError"),
    )
    converted = from_proto_dict(json_format.MessageToDict(built))
    assert converted.payload == SystemSignal(
        kind=SignalKind.CRASHED, error_type="builtins.KeyError"
    )


def test_version_2_kinds_read_through_the_generated_code(
    compiled: tuple[Any, ModuleType],
) -> None:
    _, pb = compiled
    call = ModelCall(
        provider="openai",
        model="m",
        request_digest="ab" * 32,
        tokens_in=2**40,
        latency_ns=2**64 - 1,
        cache_hit=True,
        cost=0.25,
        winner=True,
        finish_reason="stop",
    )
    event = new_event(call, agent_role="coder", agent_id="c1", sequence=1, run_id="run-7")
    message = pb.SwarmEvent.FromString(encode_proto(event))
    assert message.WhichOneof("payload") == "model_call"
    assert message.run_id == "run-7"
    assert message.model_call.tokens_in == 2**40
    assert message.model_call.latency_ns == 2**64 - 1
    assert message.model_call.cache_hit
    assert message.model_call.finish_reason == "stop"
    built = pb.SwarmEvent(
        event_id="e",
        timestamp_ns=1,
        agent_role="w",
        agent_id="a",
        schema_version=2,
        sequence=1,
        run_id="r",
        tool_run=pb.ToolRun(tool="pytest", argv=["pytest", "-q"], exit_status=-9, timed_out=True),
    )
    converted = from_proto_dict(json_format.MessageToDict(built))
    assert converted.run_id == "r"
    assert converted.payload == ToolRun(
        tool="pytest", argv=("pytest", "-q"), exit_status=-9, timed_out=True
    )


def test_version_1_dicts_cannot_carry_version_2_content() -> None:
    with pytest.raises(EventDecodeError, match="version 2 introduced"):
        from_proto_dict({**GOOD, "runId": "r"})
    v1_call = {k: v for k, v in GOOD.items() if k != "systemSignal"} | {"modelCall": {}}
    with pytest.raises(EventDecodeError, match="carries a ModelCall"):
        from_proto_dict(v1_call)
    assert from_proto_dict({**v1_call, "schemaVersion": 2}).payload == ModelCall()


# --- strict conversion from dicts --------------------------------------------------------------

DROP = object()  # a key to leave out
GOOD: dict[str, Any] = {
    "eventId": "e1",
    "timestampNs": "5",
    "agentRole": "worker",
    "agentId": "a",
    "schemaVersion": 1,
    "sequence": "1",
    "systemSignal": {"kind": "SIGNAL_KIND_STARTED"},
}


def test_a_good_dict_converts() -> None:
    event = from_proto_dict(GOOD)
    assert event.payload == SystemSignal(kind=SignalKind.STARTED)
    assert event.timestamp_ns == 5
    assert from_proto_dict({**GOOD, "timestampNs": 5, "systemSignal": {"kind": 1}}) == event


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"color": "red"}, "unknown field 'color'"),
        ({"decision": {}}, "second oneof member"),
        ({"systemSignal": None}, "has no payload"),
        ({"systemSignal": {"kind": "SIGNAL_KIND_PAUSED"}}, "unknown SignalKind"),
        ({"systemSignal": {"kind": "HEALTH_STATUS_OK"}}, "unknown SignalKind"),
        ({"systemSignal": {}}, "Invalid enum value 0"),
        ({"systemSignal": {"kind": "SIGNAL_KIND_STARTED", "restartCount": -1}}, "range"),
        ({"systemSignal": {"kind": "SIGNAL_KIND_STARTED", "memoryBytes": str(2**64)}}, "range"),
        ({"systemSignal": {"kind": "SIGNAL_KIND_STARTED", "cpuLoadPercent": "fast"}}, "invalid"),
        ({"sequence": "one"}, "invalid integer"),
        ({"sequence": True}, "Expected `int`"),
        ({"agentId": 5}, "Expected `str`"),
        ({"eventId": ""}, "length >= 1"),
        ({"agentRole": "a.b"}, "matching regex"),
        ({"systemSignal": DROP, "stateChange": {"form": 1, "data": "!!"}}, "base64"),
        ({"agent_id": "b"}, "given twice"),
        ({"systemSignal": []}, "expected an object"),
        ({"systemSignal": DROP, "decision": {"memoryIds": "m1"}}, "expected a list"),
    ],
)
def test_bad_dicts_are_typed_errors(change: dict[str, Any], message: str) -> None:
    data = {k: v for k, v in {**GOOD, **change}.items() if v is not DROP}
    with pytest.raises(EventDecodeError, match=message):
        from_proto_dict(data)


def test_future_version_dict_is_a_version_error() -> None:
    with pytest.raises(SchemaVersionError):
        from_proto_dict({**GOOD, "schemaVersion": SCHEMA_VERSION + 1})


def test_bytes_accept_url_safe_and_unpadded_base64() -> None:
    change = {"form": "CHANGE_FORM_SNAPSHOT", "data": "-_8", "prevHash": "AAE"}
    data = {k: v for k, v in GOOD.items() if k != "systemSignal"} | {"stateChange": change}
    payload = from_proto_dict(data).payload
    assert isinstance(payload, StateChange)
    assert (payload.data, payload.prev_hash) == (b"\xfb\xff", b"\x00\x01")
