"""The transport's wire format: envelopes, the message-type registry, refs, errors, bad bytes."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    MailboxFullError,
    UnhandledMessageError,
    handler,
    register_message_type,
)
from swarm_actors._core._contract import Ref, RefForm, WireNode
from swarm_actors._nats._registry import key_name, name_key
from swarm_actors._nats._wire import (
    Ask,
    AskOut,
    Codec,
    Failure,
    Reply,
    ReplyOut,
    Tell,
    TellOut,
    decode_frame,
    decode_frame_leniently,
    describe_exception,
    frame,
    rebuild_exception,
    salvage_ask,
    split_array,
    type_name,
)
from swarm_actors.errors import RemoteError, WireFormatError


class Point(msgspec.Struct):
    x: int
    y: int


class Answer(msgspec.Struct):
    value: float


class Color(enum.Enum):
    RED = "red"


@dataclass
class Carrier:
    ref: Ref[Any]
    other: Ref[Any] | None = None


@dataclass
class LocalOnly:
    ref: ActorRef[Any]  # a ref class: only a ref of that class is accepted


class Geometry(Actor):
    @handler
    async def on_point(self, msg: Point | Carrier) -> Answer:
        return Answer(1.0)


class QuotaError(Exception):
    pass


class NotRegistered(msgspec.Struct):
    z: int


class FakeRef:
    """A stand-in for the transport's RemoteRef: a ref built from the wire."""

    __slots__ = ("spec",)

    def __init__(self, spec: RefForm) -> None:
        self.spec = spec

    path = "/fake"
    is_alive = True

    async def tell(self, message: Any, reply_to: Any = None) -> None:
        raise NotImplementedError

    def tell_nowait(self, message: Any, reply_to: Any = None) -> None:
        raise NotImplementedError

    async def ask(self, message: Any, *, timeout: Any = None) -> Any:
        raise NotImplementedError

    def __swarm_wire__(self, node: WireNode) -> RefForm:
        return self.spec


class FakeNode:
    node_id = "here"

    def virtual_address(self, agent: int) -> tuple[str, str] | None:
        return None


def make_codec() -> Codec:
    def from_wire(*spec: Any) -> FakeRef:
        return FakeRef(spec)

    return Codec(FakeNode(), from_wire, Ref)


def roundtrip(codec: Codec, envelopes: list[Any]) -> list[Any]:
    return decode_frame(frame(envelopes, codec.encoder))


def test_envelopes_round_trip_with_typed_bodies() -> None:
    codec = make_codec()
    out = [
        TellOut("counter", type_name(Point), Point(1, 2), "", "/sender"),
        AskOut("geo", type_name(Point), Point(3, 4), "00-ab-cd-01", "", 7, "swarm.node.me"),
        ReplyOut(7, type_name(Answer), Answer(2.5)),
        Failure(8, "builtins.KeyError", "'k'", "/geo"),
        TellOut("plain", "", {"a": [1, 2.5, "x", None, True, b"raw"]}, "", ""),
    ]
    tell, ask, reply, failure, plain = roundtrip(codec, out)
    assert isinstance(tell, Tell)
    assert (tell.target, tell.sender) == ("counter", "/sender")
    assert codec.decode_body(tell.type, tell.body) == Point(1, 2)
    assert isinstance(ask, Ask)
    assert (ask.corr, ask.reply, ask.trace) == (7, "swarm.node.me", "00-ab-cd-01")
    assert codec.decode_body(ask.type, ask.body) == Point(3, 4)
    assert isinstance(reply, Reply)
    assert codec.decode_body(reply.type, reply.body) == Answer(2.5)
    assert failure == out[3]
    assert isinstance(plain, Tell)
    assert codec.decode_body(plain.type, plain.body) == {"a": [1, 2.5, "x", None, True, b"raw"]}


