"""Untrusted bytes into every decoder: only the documented, typed errors ever come out.

Three decoders read bytes that anyone on the NATS server can write: events (``decode_event``,
which the JetStream journal's ``read`` and durable consumers run on every stored message),
and the transport's frames (``decode_frame``, then envelope by envelope, then each body by
``Codec.decode_body``). Whatever they are given, they return a value or raise
``EventDecodeError`` (its subclass ``SchemaVersionError``) or ``WireFormatError``: never
``RecursionError`` (msgspec recurses once per nesting level, and a 1 KB message nests 1,000
deep), never anything else. The fuzz tests below check that with Hypothesis; the plain tests
pin the cases the reliability probe found (issue 11, items 4 and 10).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from event_strategies import events
from swarm_actors._core._contract import Ref
from swarm_actors._nats._wire import (
    AskOut,
    Codec,
    ReplyOut,
    TellOut,
    decode_frame,
    decode_frame_leniently,
    frame,
    register_message_type,
    salvage_answer,
    salvage_ask,
    split_array,
    type_name,
    valid_reply,
)
from swarm_actors.errors import EventDecodeError, SchemaVersionError, WireFormatError
from swarm_actors.events import (
    SCHEMA_VERSION,
    SignalKind,
    SwarmEvent,
    SystemSignal,
    decode_event,
    encode_event,
    new_event,
)

DEEP = b"\x91" * 1000 + b"\xc0"
"""A 1 KB msgpack value nested 1,000 deep (``[[[...[None]...]]]``): the probe's input."""

DEEPER = b"\x91" * 100_000 + b"\xc0"


def deep(levels: int) -> bytes:
    return b"\x91" * levels + b"\xc0"


def an_event() -> SwarmEvent:
    return new_event(
        SystemSignal(kind=SignalKind.STARTED), agent_role="r", agent_id="a", sequence=1
    )


def fields_of(event: SwarmEvent) -> list[Any]:
    """The event as msgpack values (an array: envelope fields, then the payload's array)."""
    values: list[Any] = msgspec.msgpack.decode(encode_event(event))
    return values


# --- events: item 4 (deep nesting) ---------------------------------------------------------


@pytest.mark.parametrize("data", [DEEP, DEEPER], ids=["1k", "100k"])
def test_a_deeply_nested_message_is_not_an_event(data: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(data)


@pytest.mark.parametrize("position", range(10))
def test_deep_nesting_in_any_field_of_an_event_is_a_decode_error(position: int) -> None:
    values = fields_of(an_event())
    values[position] = msgspec.Raw(DEEP)
    data = msgspec.msgpack.encode(values)
    with pytest.raises(EventDecodeError):
        decode_event(data)
    with pytest.raises(EventDecodeError):  # bytearray and memoryview are read the same way
        decode_event(memoryview(bytearray(data)))


def test_deep_nesting_after_a_newer_version_is_still_a_version_error() -> None:
    values = fields_of(an_event())
    values[6] = SCHEMA_VERSION + 1
    data = msgspec.msgpack.encode([*values, msgspec.Raw(DEEPER)])
    with pytest.raises(SchemaVersionError) as caught:
        decode_event(data)
    assert caught.value.version == SCHEMA_VERSION + 1


# --- events: item 10 (fields a version does not define) -------------------------------------


def test_a_trailing_field_of_the_current_version_is_refused() -> None:
    event = an_event()
    values = fields_of(event)
    assert decode_event(msgspec.msgpack.encode(values)) == event
    assert len(values) == 10  # an empty run_id (the 11th field, version 2) is left out
    with pytest.raises(EventDecodeError, match="at most length 11"):
        decode_event(msgspec.msgpack.encode([*values, "run", "unknown"]))
    with pytest.raises(EventDecodeError):
        decode_event(msgspec.msgpack.encode([*values, msgspec.Raw(DEEP)]))


def test_a_trailing_field_in_the_payload_is_refused() -> None:
    values = fields_of(an_event())
    values[9] = [*values[9], 42]  # the SystemSignal with one field more than it has
    with pytest.raises(EventDecodeError, match="at most length"):
        decode_event(msgspec.msgpack.encode(values))


def test_a_newer_version_with_more_fields_is_a_version_error_not_a_silent_drop() -> None:
    values = fields_of(an_event())
    values[6] = SCHEMA_VERSION + 1
    with pytest.raises(SchemaVersionError):
        decode_event(msgspec.msgpack.encode([*values, "a field of the next version"]))


# --- fuzz: events ---------------------------------------------------------------------------


def check_event_decoder(data: bytes) -> None:
    """``decode_event`` returns an event or raises ``EventDecodeError``, nothing else."""
    try:
        event = decode_event(data)
    except EventDecodeError:
        return
    assert isinstance(event, SwarmEvent)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """Valid bytes, then one hostile change: cut, flipped, spliced, or nested deep somewhere."""
    data = draw(valid)
    at = draw(st.integers(0, len(data)))
    change = draw(st.sampled_from(["cut", "flip", "insert", "deep", "append"]))
    if change == "cut":
        return data[:at]
    if change == "flip" and at < len(data):
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if change == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    levels = draw(st.sampled_from([10, 999, 1000, 5000]))
    if change == "deep":
        return data[:at] + deep(levels) + data[at:]
    # A trailing value: one more array item (the header counts it), deep or not. The items
    # are split without recursion: a valid frame may hold a deep body already.
    try:
        items = [msgspec.Raw(item) for item in split_array(data)]
    except WireFormatError:  # not an array (mutated before): append the bytes instead
        return data + deep(levels)
    return msgspec.msgpack.encode([*items, msgspec.Raw(deep(levels))])


event_bytes = events().map(encode_event)
msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=20,
).map(msgspec.msgpack.encode)


