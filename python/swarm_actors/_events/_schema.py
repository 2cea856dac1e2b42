"""Swarm events: the msgspec mirror of ``proto/swarm/events/v1/events.proto``, codec and builders.

The ``.proto`` is the schema of record; these Structs mirror it field for field, each field
annotated with its proto number (``_protomap.proto``), and ``tests/test_events_proto.py`` fails
on any drift. The payload is a msgspec tagged union whose tags are the oneof members' field
numbers (10 to 14: compact, and proof against renames as protobuf is); the members' names
(``KINDS``) are the ``<kind>`` of the NATS subject ``swarm.events.<agent_role>.<kind>``.

Wire format: msgspec msgpack with ``array_like=True`` (on a 2-core machine with CPython 3.11:
about 1.1M encode+decode/s and 174 B against 905k/s and 271 B as maps). Positions are the field
order, which is field-number order; a payload is ``[number, field, ...]``.

Schema versions (``SCHEMA_VERSION``, carried by every event):

* Within a version nothing changes. Any change an older reader could not read faithfully (a
  new field, enum value or payload kind) bumps the version: an older reader would drop a new
  field, and re-encoding or re-hashing without it would alter the event.
* ``decode_event`` refuses an event of a newer version with ``SchemaVersionError`` (never a
  guess at its meaning) and reads every older one. Fields past the last one its version defines
  are refused (``EventDecodeError``): within a version there are none to skip, and an event that
  dropped them would be another event (its bytes, its hash). New fields are only appended (new
  proto numbers, last positions, with defaults), so the current Structs read an older event as
  it is, the new fields at their defaults, which proto3 leaves out of the canonical bytes: the
  hashes of old state changes still verify. A version whose layout changed otherwise gets an
  entry in ``_UPGRADES`` (its own Structs and a conversion). Version 1 is the first.
  An event that claims an older version but carries what only a later one has (a payload kind,
  a non-default appended field) is refused too (``_INTRODUCED``): it is no event of that version.
* Version 2 added the ``ModelCall`` and ``ToolRun`` payloads and the envelope's ``run_id``
  (appended, proto number 15). An empty ``run_id`` is left out of the msgpack bytes (the
  envelope is then the 10-element array of version 1), as proto3 leaves defaults out of its
  bytes: a version-1 event re-encodes to its own bytes.
  ``tests/test_events.py`` decodes checked-in version-1 bytes (and pins a version-1 hash), so a
  change that would make old journals unreadable fails there.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final

import msgspec

from swarm_actors._events import _protomap
from swarm_actors._events._protomap import oneof, proto
from swarm_actors._exceptions import EventDecodeError, SchemaVersionError, SubjectError
from swarm_actors._tuplecore import state_change_bytes

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "SUBJECT_PREFIX",
    "AgentDecision",
    "ChangeForm",
    "HealthStatus",
    "ModelCall",
    "Payload",
    "SignalKind",
    "StateChange",
    "SwarmEvent",
    "SystemSignal",
    "ToolRun",
    "check_role",
    "decode_event",
    "encode_event",
    "from_proto_dict",
    "new_event",
    "new_event_id",
    "now_ns",
    "state_hash",
    "subject_for",
    "to_proto_dict",
]

SCHEMA_VERSION: Final = 2
"""The schema version this build writes (and the newest it reads)."""

SUBJECT_PREFIX: Final = "swarm.events"
"""Every event subject is ``swarm.events.<agent_role>.<kind>``."""

KINDS: Final = ("decision", "state_change", "system_signal", "model_call", "tool_run")
"""The payload kinds: the oneof's member names, and the last token of an event's subject."""


class ChangeForm(enum.IntEnum):
    """How ``StateChange.data`` describes the new state (proto ``ChangeForm``)."""

    SNAPSHOT = 1
    """``data`` is the whole state after the change."""
    DELTA = 2
    """``data`` is a delta from the state after the agent's previous change."""


