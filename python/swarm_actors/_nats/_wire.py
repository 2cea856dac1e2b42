"""The transport's wire format: msgpack frames of tagged envelopes.

A *frame* is one NATS message: a msgpack array of envelopes (always written with a 5-byte
``array32`` header, so the count can be filled in when the frame is flushed). Envelopes are
``array_like`` msgspec Structs tagged by an int (the first array element):

* ``Tell(target, type, body, trace, sender[, hops[, origin]])``: a tell to the actor named
  ``target``; ``hops`` counts how often nodes forwarded it to a placed actor's new owner;
* ``Ask(target, type, body, trace, sender, corr, reply[, origin])``: an ask; the answer goes to
  the ``reply`` subject with the same ``corr``;
* ``Reply(corr, type, body)`` and ``Failure(corr, error, message, actor)``: the answers;
* ``Publish(origin, type, body, trace, sender)``: a message published on a topic, in frames
  of their own on the topic's subject (``swarm.topic.<topic>``, see ``_topics``), never on a
  node's; ``origin`` is the publishing node's id.

``body`` is the msgpack of the user's message, decoded only once its ``type`` is known:
``""`` for plain msgpack values (``str``, ``int``, ``float``, ``bool``, ``None``, ``bytes``,
``list``, ``dict``), otherwise ``module:qualname`` of a class in the registry. The registry
holds every class an ``Actor`` subclass's ``@handler`` accepts or is annotated to return
(collected as the class is defined), ``tuple`` / ``set`` / ``frozenset``, and whatever
``register_message_type`` was given. A body is never decoded into anything else: an unknown
type, a wrong shape, truncated or garbage bytes raise ``WireFormatError``, never return a
half-built message. Containers arrive as plain values: a ``list[Point]`` reply comes back as a
list of whatever a ``Point`` encodes to (wrap such results in a Struct).

Actor refs inside messages travel as msgpack extension ``1`` holding ``[node, name, path,
role, classes]``, which each ref gives itself (``__swarm_wire__``, the ``Ref`` contract); the
receiving side turns them back into refs (``Codec``'s hooks).

``trace`` is a W3C ``traceparent`` (``""`` when the sender's span is not sampled) and ``sender``
the sending actor's path (``""`` outside actors), for logs and dead letters. ``origin`` is who
the receiving handler's ``self.sender`` is: the sending actor, or the ``reply_to`` ref it gave,
as a ref extension like the refs in messages (nil, or left out by older nodes: nobody).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, get_origin

import msgspec
import msgspec.inspect

from swarm_actors._core._messages import (
    TYPE_NAMES,
    message_type,
    register_message_type,
    type_name,
)
from swarm_actors._exceptions import (
    ActorError,
    NoSuchActorError,
    RemoteError,
    WireFormatError,
)

if TYPE_CHECKING:
    from swarm_actors._core._contract import WireNode

__all__ = [
    "NO_SUCH_ACTOR",
    "POOL_NODE",
    "REF_EXT",
    "STOP",
    "TYPE_NAMES",
    "VIRTUAL_NODE",
    "Ask",
    "AskOut",
    "Codec",
    "Failure",
    "NoSuchActorError",
    "Publish",
    "PublishOut",
    "Reply",
    "ReplyOut",
    "Tell",
    "TellOut",
    "decode_publications",
    "describe_exception",
    "rebuild_exception",
    "register_message_type",
    "reply_subject",
    "split_array",
    "type_name",
    "valid_reply",
]

T = TypeVar("T")

REF_EXT = 1
"""msgpack extension code of an actor ref."""

FRAME_HEADER = 5
"""Bytes reserved at the start of a frame buffer for its ``array32`` header."""

NO_SUCH_ACTOR = "swarm:no-such-actor"
"""``Failure.error`` of an ask whose target is not running on the receiving node."""

STOP = "swarm:stop"
"""Wire type of the control ask that stops an actor (``RemoteRef.stop``)."""

VIRTUAL_NODE = "~"
"""The node of a ref to a placed virtual actor on the wire (its name is the virtual target)."""

POOL_NODE = "*"
"""The node of a ref to a named pool on the wire (its name is the pool's name)."""


MAX_REPLY_SUBJECT = 256
"""The longest reply subject (characters) a node answers on.

The node's own subjects and nats-py's inboxes are far shorter. A longer one is refused because
the server closes a connection whose ``PUB`` line exceeds its ``max_control_line`` (4 KiB by
default), and nats-py then closes for good: one ask with a 5 KB reply subject would otherwise
cut the node off.
"""

# Tokens of printable ASCII other than ".", "*" and ">": no wildcard, no empty token, no space.
_REPLY = re.compile(r"[!-)+-\-/-=?-~]+(?:\.[!-)+-\-/-=?-~]+)*")


def valid_reply(subject: str) -> bool:
    """Whether a node may publish an answer to ``subject`` (a reply subject from the wire).

    Printable ASCII tokens without wildcards, at most ``MAX_REPLY_SUBJECT`` characters. An
    answer published anywhere else would be refused by the server, or, for a subject longer
    than its control line, cost the node its connection.
    """
    if subject in _GOOD_REPLIES:  # nodes ask from a few subjects: a set lookup per remote ask
        return True
    if len(subject) > MAX_REPLY_SUBJECT or _REPLY.fullmatch(subject) is None:
        return False
    if len(_GOOD_REPLIES) >= 4096:  # bounded, whoever chooses the subjects
        _GOOD_REPLIES.clear()
    _GOOD_REPLIES.add(subject)
    return True


_GOOD_REPLIES: set[str] = set()


def reply_subject(raw: bytes) -> str | None:
    """The reply subject of a NATS message as a ``str``, if a node may answer on it."""
    if len(raw) > MAX_REPLY_SUBJECT:
        return None
    try:
        subject = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return subject if _REPLY.fullmatch(subject) is not None else None


class Tell(msgspec.Struct, array_like=True, tag=0, tag_field="k", frozen=True):
    """A tell to the actor named ``target`` (as decoded: ``body`` still raw)."""

    target: str
    type: str
    body: msgspec.Raw
    trace: str
    sender: str
    hops: int = 0
    origin: msgspec.msgpack.Ext | None = None


class Ask(msgspec.Struct, array_like=True, tag=1, tag_field="k", frozen=True):
    """An ask; the answer goes to ``reply`` with ``corr`` (as decoded: ``body`` still raw)."""

    target: str
    type: str
    body: msgspec.Raw
    trace: str
    sender: str
    corr: int
    reply: str
    origin: msgspec.msgpack.Ext | None = None


class Reply(msgspec.Struct, array_like=True, tag=2, tag_field="k", frozen=True):
    """The result of the ask ``corr`` (as decoded: ``body`` still raw)."""

    corr: int
    type: str
    body: msgspec.Raw


class Failure(msgspec.Struct, array_like=True, tag=3, tag_field="k", frozen=True):
    """The ask ``corr`` raised ``error`` (a qualified type name) with ``message``."""

    corr: int
    error: str
    message: str
    actor: str


# The encoding side: the same layouts with the message itself as the body, so one encoder call
# writes a whole envelope (no intermediate bytes for the body).


class TellOut(msgspec.Struct, array_like=True, tag=0, tag_field="k"):
    """``Tell`` as written."""

    target: str
    type: str
    body: Any
    trace: str
    sender: str
    hops: int = 0
    origin: Any = None  # a ref (encoded by the codec's hook) or None


class AskOut(msgspec.Struct, array_like=True, tag=1, tag_field="k"):
    """``Ask`` as written."""

    target: str
    type: str
    body: Any
    trace: str
    sender: str
    corr: int
    reply: str
    origin: Any = None


class ReplyOut(msgspec.Struct, array_like=True, tag=2, tag_field="k"):
    """``Reply`` as written."""

    corr: int
    type: str
    body: Any


class Publish(msgspec.Struct, array_like=True, tag=4, tag_field="k", frozen=True):
    """A message published on a topic by node ``origin`` (as decoded: ``body`` still raw)."""

    origin: str
    type: str
    body: msgspec.Raw
    trace: str
    sender: str


class PublishOut(msgspec.Struct, array_like=True, tag=4, tag_field="k"):
    """``Publish`` as written."""

    origin: str
    type: str
    body: Any
    trace: str
    sender: str


Envelope = Tell | Ask | Reply | Failure

_FRAME = msgspec.msgpack.Decoder(list[Envelope])
_ENVELOPE = msgspec.msgpack.Decoder(Envelope)

# --- errors across the wire -----------------------------------------------------------------


def describe_exception(exc: BaseException) -> tuple[str, str, str]:
    """``(qualified type name, message, actor path)`` of an exception, for a ``Failure``."""
    if isinstance(exc, RemoteError):  # passed on from a further node: keep the original
        return exc.remote_type, exc.remote_message, ""
    cls = type(exc)
    actor = exc.actor if isinstance(exc, ActorError) else ""
    return f"{cls.__module__}.{cls.__qualname__}", str(exc), actor


def rebuild_exception(error: str, message: str, actor: str) -> BaseException:
    """The exception an asker gets for a ``Failure``.

    swarm-actors' actor errors (``ActorDeadError``, ``UnhandledMessageError``, ...) and
    ``WireFormatError`` are rebuilt as their own types; everything else becomes
    ``RemoteError(remote_type, remote_message)``.
    """
    if error.startswith("swarm_actors."):
        exceptions = importlib.import_module("swarm_actors._exceptions")
        cls = getattr(exceptions, error.rpartition(".")[2], None)
        if isinstance(cls, type) and issubclass(cls, ActorError):
            try:
                return cls(message, actor=actor)
            except TypeError:  # a constructor with other required arguments
                pass
        elif cls is WireFormatError:
            return WireFormatError(message)
    return RemoteError(error, message)


# --- the per-node codec ---------------------------------------------------------------------

RefFromWire = Callable[[str, str, str, str, tuple[str, ...]], Any]


def _is_ref(obj: Any) -> bool:
    return hasattr(type(obj), "__swarm_wire__")


class Codec:
    """Encodes and decodes frames for one node (refs are node-relative, hence one per node).

    A ref in a message is whatever has ``__swarm_wire__(node)`` (the ``Ref`` contract): it
    gives ``(node, name, path, role, classes)``, encoded on ``node``; ``ref_from_wire(...)``
    builds the ref the receiving code gets. A message field annotated with ``ref_protocol``
    (``Ref``) accepts any kind of ref; one annotated with a ref class, only that class.
    """

    __slots__ = ("_any", "_ext_hook", "_ref_from", "_ref_protocol", "decoders", "encoder")

    def __init__(self, node: WireNode, ref_from_wire: RefFromWire, ref_protocol: type):
        self._ref_from = ref_from_wire
        self._ref_protocol = ref_protocol
        ref_encoder = msgspec.msgpack.Encoder()

        def enc_hook(obj: Any) -> Any:
            to_wire = getattr(type(obj), "__swarm_wire__", None)
            if to_wire is None:
                raise TypeError(
                    f"{type(obj).__qualname__} cannot be sent to another process "
                    "(not msgpack-encodable and not an actor ref)"
                )
            return msgspec.msgpack.Ext(REF_EXT, ref_encoder.encode(to_wire(obj, node)))

        self.encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
        self._ext_hook = self._make_ext_hook()
        self._any: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(ext_hook=self._ext_hook)
        self.decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {"": self._any}
        """Decoders made so far, per wire type name (``decoder`` makes the others)."""

    def _make_ext_hook(self) -> Callable[[int, memoryview], Any]:
        spec_decoder = msgspec.msgpack.Decoder(tuple[str, str, str, str, tuple[str, ...]])
        ref_from = self._ref_from

        def ext_hook(code: int, data: memoryview) -> Any:
            if code != REF_EXT:
                raise ValueError(f"unknown msgpack extension {code}")
            return ref_from(*spec_decoder.decode(data))

        return ext_hook

    def _dec_hook(self, cls: type, obj: Any) -> Any:
        # A field annotated ``Ref[...]`` gets the ref the extension hook built, one annotated
        # with a ref class (``ActorRef[...]``) only a ref of that class.
        origin = get_origin(cls) or cls
        if _is_ref(obj) and (
            origin is self._ref_protocol or (isinstance(origin, type) and isinstance(obj, origin))
        ):
            return obj
        if cls is object:  # ``x: object`` holds anything, as msgspec reads it without a hook
            return obj
        # msgspec turns a TypeError raised here into its ValidationError (naming the field);
        # anything else (NotImplementedError included) would escape the decoder as it is.
        raise TypeError(f"expected {getattr(cls, '__qualname__', cls)}, got {type(obj).__name__}")

    def origin(self, ext: msgspec.msgpack.Ext) -> Any:
        """The ref an envelope's ``origin`` describes; ``WireFormatError`` if it describes none."""
        try:
            return self._ext_hook(ext.code, memoryview(ext.data))
        except WireFormatError:
            raise
        except Exception as exc:  # a wrong extension code, a malformed ref
            raise WireFormatError(f"bad sender ref: {exc}") from exc

    def decoder(self, name: str) -> msgspec.msgpack.Decoder[Any]:
        """The decoder of a wire type name; ``WireFormatError`` for a type not registered."""
        try:
            return self.decoders[name]
        except KeyError:
            pass
        cls = message_type(name)
        if cls is None:
            raise WireFormatError(f"unknown message type {name!r} (not registered here)")
        try:
            decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(
                cls, ext_hook=self._ext_hook, dec_hook=self._dec_hook
            )
        except TypeError as exc:
            raise WireFormatError(f"message type {name!r} cannot be decoded: {exc}") from None
        self.decoders[name] = decoder
        return decoder

    def decode_body(self, name: str, body: msgspec.Raw) -> Any:
        """The message a body holds, of the type ``name``; ``WireFormatError`` otherwise."""
        decoder = self.decoder(name)
        try:
            return decoder.decode(body)
        except Exception as exc:
            # DecodeError and ValidationError mostly; but a message class's __post_init__ may
            # raise anything, deep nesting raises RecursionError, and a body that cannot be
            # read is a bad message whatever the reason: an asker gets an answer, a tell
            # becomes a dead letter.
            raise self.body_error(name, exc) from exc

    @staticmethod
    def body_error(name: str, cause: Exception) -> WireFormatError:
        """The error for a body msgspec refused (``cause``) as a ``name``."""
        error = WireFormatError(f"body is not a valid {name or 'plain value'}: {cause}")
        error.__cause__ = cause
        return error


def decode_frame(data: bytes) -> list[Envelope]:
    """Every envelope of a frame; ``WireFormatError`` if any of them is malformed."""
    try:
        return _FRAME.decode(data)
    except msgspec.DecodeError as exc:
        raise WireFormatError(f"not a valid frame: {exc}") from exc
    except RecursionError as exc:  # msgspec recurses per nesting level, even to skip a Raw
        raise WireFormatError(f"not a valid frame: {exc}") from exc


_PUBLICATIONS = msgspec.msgpack.Decoder(list[Publish])


def decode_publications(data: bytes) -> list[Publish]:
    """Every envelope of a topic frame; ``WireFormatError`` if any of them is malformed."""
    try:
        return _PUBLICATIONS.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise WireFormatError(f"not a valid topic frame: {exc}") from exc


def decode_frame_leniently(data: bytes) -> list[Envelope | tuple[bytes, WireFormatError]]:
    """A frame envelope by envelope: each bad one as ``(its bytes, the error)``.

    Used after ``decode_frame`` failed, so that one bad envelope costs only itself. Raises
    ``WireFormatError`` when the bytes are not even a msgpack array. The frame is split
    without recursion (``split_array``), so an envelope nested deeper than the interpreter's
    stack costs only itself too.
    """
    out: list[Envelope | tuple[bytes, WireFormatError]] = []
    items, rest = _split(data)
    if rest is not None and (not items or rest[1].args[0].endswith("after the array")):
        raise rest[1]  # nothing could be delimited, or the frame's own bounds are wrong
    for raw in items:
        try:
            out.append(_ENVELOPE.decode(raw))
        except RecursionError as exc:
            envelope = _shallow(raw)  # only the body is deep: deliver it, its decode fails
            out.append(envelope if envelope is not None else (raw, _envelope_error(exc)))
        except msgspec.DecodeError as exc:
            out.append((raw, _envelope_error(exc)))
    if rest is not None:  # bytes past a point no envelope can be delimited from: one bad part
        out.append(rest)
    return out


def _envelope_error(cause: Exception) -> WireFormatError:
    error = WireFormatError(f"not a valid envelope: {cause}")
    error.__cause__ = cause
    return error


_BODY = 3
"""Index of ``body`` in the tells, asks and replies on the wire (after the kind tag)."""


def _shallow(raw: bytes) -> Envelope | None:
    """The envelope ``raw``, decoded with its body left raw and never recursed into.

    msgspec recurses even to skip a ``Raw`` field, so a body nested deeper than the stack
    fails the whole envelope. Decoded this way, the envelope still reaches its target, whose
    decoding of the body fails on its own: the asker gets an answer, a tell a dead letter
    with its sender.
    """
    try:
        items = split_array(raw)
        if len(items) <= _BODY:
            return None
        shallow = [msgspec.Raw(item) for item in items]
        shallow[_BODY] = msgspec.Raw(b"\xc0")
        envelope = _ENVELOPE.decode(msgspec.msgpack.encode(shallow))
    except (WireFormatError, msgspec.DecodeError, RecursionError):
        return None
    if not hasattr(envelope, "body"):
        return None
    return msgspec.structs.replace(envelope, body=msgspec.Raw(items[_BODY]))


def salvage_ask(raw: bytes) -> tuple[int, str, str] | None:
    """``(corr, reply, target)`` of a malformed envelope that still looks like an ask.

    Only with a reply subject a node may answer on (``valid_reply``): else it is no ask.
    """
    try:
        items = split_array(raw)
    except WireFormatError:
        return None
    if len(items) < 8:
        return None
    kind, target, corr, reply = (_scalar(items[i]) for i in (0, 1, 6, 7))
    if kind == 1 and type(corr) is int and isinstance(reply, str) and valid_reply(reply):
        return corr, reply, target if isinstance(target, str) else ""
    return None


def salvage_answer(raw: bytes) -> int | None:
    """The ``corr`` of a malformed envelope that still looks like a ``Reply`` or ``Failure``."""
    try:
        items = split_array(raw)
    except WireFormatError:
        return None
    if len(items) < 2:
        return None
    kind, corr = _scalar(items[0]), _scalar(items[1])
    return corr if kind in (2, 3) and type(corr) is int else None


def _scalar(item: bytes) -> object:
    """The value of one encoded scalar (``None`` for a container: never decoded)."""
    if not item or 0x80 <= item[0] <= 0x9F or 0xDC <= item[0] <= 0xDF:
        return None
    try:
        return msgspec.msgpack.decode(item)
    except msgspec.DecodeError:
        return None


# The length of each msgpack header byte's fixed-size formats: (bytes after the type byte).
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED |= {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
# Formats with a length prefix: (size of the length, extra bytes after it: an ext's type).
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)}
_SIZED |= {0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0)}
# Containers: (size of the count, values per entry).
_CONTAINERS = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}


