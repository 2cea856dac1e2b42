"""Configuration value objects of an ``ActorSystem`` (small, frozen, validated on creation).

Like httpx's ``Timeout`` and ``Limits``: one object per concern, passed to ``ActorSystem`` and
readable back from it, instead of a keyword argument per setting. Each one checks its fields
when it is made and raises ``InvalidArgumentError`` for a value outside its range, so a bad
setting fails where it is written, not when the system first uses it.

The NATS side (``Cluster``) is in ``swarm_actors._nats._options``: the engine imports this
module, and the engine imports no NATS code.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from swarm_actors._exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["DEFAULT", "Passivation", "Signals", "Timeouts", "Tracing"]


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
    """``InvalidArgumentError`` unless ``value`` is ``None`` or a number of seconds > 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidArgumentError(f"{what} must be a number of seconds or None, got {value!r}")
    if value <= 0:
        raise InvalidArgumentError(f"{what} must be > 0 seconds or None, got {value!r}")


def _flag(value: object, what: str) -> None:
    # A truthy string or number passed for a switch is a mistake to report, not to guess at.
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{what} must be True or False, got {value!r}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the runtime waits, in seconds. ``None`` waits without a limit.

    ``ask``: how long an ``ask`` waits for its answer when the call names no ``timeout=``
    (then the builtin ``TimeoutError``, at most an eighth of it late: asks share timers). No
    limit must be asked for (``timeout=None``), so a lost answer never hangs a caller by
    default.

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


@dataclass(frozen=True, kw_only=True, slots=True)
class Passivation:
    """When the system passivates virtual actors (``ActorSystem.virtual``, ``batch_spawn``).

    A passivated actor's ``snapshot()`` is kept (in Rust, compressed) and its cell is freed;
    its next message activates it again from that state.

    ``max_active``: at most this many virtual actors run at once; activating one more
    passivates the least recently used first. ``None``: no limit.

    ``idle_after``: an actor that has handled nothing for this many seconds is passivated. It
    is checked every ``idle_after`` seconds, so an idle actor goes within one to two periods.
    ``None``: never for idleness.
    """

    max_active: int | None = None
    idle_after: float | None = None

    def __post_init__(self) -> None:
        limit = self.max_active
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidArgumentError(f"Passivation.max_active must be an int, got {limit!r}")
        if limit is not None and limit < 1:
            raise InvalidArgumentError(f"Passivation.max_active must be >= 1 or None, got {limit}")
        _seconds(self.idle_after, "Passivation.idle_after")


@dataclass(frozen=True, kw_only=True, slots=True)
class Tracing:
    """Where the runtime's OpenTelemetry spans go, and whether it makes any.

    ``provider``: the tracer provider of the system's spans (default ``None``: the global
    provider, read when the system starts). Tracing is on only if that provider is a real one
    (an SDK's, not the API's default); ``ActorSystem.refresh_tracing`` looks again after a
    provider was installed later.

    ``enabled``: ``False`` turns tracing off whatever provider is installed (no spans, no
    trace context carried with messages).
    """

    provider: TracerProvider | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        _flag(self.enabled, "Tracing.enabled")
        if self.provider is not None and not callable(getattr(self.provider, "get_tracer", None)):
            raise InvalidArgumentError(
                f"Tracing.provider must be an OpenTelemetry TracerProvider, got {self.provider!r}"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class Signals:
    """Which of the runtime's own signals the system journals (``swarm_actors.events``).

    Actors' starts, stops, crashes and restarts are always journalled.

    ``health_interval``: seconds between two ``HEALTH`` signals about the whole system (CPU
    load, memory, mailbox depth; see ``ActorSystem.health``). ``None``: none.

    ``virtual``: also signal each activation and passivation of a virtual actor. Off by
    default: a sweep over a million virtual actors makes two million of them.
    """

    health_interval: float | None = 10.0
    virtual: bool = False

    def __post_init__(self) -> None:
        _seconds(self.health_interval, "Signals.health_interval")
        _flag(self.virtual, "Signals.virtual")
