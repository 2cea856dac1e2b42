"""The proto mapping of msgspec Structs, driven by per-field metadata: one source of truth.

Each field of an event Struct is annotated with its proto number (and, for scalars, its proto
type): ``event_id: Annotated[str, proto(1, "string")]``. A oneof is one Struct field whose type is
a tagged union, annotated with ``oneof("payload", decision=10, ...)``: member names and numbers;
each member Struct's tag is its number. From that metadata, and nothing else, this module derives:

* ``proto_fields(cls)``: the field table (name, number, proto type, label, oneof) that the drift
  test compares with the compiled ``.proto``;
* ``encode_proto(obj)``: the proto3 binary encoding, fields in number order, as protobuf's
  ``SerializeToString(deterministic=True)`` writes it (the state-change hash is taken over it);
* ``to_proto_dict(obj)`` / ``from_proto_dict(data, cls)``: the ProtoJSON dict form that
  ``google.protobuf.json_format.MessageToDict`` produces and ``ParseDict`` accepts (lowerCamelCase
  names, 64-bit integers as strings, bytes as base64, enums by name, defaults omitted).

Python enums are ``IntEnum``s whose members are the proto values without the ``UPPER_SNAKE``
prefix of the enum's name (``SignalKind.STARTED`` is ``SIGNAL_KIND_STARTED``); the proto's zero
value ``<PREFIX>_UNSPECIFIED`` has no Python member, so an unset enum never validates.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import math
import re
import struct
import typing
from collections.abc import Mapping
from typing import Annotated, Any, NamedTuple, TypeVar

import msgspec

from swarm_actors._exceptions import EventDecodeError

__all__ = [
    "ProtoField",
    "encode_proto",
    "enum_prefix",
    "from_proto_dict",
    "oneof",
    "proto",
    "proto_fields",
    "to_proto_dict",
]

S = TypeVar("S", bound=msgspec.Struct)

#: Python type of each supported proto scalar type.
SCALARS: dict[str, type] = {
    "string": str,
    "bytes": bytes,
    "bool": bool,
    "double": float,
    "int32": int,
    "int64": int,
    "uint32": int,
    "uint64": int,
    "fixed64": int,
}
_RANGES: dict[str, tuple[int, int]] = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
    "fixed64": (0, 2**64 - 1),
}
_INT64 = frozenset({"int64", "uint64", "fixed64"})
_VARINT = frozenset({"bool", "int32", "int64", "uint32", "uint64", "enum"})


def proto(number: int, proto_type: str | None = None, **constraints: Any) -> msgspec.Meta:
    """Metadata of one field: its proto number and, for a scalar, its proto type.

    Integer types add their range as ``ge`` / ``le`` constraints, so decoding rejects what the
    proto type could not hold. Enum and message fields need no type (the annotation says it).
    """
    if proto_type is not None:
        if proto_type not in SCALARS:
            raise ValueError(f"unsupported proto type {proto_type!r}")
        if proto_type in _RANGES:
            lo, hi = _RANGES[proto_type]
            constraints.setdefault("ge", lo)
            if hi < 2**63:  # msgspec bounds must fit an int64; msgpack cannot exceed uint64
                constraints.setdefault("le", hi)
    return msgspec.Meta(extra={"proto": number, "proto_type": proto_type}, **constraints)


def oneof(name: str, **members: int) -> msgspec.Meta:
    """Metadata of a tagged-union field: the oneof's name and each member's (tag's) number."""
    return msgspec.Meta(extra={"proto_oneof": name, "proto_members": members})


class ProtoField(NamedTuple):
    """One proto field of a Struct, as derived from its annotation."""

    attr: str
    """The Struct attribute that holds the value (for a oneof member: the union field)."""
    name: str
    """The proto field name (for a oneof member: the member's name)."""
    number: int
    proto_type: str
    """A scalar type name (``"string"``, ``"fixed64"``...), ``"enum"`` or ``"message"``."""
    repeated: bool
    type_ref: Any
    """The enum class or Struct class of an enum or message field."""
    oneof: str | None
    """The oneof's name for a oneof member."""
    json_name: str
    """The ProtoJSON name (lowerCamelCase, as protoc derives it)."""


def _json_name(name: str) -> str:
    return re.sub(r"_(.)", lambda m: m.group(1).upper(), name)


def enum_prefix(cls: type[enum.Enum]) -> str:
    """The proto value prefix of an enum class: ``SignalKind`` -> ``SIGNAL_KIND_``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).upper() + "_"


def _member_name(cls: type, members: dict[str, int]) -> str:
    """The oneof member name of a union member, whose tag must be its field number."""
    tag = cls.__struct_config__.tag  # type: ignore[attr-defined]
    names = [name for name, number in members.items() if number == tag]
    if type(tag) is not int or len(names) != 1:
        raise TypeError(f"{cls.__name__}'s tag {tag!r} is not the number of one oneof member")
    return names[0]


@functools.cache
def proto_fields(cls: type[msgspec.Struct]) -> tuple[ProtoField, ...]:
    """The proto field table of a Struct class, in field-number order."""
    out: list[ProtoField] = []
    hints = typing.get_type_hints(cls, include_extras=True)
    for attr in cls.__struct_fields__:
        hint = hints[attr]
        inner, *metadata = typing.get_args(hint) if typing.get_origin(hint) is Annotated else [hint]
        extra: dict[str, Any] = {}
        for meta in metadata:
            if isinstance(meta, msgspec.Meta) and meta.extra:
                extra.update(meta.extra)
        if "proto" not in extra and "proto_oneof" not in extra:
            # Every field is in the schema: one without a number would escape the drift check.
            raise TypeError(f"{cls.__name__}.{attr} has no proto number")
        if "proto_oneof" in extra:
            members: dict[str, int] = extra["proto_members"]
            for member in typing.get_args(inner) or (inner,):  # a union, or one member
                name = _member_name(member, members)
                field = ProtoField(
                    attr, name, members[name], "message", False, member, extra["proto_oneof"], name
                )
                out.append(field._replace(json_name=_json_name(name)))
            continue
        repeated = typing.get_origin(inner) is tuple
        if repeated:
            inner = typing.get_args(inner)[0]
        if typing.get_origin(inner) is Annotated:
            inner = typing.get_args(inner)[0]
        proto_type = extra["proto_type"]
        type_ref: type | None = None
        if proto_type is None:
            if isinstance(inner, type) and issubclass(inner, enum.IntEnum):
                proto_type, type_ref = "enum", inner
            elif isinstance(inner, type) and issubclass(inner, msgspec.Struct):
                proto_type, type_ref = "message", inner
            else:
                raise TypeError(f"{cls.__name__}.{attr}: a scalar field needs its proto type")
        elif SCALARS[proto_type] is not inner:
            raise TypeError(f"{cls.__name__}.{attr}: {inner!r} cannot hold a proto {proto_type}")
        out.append(
            ProtoField(
                attr, attr, extra["proto"], proto_type, repeated, type_ref, None, _json_name(attr)
            )
        )
    out.sort(key=lambda f: f.number)
    return tuple(out)


def _is_default(f: ProtoField, value: Any) -> bool:
    """Whether proto3 (implicit presence) leaves this value out: zero, empty, or false."""
    if f.proto_type == "double":
        return bool(struct.pack("<d", value) == b"\0" * 8)  # -0.0 is written, as protobuf does
    return not value


# --- binary -----------------------------------------------------------------------------------


def _varint(n: int, out: bytearray) -> None:
    if n < 0:
        n += 1 << 64
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_value(f: ProtoField, value: Any, out: bytearray) -> None:
    t = f.proto_type
    if t in _VARINT:
        _varint(f.number << 3, out)
        _varint(int(value), out)
    elif t == "fixed64":
        _varint(f.number << 3 | 1, out)
        out += struct.pack("<Q", value)
    elif t == "double":
        _varint(f.number << 3 | 1, out)
        out += struct.pack("<d", value)
    else:
        data = value.encode() if t == "string" else encode_proto(value) if t == "message" else value
        _varint(f.number << 3 | 2, out)
        _varint(len(data), out)
        out += data


def encode_proto(obj: msgspec.Struct) -> bytes:
    """The proto3 binary encoding of a Struct, fields in number order, defaults left out.

    Byte for byte what protobuf's ``SerializeToString(deterministic=True)`` writes for the same
    message (tested), so other languages can recompute hashes taken over it.
    """
    out = bytearray()
    for f in proto_fields(type(obj)):
        value = getattr(obj, f.attr)
        if f.oneof is not None:
            if type(value) is f.type_ref:  # a set member is written even when empty
                _write_value(f, value, out)
        elif f.repeated:
            if value and f.proto_type in _VARINT:  # proto3 packs repeated numbers
                packed = bytearray()
                for v in value:
                    _varint(int(v), packed)
                _varint(f.number << 3 | 2, out)
                _varint(len(packed), out)
                out += packed
            else:
                for v in value:
                    _write_value(f, v, out)
        elif not _is_default(f, value):
            _write_value(f, value, out)
    return bytes(out)


# --- ProtoJSON dicts --------------------------------------------------------------------------


def _json_value(f: ProtoField, value: Any) -> Any:
    t = f.proto_type
    if t == "message":
        return to_proto_dict(value)
    if t == "enum":
        assert f.type_ref is not None
        return enum_prefix(f.type_ref) + value.name
    if t == "bytes":
        return base64.b64encode(value).decode("ascii")
    if t in _INT64:
        return str(value)
    if t == "double" and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return value


def to_proto_dict(obj: msgspec.Struct) -> dict[str, Any]:
    """The ProtoJSON dict of a Struct: what ``MessageToDict`` makes of the same message."""
    out: dict[str, Any] = {}
    for f in proto_fields(type(obj)):
        value = getattr(obj, f.attr)
        if f.oneof is not None:
            if type(value) is f.type_ref:
                out[f.json_name] = to_proto_dict(value)
        elif f.repeated:
            if value:
                out[f.json_name] = [_json_value(f, v) for v in value]
        elif not _is_default(f, value):
            out[f.json_name] = _json_value(f, value)
    return out


_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _parse_value(f: ProtoField, value: Any, where: str) -> Any:
    """One ProtoJSON value as msgspec expects it; msgspec then checks type and range."""
    t = f.proto_type
    if t == "message":
        assert f.type_ref is not None
        return _native(value, f.type_ref, where)
    if t == "enum" and isinstance(value, str):
        assert f.type_ref is not None
        prefix = enum_prefix(f.type_ref)
        if value == prefix + "UNSPECIFIED":
            return 0
        member = f.type_ref.__members__.get(value.removeprefix(prefix))
        if member is None or not value.startswith(prefix):
            raise EventDecodeError(f"unknown {f.type_ref.__name__} value {value!r} at {where}")
        return int(member)
    if t == "bytes" and isinstance(value, str):
        try:
            padded = value + "=" * (-len(value) % 4)
            return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EventDecodeError(f"invalid base64 at {where}") from exc
    if t in _RANGES and isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            number = int(value)
        except ValueError as exc:
            raise EventDecodeError(f"invalid integer {value!r} at {where}") from exc
        lo, hi = _RANGES[t]
        if not lo <= number <= hi:
            raise EventDecodeError(f"{number} is out of range for a {t} at {where}")
        return number
    if t == "double" and isinstance(value, str):
        if value not in _SPECIAL_FLOATS:
            raise EventDecodeError(f"invalid number {value!r} at {where}")
        return _SPECIAL_FLOATS[value]
    if t == "double" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _default(f: ProtoField) -> Any:
    if f.repeated:
        return ()
    return 0 if f.proto_type in ("enum", *_RANGES) else SCALARS[f.proto_type]()


def _native(data: Any, cls: type[msgspec.Struct], where: str) -> Any:
    """A ProtoJSON object in the shape ``msgspec.convert`` turns into ``cls``.

    That is a dict keyed by attribute, or for an ``array_like`` Struct a list in field order;
    either way with the class's tag if it has one.
    """
    if not isinstance(data, Mapping):
        raise EventDecodeError(f"expected an object for {cls.__name__} at {where}")
    fields = proto_fields(cls)
    by_key = {f.json_name: f for f in fields} | {f.name: f for f in fields}
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for key, value in data.items():
        f = by_key.get(key)
        if f is None:
            raise EventDecodeError(f"unknown field {key!r} in {cls.__name__} at {where}")
        if f.name in seen or (f.oneof is not None and f.oneof in seen):
            raise EventDecodeError(f"{key!r} given twice, or a second oneof member, at {where}")
        seen.add(f.name)
        if value is None:  # ProtoJSON: null is the default value
            continue
        path = f"{where}.{key}"
        if f.oneof is not None:
            seen.add(f.oneof)
            assert f.type_ref is not None
            out[f.attr] = _native(value, f.type_ref, path)
        elif f.repeated:
            if not isinstance(value, list):
                raise EventDecodeError(f"expected a list at {path}")
            out[f.attr] = [_parse_value(f, v, f"{path}[{i}]") for i, v in enumerate(value)]
        else:
            out[f.attr] = _parse_value(f, value, path)
    for f in fields:
        if f.oneof is None and f.attr not in out:
            out[f.attr] = _default(f)
        elif f.oneof is not None and f.oneof not in seen:
            raise EventDecodeError(f"{cls.__name__} at {where} has no {f.oneof}")
    config = cls.__struct_config__
    if config.array_like:
        row = [out[name] for name in cls.__struct_fields__]
        return [config.tag, *row] if config.tag is not None else row
    if config.tag is not None and config.tag_field is not None:
        out[config.tag_field] = config.tag
    return out


def from_proto_dict(data: Mapping[str, Any], cls: type[S]) -> S:
    """A Struct from its ProtoJSON dict (lowerCamelCase or proto field names, as ``ParseDict``).

    Validation is msgspec's, as for decoding: an unknown field, a wrong type, a value outside its
    proto type's range, a missing or doubled oneof member raise ``EventDecodeError``.
    """
    native = _native(data, cls, "$")
    try:
        return msgspec.convert(native, cls)
    except msgspec.ValidationError as exc:
        raise EventDecodeError(f"invalid {cls.__name__}: {exc}") from exc