def split_array(data: bytes) -> list[bytes]:
    """The encoded items of a msgpack array, found without recursion.

    msgspec (and any recursive decoder) fails on nesting deeper than the interpreter's stack,
    even to skip a value; this walks the bytes with a counter instead, so a hostile message
    nested a million levels deep is one bad item, not a lost frame. ``WireFormatError`` when
    ``data`` is not exactly one msgpack array.
    """
    items, rest = _split(data)
    if rest is not None:
        raise rest[1]
    return items


def _split(data: bytes) -> tuple[list[bytes], tuple[bytes, WireFormatError] | None]:
    """The items of the array ``data`` up to the first that cannot be delimited, and the rest.

    ``WireFormatError`` when ``data`` does not even start as a msgpack array.
    """
    view = memoryview(data)
    size = len(view)
    if size == 0:
        raise WireFormatError("not a valid frame: empty")
    count, pos = _container(view, 0, size)
    if count is None:
        raise WireFormatError("not a valid frame: not a msgpack array")
    items: list[bytes] = []
    for _ in range(count):
        try:
            end = _skip(view, pos, size)
        except WireFormatError as exc:
            return items, (bytes(view[pos:]), exc)
        items.append(bytes(view[pos:end]))
        pos = end
    if pos != size:
        error = WireFormatError(f"not a valid frame: {size - pos} bytes after the array")
        return items, (bytes(view[pos:]), error)
    return items, None


