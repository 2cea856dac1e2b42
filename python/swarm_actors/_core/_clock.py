"""Clocks: where timers, backoff delays and passivation get their time.

``LoopClock`` (the default) uses the running event loop. ``swarm_actors.testing.VirtualClock``
implements the same small protocol with a time that only moves when a test advances it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Clock", "LoopClock", "TimerHandle"]


class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None:
        """Cancel the callback if it has not run yet."""


class Clock(Protocol):
    """Time source of an ``ActorSystem``."""

    def now(self) -> float:
        """Current time in seconds (monotonic)."""

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` after ``delay`` seconds."""

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds."""


class LoopClock:
    """The event loop's own clock."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        """Current loop time."""
        return self._loop.time()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Schedule on the loop."""
        return self._loop.call_later(delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(delay)