class SignalKind(enum.IntEnum):
    """What a ``SystemSignal`` reports (proto ``SignalKind``)."""

    STARTED = 1
    STOPPED = 2
    CRASHED = 3
    RESTARTED = 4
    PASSIVATED = 5
    ACTIVATED = 6
    HEALTH = 7


class HealthStatus(enum.IntEnum):
    """A health verdict (proto ``HealthStatus``); ``UNSPECIFIED`` outside ``HEALTH`` signals."""

    UNSPECIFIED = 0
    OK = 1
    DEGRADED = 2
    FAILING = 3


class _Record(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    array_like=True,
    gc=False,
    forbid_unknown_fields=True,
):
    """Shared configuration: immutable, positional on the wire, strict, untracked by gc.

    ``forbid_unknown_fields``: an array longer than the Struct's fields is an error, not
    trailing values silently dropped (see the module docstring on versions).

    ``gc=False`` is safe (events hold only strings, numbers, bytes, tuples of strings and other
    events' Structs, so they cannot form cycles) and keeps a journal of millions of events from
    slowing every garbage collection.
    """


class AgentDecision(_Record, tag=10, frozen=True, kw_only=True):
    """The "why": what an agent decided and on what grounds (proto ``AgentDecision``)."""

    context_hash: Annotated[str, proto(1, "string")] = ""
    """Hash or revision of the snapshot of reality the agent looked at."""
    input_trigger: Annotated[str, proto(2, "string")] = ""
    """The prompt, message or event that triggered the decision."""
    rationale: Annotated[str, proto(3, "string")] = ""
    """The reasoning, in the agent's words."""
    rejected_alternatives: Annotated[tuple[str, ...], proto(4, "string")] = ()
    """Options considered and rejected."""
    memory_ids: Annotated[tuple[str, ...], proto(5, "string")] = ()
    """Ids of the memories that informed the decision."""
    confidence_score: Annotated[float, proto(6, "double", ge=0.0, le=1.0)] = 0.0
    """Confidence from 0.0 to 1.0."""
    choice: Annotated[str, proto(7, "string")] = ""
    """The option taken."""


class StateChange(_Record, tag=11, frozen=True, kw_only=True):
    """The "what": a change to state the agent owns, a link of its hash chain.

    ``hash`` is ``state_hash(event)``: SHA-256 over ``prev_hash`` and the event's protobuf
    encoding with ``hash`` empty (see the ``.proto``). ``new_event`` fills it in.
    """

    target_type: Annotated[str, proto(1, "string")] = ""
    """Kind of thing changed: ``"actor_state"``, ``"FILE_SYSTEM"``..."""
    target_resource: Annotated[str, proto(2, "string")] = ""
    """The resource changed, e.g. ``"src/backend/auth.py"``."""
    prev_hash: Annotated[bytes, proto(3, "bytes", max_length=32)] = b""
    """``hash`` of the agent's previous change; empty for its first."""
    hash: Annotated[bytes, proto(4, "bytes", max_length=32)] = b""
    """SHA-256 of ``prev_hash`` and this event's canonical bytes (32 bytes)."""
    data: Annotated[bytes, proto(5, "bytes")] = b""
    """The whole new state (``SNAPSHOT``) or a delta from the previous one (``DELTA``)."""
    is_reversible: Annotated[bool, proto(6, "bool")] = False
    """Whether the change can be undone."""
    form: Annotated[ChangeForm, proto(7)]
    """How ``data`` describes the state."""
    content_type: Annotated[str, proto(8, "string")] = ""
    """Media type of ``data``: ``"application/msgpack"``, ``"text/x-diff"``..."""