def test_handler_types_are_registered_and_plain_types_need_no_name() -> None:
    codec = make_codec()
    for cls in (Point, Carrier, Answer):  # accepted (a union) and returned
        assert codec.decoder(type_name(cls)) is not None
    assert type_name(Point) == f"{__name__}:Point"
    assert {type_name(t) for t in (str, int, float, bool, type(None), bytes, list, dict)} == {""}
    assert codec.decode_body(type_name(tuple), msgspec.Raw(msgspec.msgpack.encode((1, "a")))) == (
        1,
        "a",
    )
    with pytest.raises(WireFormatError, match="unknown message type"):
        codec.decoder(type_name(NotRegistered))
    assert register_message_type(NotRegistered) is NotRegistered
    body = msgspec.msgpack.encode(NotRegistered(3))
    assert codec.decode_body(type_name(NotRegistered), msgspec.Raw(body)) == NotRegistered(3)
    assert register_message_type(Color) is Color
    assert codec.decode_body(type_name(Color), msgspec.Raw(b"\xa3red")) is Color.RED


def test_register_message_type_refuses_what_cannot_travel() -> None:
    class Opaque:
        def __init__(self, handle: object) -> None:
            self.handle = handle

    with pytest.raises(TypeError, match="cannot be sent between processes"):
        register_message_type(Opaque)
    with pytest.raises(TypeError, match="expects a class"):
        register_message_type(Point(1, 2))  # type: ignore[arg-type]


def test_bodies_of_the_wrong_shape_are_refused_whole() -> None:
    codec = make_codec()
    for bad in ({"x": 1}, {"x": "1", "y": 2}, [1, 2, 3], "point"):
        with pytest.raises(WireFormatError, match=re.escape(f"not a valid {type_name(Point)}")):
            codec.decode_body(type_name(Point), msgspec.Raw(msgspec.msgpack.encode(bad)))
    with pytest.raises(WireFormatError):
        codec.decode_body("", msgspec.Raw(b"\xc1"))  # 0xc1: never used in msgpack


def test_refs_travel_as_refs_in_typed_fields() -> None:
    codec = make_codec()
    spec = ("node-1", "worker-3", "/pool/worker-3", "worker", ("mod:Worker",))
    out = TellOut("geo", type_name(Carrier), Carrier(FakeRef(spec), None), "", "")
    [tell] = roundtrip(codec, [out])
    carrier = codec.decode_body(tell.type, tell.body)
    assert isinstance(carrier, Carrier)
    assert isinstance(carrier.ref, FakeRef)
    assert carrier.ref.spec == spec
    assert carrier.other is None
    [plain] = roundtrip(codec, [TellOut("x", "", [FakeRef(spec)], "", "")])  # untyped: too
    assert codec.decode_body(plain.type, plain.body)[0].spec == spec
    # A field annotated with a ref class refuses another kind of ref (and says which field).
    register_message_type(LocalOnly)
    local_only = LocalOnly(cast(Any, FakeRef(spec)))
    [local] = roundtrip(codec, [TellOut("geo", type_name(LocalOnly), local_only, "", "")])
    with pytest.raises(WireFormatError, match=r"expected ActorRef.*\$\.ref"):
        codec.decode_body(local.type, local.body)


def test_what_cannot_be_encoded_raises_type_error() -> None:
    codec = make_codec()
    with pytest.raises(TypeError, match="cannot be sent to another process"):
        frame([TellOut("x", "", object(), "", "")], codec.encoder)


def test_unknown_extensions_are_wire_format_errors() -> None:
    codec = make_codec()
    body = msgspec.msgpack.encode(msgspec.msgpack.Ext(9, b"?"))
    with pytest.raises(WireFormatError):
        codec.decode_body("", msgspec.Raw(body))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"garbage", b"\xdd\x00\x00\x00\x02\x94\x00", b"\x91\x95\x07", b"\x91\xc0"],
)
def test_garbage_and_truncated_frames_are_refused(data: bytes) -> None:
    with pytest.raises(WireFormatError, match="not a valid frame"):
        decode_frame(data)