@settings(max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=200),
        mutated(event_bytes),
        msgpack_values,
        st.integers(0, 20_000).map(deep),
    )
)
def test_fuzz_the_event_decoder_raises_only_event_decode_errors(data: bytes) -> None:
    check_event_decoder(data)


# --- fuzz: wire frames ----------------------------------------------------------------------


class Shape(msgspec.Struct):
    """A registered message type with a field that holds anything (nesting included)."""

    n: int
    anything: Any = None


register_message_type(Shape)
BODY_TYPES = ["", type_name(Shape), "helpers:Add", "no.such:Type"]


class _Node:
    node_id = "fuzz"

    def virtual_address(self, agent: int) -> tuple[str, str] | None:
        return None


def _ref_from_wire(*spec: Any) -> Any:
    return spec  # the fuzz only checks that decoding ends in a value or a WireFormatError


CODEC = Codec(_Node(), _ref_from_wire, Ref)


def check_frame(data: bytes) -> None:
    """Every stage a node runs on a frame ends in values or ``WireFormatError`` only."""
    try:
        envelopes: list[Any] = list(decode_frame(data))
    except WireFormatError:
        try:
            parts = decode_frame_leniently(data)
        except WireFormatError:
            return
        envelopes = []
        for part in parts:
            if isinstance(part, tuple):
                raw, error = part
                assert isinstance(error, WireFormatError)
                salvaged = salvage_ask(raw)
                if salvaged is not None:
                    assert valid_reply(salvaged[1])
                corr = salvage_answer(raw)
                assert corr is None or type(corr) is int
            else:
                envelopes.append(part)
    for envelope in envelopes:
        body = getattr(envelope, "body", None)
        if body is None:
            continue
        for name in {envelope.type, *BODY_TYPES}:
            with contextlib.suppress(WireFormatError):
                CODEC.decode_body(name, body)


bodies = st.one_of(
    msgpack_values.map(msgspec.Raw),
    st.integers(0, 5000).map(lambda n: msgspec.Raw(deep(n))),
    st.builds(Shape, st.integers(-(2**63), 2**63 - 1), msgpack_values.map(msgspec.Raw)),
)
replies = st.one_of(st.just("_INBOX.x.1"), st.text(max_size=8), st.just("x" * 300))
envelopes = st.one_of(
    st.builds(
        TellOut, st.text(max_size=8), st.sampled_from(BODY_TYPES), bodies, st.just(""), st.just("")
    ),
    st.builds(
        AskOut,
        st.text(max_size=8),
        st.sampled_from(BODY_TYPES),
        bodies,
        st.just(""),
        st.just(""),
        st.integers(0, 2**64 - 1),
        replies,
    ),
    st.builds(ReplyOut, st.integers(0, 2**64 - 1), st.sampled_from(BODY_TYPES), bodies),
)
frames = st.lists(envelopes, max_size=4).map(lambda items: frame(items, CODEC.encoder))


@settings(max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=200),
        frames,
        mutated(frames),
        st.integers(0, 20_000).map(lambda n: b"\xdd\x00\x00\x00\x01" + deep(n)),
    )
)
def test_fuzz_the_frame_decoders_raise_only_wire_format_errors(data: bytes) -> None:
    check_frame(data)


@pytest.mark.parametrize(
    ("subject", "valid"),
    [
        ("_INBOX.AbC123.7", True),
        ("swarm.node.n-1_x.nr.other", True),
        ("", False),
        ("a..b", False),
        (".a", False),
        ("a.", False),
        ("a.>", False),
        ("a.*.b", False),
        ("a b", False),
        ("a\r\nPUB x 1", False),
        ("caf\u00e9", False),
        ("x" * 256, True),
        ("x" * 257, False),
    ],
)
def test_reply_subjects_a_node_answers_on(subject: str, valid: bool) -> None:
    assert valid_reply(subject) is valid