class SystemSignal(_Record, tag=12, frozen=True, kw_only=True):
    """The runtime's view of an agent: lifecycle and health (proto ``SystemSignal``)."""

    kind: Annotated[SignalKind, proto(1)]
    """What happened."""
    detail: Annotated[str, proto(2, "string")] = ""
    """Human-readable detail: stop reason, crash message, health note."""
    error_type: Annotated[str, proto(3, "string")] = ""
    """``CRASHED``: the exception's qualified type name."""
    restart_count: Annotated[int, proto(4, "uint32")] = 0
    """``RESTARTED``: restarts so far."""
    health: Annotated[HealthStatus, proto(5)] = HealthStatus.UNSPECIFIED
    """``HEALTH``: the verdict."""
    cpu_load_percent: Annotated[float, proto(6, "double", ge=0.0)] = 0.0
    """``HEALTH``: CPU load in percent of one core."""
    memory_bytes: Annotated[int, proto(7, "uint64")] = 0
    """``HEALTH``: resident memory in bytes."""
    mailbox_depth: Annotated[int, proto(8, "uint64")] = 0
    """``HEALTH``: messages waiting in the mailbox."""


class ModelCall(_Record, tag=13, frozen=True, kw_only=True):
    """A call to a model: what was asked, what came back, what it cost (proto ``ModelCall``).

    Large contents are referenced, not inline: ``prompt_ref`` and ``response_ref`` are SHA-256
    hex digests of blobs in a ``BlobStore``. Added in schema version 2.
    """

    provider: Annotated[str, proto(1, "string")] = ""
    """Who served the call: ``"openai"``, a host, ``"scripted"``, ``"replay"``..."""
    model: Annotated[str, proto(2, "string")] = ""
    """The model name as sent to the provider."""
    request_digest: Annotated[str, proto(3, "string")] = ""
    """SHA-256 hex of the normalized request: the cache's and replay's key."""
    prompt_ref: Annotated[str, proto(4, "string")] = ""
    """SHA-256 hex of the normalized request's bytes in the blob store, or empty."""
    response_ref: Annotated[str, proto(5, "string")] = ""
    """SHA-256 hex of the response text in the blob store, or empty (an error)."""
    prompt_preview: Annotated[str, proto(6, "string")] = ""
    """The start of the last user message (at most 200 characters)."""
    response_preview: Annotated[str, proto(7, "string")] = ""
    """The start of the response text (at most 200 characters)."""
    tokens_in: Annotated[int, proto(8, "uint64")] = 0
    """Prompt tokens, as the provider counted them (estimated when it did not say)."""
    tokens_out: Annotated[int, proto(9, "uint64")] = 0
    """Completion tokens."""
    latency_ns: Annotated[int, proto(10, "uint64")] = 0
    """Wall-clock time of the call in nanoseconds, retries included; 0 for a cache hit."""
    cache_hit: Annotated[bool, proto(11, "bool")] = False
    """The answer came from the response cache: no request was made."""
    attempts: Annotated[int, proto(12, "uint32")] = 0
    """Requests made (1 without retries; 0 for a cache hit or a replay)."""
    error_type: Annotated[str, proto(13, "string")] = ""
    """On failure: the error's qualified type name."""
    error_message: Annotated[str, proto(14, "string")] = ""
    """On failure: the error message."""
    cost: Annotated[float, proto(15, "double", ge=0.0)] = 0.0
    """What the call cost where prices are configured, else 0."""
    speculative: Annotated[bool, proto(16, "bool")] = False
    """One of several calls racing for the same request."""
    winner: Annotated[bool, proto(17, "bool")] = False
    """Of a speculative race: this call's answer was used."""
    finish_reason: Annotated[str, proto(18, "string")] = ""
    """Why the model stopped: ``"stop"``, ``"length"``...; empty on failure."""


