"""Timers: one-shot and periodic messages an actor sends itself.

Timers are keyed; starting a timer under a key that is already running replaces it. Every timer
of an actor is cancelled when it stops or restarts. A timer message that finds the mailbox full
is dropped and counted (a timer never blocks), and one sent to a stopped actor is ignored.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from swarm_actors._exceptions import ActorDeadError, InvalidArgumentError, MailboxFullError
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from swarm_actors._core._cell import Cell
    from swarm_actors._core._clock import TimerHandle

__all__ = ["Timers"]

log = get_logger("swarm_actors")


class Timers:
    """The timers of one actor (``self.timers`` inside an actor)."""

    __slots__ = ("_active", "_cell", "dropped")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell
        self._active: dict[Hashable, TimerHandle] = {}
        self.dropped = 0
        """Timer messages dropped because the mailbox was full."""

    def start_single(self, key: Hashable, message: Any, delay: float) -> None:
        """Send ``message`` to this actor once, after ``delay`` seconds."""
        self._check(delay, "delay")
        self.cancel(key)
        self._active[key] = self._cell.system.clock.call_later(
            delay, self._fire, key, message, None
        )

    def start_periodic(
        self, key: Hashable, message: Any, interval: float, *, initial_delay: float | None = None
    ) -> None:
        """Send ``message`` every ``interval`` seconds (first after ``initial_delay``)."""
        self._check(interval, "interval")
        if interval == 0:
            raise InvalidArgumentError("interval must be > 0 seconds")
        first = interval if initial_delay is None else initial_delay
        self._check(first, "initial_delay")
        self.cancel(key)
        self._active[key] = self._cell.system.clock.call_later(
            first, self._fire, key, message, interval
        )

    def cancel(self, key: Hashable) -> bool:
        """Cancel the timer under ``key``; returns whether one was running."""
        handle = self._active.pop(key, None)
        if handle is None:
            return False
        handle.cancel()
        return True

    def cancel_all(self) -> None:
        """Cancel every timer (done automatically on stop and restart)."""
        for handle in self._active.values():
            handle.cancel()
        self._active.clear()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._active

    def __len__(self) -> int:
        return len(self._active)

    @staticmethod
    def _check(value: float, what: str) -> None:
        if not isinstance(value, (int, float)) or value != value or value < 0:
            raise InvalidArgumentError(f"{what} must be a number of seconds >= 0, got {value!r}")

    def _fire(self, key: Hashable, message: Any, interval: float | None) -> None:
        if interval is None:
            self._active.pop(key, None)
        else:
            self._active[key] = self._cell.system.clock.call_later(
                interval, self._fire, key, message, interval
            )
        try:
            self._cell.enqueue_nowait(message)
        except MailboxFullError:
            self.dropped += 1
            log.warning("timer message dropped: mailbox full", actor=self._cell.path, key=key)
        except ActorDeadError:
            self.cancel_all()
