"""Configuration value objects of an ``ActorSystem`` (small, frozen, validated on creation).

Like httpx's ``Timeout`` and ``Limits``: one object per concern, passed to ``ActorSystem`` and
readable back from it, instead of a keyword argument per setting.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from swarm_actors._exceptions import InvalidArgumentError

__all__ = ["DEFAULT", "Timeouts"]


class _Default(enum.Enum):
    """``DEFAULT``: a ``timeout=`` left to the system's ``Timeouts`` (the default value)."""

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default.DEFAULT
"""A ``timeout=`` left to the system's setting (``Timeouts.ask``); ``None`` means no limit."""

Timeout = float | None | _Default
"""Type of a ``timeout=`` argument: seconds, ``None`` (no limit) or ``DEFAULT``."""


def _seconds(value: object, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidArgumentError(f"{what} must be a number of seconds or None, got {value!r}")
    if value <= 0:
        raise InvalidArgumentError(f"{what} must be > 0 seconds or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the runtime waits, in seconds. ``None`` waits without a limit.

    ``ask``: how long an ``ask`` waits for its answer when the call names no ``timeout=``
    (then the builtin ``TimeoutError``). No limit must be asked for (``timeout=None``), so a
    lost answer never hangs a caller by default.

    ``drain``: how long leaving ``async with ActorSystem()`` (``stop_all``) lets actors finish
    their queued messages and the handlers in progress. Handlers still running then are
    cancelled (their askers get ``ActorDeadError``) and each is reported: an error log naming
    the actor and its handler, and the actor's ``STOPPED`` signal says so.
    """

    ask: float | None = 30.0
    drain: float | None = 5.0

    def __post_init__(self) -> None:
        _seconds(self.ask, "Timeouts.ask")
        _seconds(self.drain, "Timeouts.drain")