class ToolRun(_Record, tag=14, frozen=True, kw_only=True):
    """A run of an external tool (tests, a linter, a compiler) and its verdict (proto ``ToolRun``).

    The whole output is stored once in a ``BlobStore``; ``output_ref`` is its SHA-256 hex.
    Added in schema version 2.
    """

    tool: Annotated[str, proto(1, "string")] = ""
    """The tool's short name: ``"pytest"``, ``"ruff"``..."""
    argv: Annotated[tuple[str, ...], proto(2, "string")] = ()
    """The command line as executed, ``argv[0]`` first."""
    cwd: Annotated[str, proto(3, "string")] = ""
    """The working directory, relative to the workspace root."""
    exit_status: Annotated[int, proto(4, "int32")] = 0
    """The exit code, or minus the number of the signal that ended the process."""
    duration_ns: Annotated[int, proto(5, "uint64")] = 0
    """Wall-clock duration in nanoseconds."""
    timed_out: Annotated[bool, proto(6, "bool")] = False
    """The run hit its timeout and its process group was killed."""
    passed: Annotated[int, proto(7, "uint32")] = 0
    """Tests passed (parsed from the tool's machine output)."""
    failed: Annotated[int, proto(8, "uint32")] = 0
    """Tests failed, or findings reported."""
    errors: Annotated[int, proto(9, "uint32")] = 0
    """Errors (tests that errored, files that did not parse)."""
    skipped: Annotated[int, proto(10, "uint32")] = 0
    """Tests skipped."""
    summary: Annotated[str, proto(11, "string")] = ""
    """A short human summary, e.g. ``"12 passed, 1 failed"``."""
    output_ref: Annotated[str, proto(12, "string")] = ""
    """SHA-256 hex of the captured output in the blob store."""
    output_bytes: Annotated[int, proto(13, "uint64")] = 0
    """Size of the captured output in bytes (after the cap)."""
    truncated: Annotated[bool, proto(14, "bool")] = False
    """The output exceeded the capture cap and was cut."""
    output_preview: Annotated[str, proto(15, "string")] = ""
    """The end of the output (at most 500 characters)."""


Payload = AgentDecision | StateChange | SystemSignal | ModelCall | ToolRun
"""The oneof ``payload``: one of the five kinds."""

_ROLE_PATTERN = r"^[A-Za-z0-9_-]{1,64}\Z"  # \Z, not $: "a\n" is no role


class SwarmEvent(_Record, frozen=True, kw_only=True):
    """One event: envelope and payload (proto ``SwarmEvent``). Build with ``new_event``."""

    event_id: Annotated[str, proto(1, "string", min_length=1, max_length=256)]
    """Unique, time-ordered id (UUIDv7); the journal deduplicates on it."""
    timestamp_ns: Annotated[int, proto(2, "fixed64")]
    """Creation time, nanoseconds since the Unix epoch."""
    trace_id: Annotated[str, proto(3, "string")] = ""
    """OpenTelemetry trace id (32 lowercase hex digits) or empty."""
    span_id: Annotated[str, proto(4, "string")] = ""
    """OpenTelemetry span id (16 lowercase hex digits) or empty."""
    agent_role: Annotated[str, proto(5, "string", pattern=_ROLE_PATTERN)]
    """The emitting agent's role: a subject token, ``[A-Za-z0-9_-]{1,64}``."""
    agent_id: Annotated[str, proto(6, "string")]
    """The emitting agent's id (actor path, virtual key, name)."""
    schema_version: Annotated[int, proto(7, "uint32")] = SCHEMA_VERSION
    """Schema version the event was written with."""
    sequence: Annotated[int, proto(8, "uint64")]
    """Per-agent sequence, 1 for an agent's first event, +1 for each next one."""
    causation_id: Annotated[str, proto(9, "string")] = ""
    """Id of the event that caused this one, or empty."""
    payload: Annotated[
        Payload,
        oneof(
            "payload",
            decision=10,
            state_change=11,
            system_signal=12,
            model_call=13,
            tool_run=14,
        ),
    ]
    """What happened."""
    run_id: Annotated[str, proto(15, "string", max_length=256)] = ""
    """The run the event belongs to, or empty (version 2; left out of the bytes when empty)."""