def test_one_bad_envelope_costs_only_itself() -> None:
    codec = make_codec()
    good = codec.encoder.encode(TellOut("a", "", 1, "", ""))
    broken_ask = codec.encoder.encode([1, "geo", "t", b"", 99, "", 5, "reply.here"])  # trace: int
    wrong_tag = codec.encoder.encode([9, "x"])
    data = b"\x93" + good + broken_ask + wrong_tag
    with pytest.raises(WireFormatError):
        decode_frame(data)
    first, second, third = decode_frame_leniently(data)
    assert isinstance(first, Tell)
    assert isinstance(second, tuple)
    assert isinstance(second[1], WireFormatError)
    assert salvage_ask(second[0]) == (5, "reply.here", "geo")
    assert isinstance(third, tuple)
    assert salvage_ask(third[0]) is None
    with pytest.raises(WireFormatError):
        decode_frame_leniently(b"\xa3abc")  # not an array at all


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_build_a_half_message(data: bytes) -> None:
    try:
        envelopes = decode_frame(data)
    except WireFormatError:
        return
    assert all(isinstance(e, Tell | Ask | Reply | Failure) for e in envelopes)


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**64 - 1), max_size=20), st.text())
def test_typed_bodies_survive_any_values(values: list[int], text: str) -> None:
    codec = make_codec()
    [tell] = roundtrip(codec, [TellOut(text, "", values, text, text)])
    assert tell.target == text
    assert codec.decode_body(tell.type, tell.body) == values


def test_exceptions_cross_as_their_own_types_or_remote_errors() -> None:
    dead = rebuild_exception(*describe_exception(ActorDeadError("gone", actor="/a")))
    assert type(dead) is ActorDeadError
    assert (str(dead), dead.actor) == ("gone", "/a")
    unhandled = rebuild_exception(*describe_exception(UnhandledMessageError("no", actor="/b")))
    assert type(unhandled) is UnhandledMessageError
    full = rebuild_exception(*describe_exception(MailboxFullError("full", actor="/c")))
    assert type(full) is MailboxFullError
    wire = rebuild_exception(*describe_exception(WireFormatError("bad")))
    assert type(wire) is WireFormatError
    key = rebuild_exception(*describe_exception(KeyError("k")))
    assert isinstance(key, RemoteError)
    assert (key.remote_type, key.remote_message) == ("builtins.KeyError", "'k'")
    custom = rebuild_exception(*describe_exception(QuotaError("over")))
    assert isinstance(custom, RemoteError)
    assert (custom.remote_type, custom.remote_message) == (f"{__name__}.QuotaError", "over")
    # A RemoteError passed on keeps the original remote type.
    again = rebuild_exception(*describe_exception(key))
    assert isinstance(again, RemoteError)
    assert again.remote_type == "builtins.KeyError"
    assert isinstance(rebuild_exception("swarm_actors._exceptions.Nope", "x", ""), RemoteError)


@given(st.from_regex(r"[A-Za-z0-9_.:@+=-][A-Za-z0-9_.:@+=~-]{0,199}", fullmatch=True))
def test_name_keys_are_valid_kv_keys_and_reversible(name: str) -> None:
    key = name_key(name)
    assert re.fullmatch(r"[-_=A-Za-z0-9]+", key)
    assert key_name(key) == name


# --- splitting a frame without recursion --------------------------------------------------

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=300)
    | st.binary(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=10), inner, max_size=20)
    ),
    max_leaves=60,
)


@given(st.lists(msgpack_values, max_size=20))
def test_split_array_finds_each_item_as_msgspec_encodes_it(items: list[Any]) -> None:
    encoded = [msgspec.msgpack.encode(item) for item in items]
    assert split_array(msgspec.msgpack.encode(items)) == encoded
    # A frame as the transport writes it: an array32 header whatever the count.
    framed = b"\xdd" + len(items).to_bytes(4, "big") + b"".join(encoded)
    assert split_array(framed) == encoded


def test_split_array_walks_any_depth_and_refuses_what_is_not_one_array() -> None:
    deep = b"\x91" * 100_000 + b"\xc0"  # far deeper than any recursive decoder goes
    assert split_array(b"\x92" + deep + b"\x01") == [deep, b"\x01"]
    for bad, reason in [
        (b"", "empty"),
        (b"\x01", "not a msgpack array"),
        (b"\x92\x01", "truncated"),
        (b"\x91\xc1", "byte 0xc1"),
        (b"\x91\x01\x02", "1 bytes after the array"),
        (b"\x91\xdb\xff\xff\xff\xff", "truncated"),  # a str32 longer than the data
        (b"\x91\xdd\xff\xff\xff\xff", "truncated"),  # an array32 of 4 G items in 6 bytes
    ]:
        with pytest.raises(WireFormatError, match=reason):
            split_array(bad)
