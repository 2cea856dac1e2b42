"""Supervision policies: what a parent does when one of its children fails.

An exception raised by the handler of an *ask* is that ask's answer: the asker gets it, and the
actor goes on with the next message, its state as it was. That is how every actor framework a
Python user knows treats a handler that rejects bad input (pykka, Ray, Orleans, Dapr): the
caller learns what went wrong, and nothing that was right is thrown away. (A ``CancelledError``
or other ``BaseException`` is no answer: it goes to the supervisor.)

A failure nobody receives (a tell's handler, ``on_start``, a timer's message, a child's
escalation) is a *failure* of the actor. The failing actor stops taking messages (its mailbox
is kept), its ``on_failure`` hook runs, and its parent's strategy decides:

* ``Directive.RESUME``: go on with the next message, same instance, state kept.

* ``Directive.RESTART``: after a backoff delay, replace the instance with a fresh one (its
  children are stopped first; the new instance's ``on_start`` recreates what it needs) and
  resume the mailbox where it was.
* ``Directive.STOP``: stop the actor; queued messages are discarded and counted.
* ``Directive.ESCALATE``: fail the parent with an ``EscalatedError`` whose cause is the child's
  error, and let the grandparent's strategy decide. Top-level actors escalate to the system,
  which stops them: a failure never takes the system down.

``OneForOne`` applies the directive to the failing child only; ``AllForOne`` restarts (or
stops) all the parent's children together. A child restarted more than ``max_restarts`` times
within ``within`` seconds is escalated instead.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from swarm_actors._exceptions import InvalidArgumentError

__all__ = ["AllForOne", "Backoff", "Directive", "OneForOne", "SupervisionStrategy"]


class Directive(enum.Enum):
    """What a supervisor does with a failed child."""

    RESTART = "restart"
    RESUME = "resume"
    STOP = "stop"
    ESCALATE = "escalate"


def _restart_on_exception(exc: BaseException) -> Directive:
    return Directive.RESTART if isinstance(exc, Exception) else Directive.ESCALATE


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential restart delay with jitter.

    The n-th consecutive restart (n = 0, 1, ...) waits ``min(initial * factor**n, maximum)``
    seconds, multiplied by a random factor in ``[1 - jitter, 1 + jitter]``. A restart counts as
    consecutive while the restarts stay within the strategy's window.
    """

    initial: float = 0.0
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and self.maximum >= 0):
            raise InvalidArgumentError("Backoff delays must be >= 0")
        if self.factor < 1:
            raise InvalidArgumentError("Backoff factor must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise InvalidArgumentError("Backoff jitter must be within [0, 1]")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before restart number ``attempt`` (0-based)."""
        if self.initial == 0:
            return 0.0
        base = min(self.initial * self.factor ** min(attempt, 64), self.maximum)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return base * spread


@dataclass(frozen=True, slots=True)
class OneForOne:
    """Restart only the child that failed.

    ``decider`` maps the error to a ``Directive`` (default: restart on ``Exception``, escalate
    anything else). After ``max_restarts`` restarts within ``within`` seconds the next failure
    is escalated.
    """

    max_restarts: int = 10
    within: float = 60.0
    backoff: Backoff = field(default_factory=Backoff)
    decider: Callable[[BaseException], Directive] = _restart_on_exception

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise InvalidArgumentError("max_restarts must be >= 0")
        if self.within <= 0:
            raise InvalidArgumentError("within must be > 0 seconds")

    @property
    def all_for_one(self) -> bool:
        """Whether a failure affects every sibling."""
        return False


@dataclass(frozen=True, slots=True)
class AllForOne(OneForOne):
    """Restart (or stop) every child of the parent when one of them fails."""

    @property
    def all_for_one(self) -> bool:
        """Whether a failure affects every sibling."""
        return True


SupervisionStrategy = OneForOne
"""Type of a supervision strategy (``OneForOne`` or its subclass ``AllForOne``)."""