# --- codec ------------------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SwarmEvent)
_VERSION_POSITION = 6  # schema_version's index in the envelope array

#: Older schema versions the current Structs cannot read as they are (a layout changed rather
#: than grew): version -> a decoder of their bytes returning the event in the current Structs.
#: Every other version from 1 to ``SCHEMA_VERSION`` decodes directly.
_UPGRADES: dict[int, Callable[[bytes], SwarmEvent]] = {}

#: What a version added, and so an event of an earlier version cannot carry: payload kinds,
#: and envelope fields with their defaults.
_INTRODUCED_KINDS: dict[type, int] = {ModelCall: 2, ToolRun: 2}
_INTRODUCED_FIELDS: dict[str, tuple[int, object]] = {"run_id": (2, "")}

_V1_HEAD = b"\x9a"  # fixarray of 10: the envelope without run_id
_EMPTY_RUN_TAIL = b"\xa0"  # the empty string run_id, last in the array


def encode_event(event: SwarmEvent) -> bytes:
    """The msgpack bytes of an event (what goes on the wire and into a journal).

    An empty ``run_id`` (the last envelope field, version 2) is left out, so the envelope is
    then the 10-element array every version reads, and a version-1 event encodes to the
    bytes it was read from. The envelope's array header is one byte (fewer than 16 fields).
    """
    data = _encoder.encode(event)
    if not event.run_id:
        return _V1_HEAD + data[1:-1]
    return data


def _version_error(version: int) -> SchemaVersionError:
    return SchemaVersionError(
        f"event has schema version {version}; this build reads up to {SCHEMA_VERSION}",
        version=version,
        supported=SCHEMA_VERSION,
    )


def _older(event: SwarmEvent, data: bytes | None) -> SwarmEvent:
    """An event whose version is not the current one: refused, upgraded or taken as it is."""
    version = event.schema_version
    if version > SCHEMA_VERSION:
        raise _version_error(version)
    if version < 1:
        raise EventDecodeError(f"event has schema version {version}, which never existed")
    if data is not None and version in _UPGRADES:
        return _UPGRADES[version](data)
    since = _INTRODUCED_KINDS.get(type(event.payload), 1)
    if version < since:
        raise EventDecodeError(
            f"event of schema version {version} carries a {type(event.payload).__name__}, "
            f"which version {since} introduced"
        )
    for name, (since, default) in _INTRODUCED_FIELDS.items():
        if version < since and getattr(event, name) != default:
            raise EventDecodeError(
                f"event of schema version {version} sets {name}, which version {since} introduced"
            )
    return event


def decode_event(data: bytes | bytearray | memoryview) -> SwarmEvent:
    """The event encoded in ``data``, whole and validated.

    Raises ``EventDecodeError`` for anything else (malformed or truncated bytes, an unknown
    payload tag, a wrong type, a missing field, a field its version does not have, a value
    out of range, nesting deeper than the interpreter's recursion limit) and its subclass
    ``SchemaVersionError`` for an event written by a newer schema version.
    """
    try:
        event = _decoder.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:  # msgspec recurses per nesting level
        version = _peek_version(data)
        if version is not None and version > SCHEMA_VERSION:
            raise _version_error(version) from exc
        if version in _UPGRADES:
            return _UPGRADES[version](bytes(data))
        raise EventDecodeError(f"not a valid event: {exc}") from exc
    if event.schema_version != SCHEMA_VERSION:
        return _older(event, bytes(data))
    return event


