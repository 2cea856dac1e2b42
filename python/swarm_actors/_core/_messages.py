"""Message types by name: which classes a message (or reply) from another process may be.

The registry holds every class an ``Actor`` subclass's ``@handler`` accepts or is annotated to
return (collected as the class is defined), ``tuple`` / ``set`` / ``frozenset``, and whatever
``register_message_type`` was given; and every ``Actor`` subclass, so that a virtual actor can
be addressed by class from elsewhere. Names are ``module:qualname`` (``""`` for plain msgpack
values). It is format-free: the NATS layer's wire format (``_nats._wire``) reads it, the engine
fills it. Classes are process-wide, so this registry is too (like msgspec's own type caches).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
import msgspec.inspect

__all__ = [
    "ACTOR_CLASSES",
    "TYPE_NAMES",
    "register_actor_class",
    "register_handler_types",
    "register_message_type",
    "type_name",
]

T = TypeVar("T")

_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes, list, dict})
TYPE_NAMES: dict[type, str] = dict.fromkeys(_PLAIN, "")
"""Wire names already computed, per class (read directly by the transport's hot path)."""
_TYPES: dict[str, type] = {}


def type_name(cls: type) -> str:
    """The wire name of a message type: ``module:qualname``, or ``""`` for plain msgpack types."""
    name = TYPE_NAMES.get(cls)
    if name is None:
        name = TYPE_NAMES[cls] = f"{cls.__module__}:{cls.__qualname__}"
    return name


def _add(cls: type) -> None:
    name = type_name(cls)
    if name:
        _TYPES[name] = cls


def register_message_type(cls: type[T]) -> type[T]:
    """Let messages (and replies) of type ``cls`` arrive from other processes; returns ``cls``.

    Usable as a class decorator. Types that a ``@handler`` accepts or returns are registered
    already; register the others a remote actor may receive (inside ``on_receive``, say) or
    return. ``cls`` must be something msgspec decodes (a ``msgspec.Struct``, dataclass, enum,
    ...; ``TypeError`` otherwise) and importable under the same ``module:qualname`` in every
    process: a class defined in a script run as ``__main__`` is a different type elsewhere.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_message_type expects a class, got {cls!r}")
    try:
        info = msgspec.inspect.type_info(cls)
    except TypeError as exc:
        raise TypeError(f"{cls.__qualname__} cannot be sent between processes: {exc}") from None
    if isinstance(info, msgspec.inspect.CustomType):  # msgspec would need hooks to decode it
        raise TypeError(
            f"{cls.__qualname__} cannot be sent between processes: msgspec cannot decode it "
            "(use a msgspec.Struct, a dataclass, an enum, ...)"
        )
    _add(cls)
    return cls


ACTOR_CLASSES: dict[str, type] = {}
"""Every ``Actor`` subclass by wire name (virtual actors are addressed by class across nodes)."""


def register_actor_class(cls: type) -> None:
    """Let remote messages activate virtual actors of ``cls`` (from ``Actor.__init_subclass__``).

    Only classes defined in this process are ever looked up: a name on the wire never imports
    anything.
    """
    ACTOR_CLASSES[type_name(cls)] = cls


def register_handler_types(types: list[type]) -> None:
    """Register the classes an actor class's handlers accept or return (no validation).

    Called from ``Actor.__init_subclass__``; a class msgspec cannot decode fails only when a
    remote message of that type arrives (``WireFormatError``).
    """
    for cls in types:
        if cls not in _PLAIN:
            _add(cls)


for _builtin in (tuple, set, frozenset):
    _add(_builtin)


def message_type(name: str) -> type | None:
    """The registered message type of a wire name, or ``None`` (a name never imports anything)."""
    return _TYPES.get(name)