def _container(view: memoryview, pos: int, size: int) -> tuple[int | None, int]:
    """``(number of values, position after the header)`` of an array at ``pos``, else None."""
    head = view[pos]
    if 0x90 <= head <= 0x9F:
        return head & 0x0F, pos + 1
    if head in (0xDC, 0xDD):
        width = _CONTAINERS[head][0]
        if pos + 1 + width > size:
            raise WireFormatError("not a valid frame: truncated")
        return int.from_bytes(view[pos + 1 : pos + 1 + width], "big"), pos + 1 + width
    return None, pos


def _skip(view: memoryview, pos: int, size: int) -> int:
    """The position after the one msgpack value at ``pos`` (containers included), iteratively."""
    pending = 1  # values still to skip: each container adds its own
    while pending:
        if pos >= size:
            raise WireFormatError("not a valid frame: truncated")
        head = view[pos]
        pending -= 1
        pos += 1
        if head <= 0x7F or head >= 0xE0:  # fixint
            continue
        if head <= 0x8F:  # fixmap
            pending += 2 * (head & 0x0F)
        elif head <= 0x9F:  # fixarray
            pending += head & 0x0F
        elif head <= 0xBF:  # fixstr
            pos += head & 0x1F
        elif head in _FIXED:
            pos += _FIXED[head]
        elif head in _SIZED:
            width, extra = _SIZED[head]
            if pos + width > size:
                raise WireFormatError("not a valid frame: truncated")
            pos += width + extra + int.from_bytes(view[pos : pos + width], "big")
        elif head in _CONTAINERS:
            width, per_entry = _CONTAINERS[head]
            if pos + width > size:
                raise WireFormatError("not a valid frame: truncated")
            pending += per_entry * int.from_bytes(view[pos : pos + width], "big")
            pos += width
        else:  # 0xC1: never used
            raise WireFormatError(f"not a valid frame: byte 0x{head:02x} at {pos - 1}")
    if pos > size:
        raise WireFormatError("not a valid frame: truncated")
    return pos


def frame(envelopes: list[Any], encoder: msgspec.msgpack.Encoder) -> bytes:
    """A whole frame of ``envelopes`` (for one-off frames; the transport builds its own)."""
    buffer = bytearray(FRAME_HEADER)
    for envelope in envelopes:
        encoder.encode_into(envelope, buffer, -1)
    seal(buffer, len(envelopes))
    return bytes(buffer)


def seal(buffer: bytearray, count: int) -> None:
    """Write the ``array32`` header of a frame of ``count`` envelopes into its first 5 bytes."""
    buffer[0] = 0xDD
    buffer[1:FRAME_HEADER] = count.to_bytes(4, "big")