def _peek_version(data: bytes | bytearray | memoryview) -> int | None:
    """The schema version of bytes the current decoder refused, if they carry one.

    Read without decoding the rest: the bytes are untrusted, and a decoder recursing into
    them fails on deep nesting (``RecursionError``). Every version has scalars before the
    version, so only scalars are stepped over; anything else is no event of any version.
    """
    view = memoryview(data).cast("B")
    try:
        head = view[0]
        if 0x90 <= head <= 0x9F:  # fixarray
            count, pos = head & 0x0F, 1
        elif head in (0xDC, 0xDD):  # array16, array32
            width = 2 if head == 0xDC else 4
            count, pos = int.from_bytes(view[1 : 1 + width], "big"), 1 + width
        else:
            return None
        if count <= _VERSION_POSITION:
            return None
        for _ in range(_VERSION_POSITION):
            pos = _after_scalar(view, pos)
        version = msgspec.msgpack.decode(view[pos : _after_scalar(view, pos)])
    except (IndexError, ValueError, msgspec.DecodeError):  # truncated, or not a scalar there
        return None
    return version if type(version) is int else None


# msgpack scalars: head byte -> bytes after it (fixed size), or -> size of their length prefix.
_FIXED_SCALARS = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4}
_FIXED_SCALARS |= {0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_SIZED_SCALARS = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}


def _after_scalar(view: memoryview, pos: int) -> int:
    """The position after the msgpack scalar at ``pos``; ``ValueError`` for anything else."""
    head = view[pos]
    if head <= 0x7F or head >= 0xE0:  # fixint
        return pos + 1
    if 0xA0 <= head <= 0xBF:  # fixstr
        return pos + 1 + (head & 0x1F)
    size = _FIXED_SCALARS.get(head)
    if size is not None:
        return pos + 1 + size
    width = _SIZED_SCALARS.get(head)
    if width is None:
        raise ValueError(f"no scalar at {pos}")
    return pos + 1 + width + int.from_bytes(view[pos + 1 : pos + 1 + width], "big")


def to_proto_dict(event: SwarmEvent) -> dict[str, Any]:
    """The event as the dict ``google.protobuf.json_format.MessageToDict`` makes of it."""
    return _protomap.to_proto_dict(event)


def from_proto_dict(data: Mapping[str, Any]) -> SwarmEvent:
    """An event from a ProtoJSON dict (``MessageToDict`` output or ``ParseDict`` input).

    Validated as ``decode_event`` validates bytes, with the same errors.
    """
    event = _protomap.from_proto_dict(data, SwarmEvent)
    if event.schema_version != SCHEMA_VERSION:
        return _older(event, None)
    return event


# --- subjects ---------------------------------------------------------------------------------

_ROLE = re.compile(_ROLE_PATTERN)
_KIND_INDEX: dict[type, int] = {
    AgentDecision: 0,
    StateChange: 1,
    SystemSignal: 2,
    ModelCall: 3,
    ToolRun: 4,
}
_subjects: dict[str, tuple[str, ...]] = {}


def check_role(role: str) -> str:
    """``role`` if it is a valid role token (``[A-Za-z0-9_-]{1,64}``); else ``SubjectError``."""
    if not isinstance(role, str) or not _ROLE.match(role):
        raise SubjectError(
            f"invalid agent role {role!r}: use 1-64 letters, digits, '_' or '-'", token=str(role)
        )
    return role


def subject_for(event: SwarmEvent) -> str:
    """The NATS subject of an event: ``swarm.events.<agent_role>.<kind>``.

    Raises ``SubjectError`` if the role is not a valid token. Subjects are cached per role, so
    this costs two dict lookups once a role has been seen.
    """
    subjects = _subjects.get(event.agent_role)
    if subjects is None:
        role = check_role(event.agent_role)
        if len(_subjects) >= 4096:  # roles are few; do not grow without bound if they are not
            _subjects.clear()
        subjects = _subjects[role] = tuple(f"{SUBJECT_PREFIX}.{role}.{kind}" for kind in KINDS)
    return subjects[_KIND_INDEX[type(event.payload)]]


# --- ids, time, builders ----------------------------------------------------------------------


def now_ns() -> int:
    """The current time in nanoseconds since the Unix epoch (an event timestamp)."""
    return time.time_ns()


class _IdState:
    """Per-process id state: a random 26-bit node and a 48-bit counter with a random start."""

    ms = -1
    prefix = ""
    node = ""
    next_counter: Callable[[], int] = itertools.count().__next__

    @classmethod
    def reseed(cls) -> None:
        rand = int.from_bytes(os.urandom(10), "big")
        cls.node = f"-7{(rand >> 14) & 0xFFF:03x}-{0x8000 | (rand & 0x3FFF):04x}-"
        cls.next_counter = itertools.count((rand >> 26) & ((1 << 47) - 1)).__next__
        cls.ms = -1


_IdState.reseed()
os.register_at_fork(after_in_child=_IdState.reseed)  # a forked child must not repeat ids


def new_event_id(timestamp_ns: int | None = None) -> str:
    """A new event id: a UUIDv7 string, time-ordered by millisecond, unique without coordination.

    Layout (RFC 9562): 48-bit Unix milliseconds, version 7, a 26-bit random node chosen once
    per process (again in a forked child) in ``rand_a`` and the top of ``rand_b``, and a 48-bit
    counter with a random start in the last group. Ids from one process sort in creation order;
    ids of different processes are unique with 73 random bits. About 0.4 µs.
    """
    ms = (time.time_ns() if timestamp_ns is None else timestamp_ns) // 1_000_000
    ids = _IdState
    if ms != ids.ms:
        ids.ms = ms
        ids.prefix = f"{(ms >> 16) & 0xFFFFFFFF:08x}-{ms & 0xFFFF:04x}{ids.node}"
    return f"{ids.prefix}{ids.next_counter():012x}"


def state_hash(event: SwarmEvent) -> bytes:
    """The hash a ``StateChange`` event must carry: SHA-256(prev_hash || canonical bytes).

    The canonical bytes are the protobuf binary encoding of the whole event with
    ``payload.hash`` empty, fields in number order (``_protomap.encode_proto``), so any
    protobuf implementation can recompute it. Raises ``TypeError`` for another payload.
    """
    change = event.payload
    if type(change) is not StateChange:
        raise TypeError(f"only state changes are hashed, not {type(change).__name__}")
    # state_change_bytes(event) == encode_proto(event with an empty hash), written in one pass
    # by the Rust core (verifying a journal spent 85% of its time in the generic encoder).
    return hashlib.sha256(change.prev_hash + state_change_bytes(event)).digest()


def new_event(
    payload: Payload,
    *,
    agent_role: str,
    agent_id: str,
    sequence: int,
    causation_id: str = "",
    trace_id: str = "",
    span_id: str = "",
    event_id: str | None = None,
    timestamp_ns: int | None = None,
    run_id: str = "",
) -> SwarmEvent:
    """A new event around ``payload``, with a fresh id and the current time unless given.

    A ``StateChange`` is sealed: its ``hash`` is computed here from everything else, so pass
    ``prev_hash`` (the agent's previous change's ``hash``, empty for its first) and leave
    ``hash`` empty. The role is checked (``SubjectError``) so the event can be published.
    ``run_id`` names the run the event belongs to (empty: none).
    """
    if agent_role not in _subjects:
        check_role(agent_role)
    ts = time.time_ns() if timestamp_ns is None else timestamp_ns
    event = SwarmEvent(
        event_id=new_event_id(ts) if event_id is None else event_id,
        timestamp_ns=ts,
        trace_id=trace_id,
        span_id=span_id,
        agent_role=agent_role,
        agent_id=agent_id,
        sequence=sequence,
        causation_id=causation_id,
        payload=payload,
        run_id=run_id,
    )
    if type(payload) is StateChange:
        sealed = msgspec.structs.replace(payload, hash=state_hash(event))
        event = msgspec.structs.replace(event, payload=sealed)
    return event
