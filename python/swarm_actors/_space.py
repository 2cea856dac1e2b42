"""The tuple space: Linda coordination with an index owned by Rust.

The synchronous operations (``out``, ``take_nowait``, ``read_nowait``, ``take_all``, ``read_all``,
``count``) run entirely in Rust. This module adds the blocking, awaitable ``take`` and ``read``:
when nothing matches, the caller's future is registered with the core as a *waiter*, and the
next ``out`` of a matching tuple completes it directly, oldest taker first. No polling, no
background task.

Guarantees of the async API:

* A waiter that times out or is cancelled never consumes a tuple. If a tuple was handed to a
  taker whose task is cancelled before it resumes, the tuple is put back into the space (as a new
  write, so it goes to the next matching waiter first) with the rest of its lease: it expires
  when it was written to expire, and is dropped as expired if that time has passed.
* Timeouts raise the builtin ``TimeoutError``; ``asyncio.CancelledError`` always propagates.
* Waiters belong to the event loop that created them: call ``out`` for a space with waiters from
  that loop's thread (use ``loop.call_soon_threadsafe`` from other threads).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from swarm_actors import _tuplecore
from swarm_actors._exceptions import InvalidArgumentError

__all__ = ["TupleSpace"]


class TupleSpace(_tuplecore.TupleSpace):
    """A Linda tuple space.

    Tuples are tuples of ``int``, ``float``, ``str``, ``bytes``, ``bool`` and ``None``. A
    template has the same arity as the tuples it matches; each position is an actual value
    (equal *and* of the same type: ``1`` matches neither ``True`` nor ``1.0``), a type formal
    (``int``, ``str``, ...) or ``ANY``. Among matching tuples the oldest wins.

    The first field of a tuple is its *lane*; :meth:`restrict` derives handles limited to some
    lanes and operations (the seed design's "hookwall"). Pass ``clock`` (a callable returning
    seconds, like ``time.monotonic``) to drive leases from a virtual clock in tests.

    Example::

        space = TupleSpace()
        space.out(("jobs", 1, b"payload"))
        job = await space.take(("jobs", int, ANY), timeout=5.0)
    """

    __slots__ = ()

    async def take(
        self, template: Sequence[Any], *, timeout: float | None = None
    ) -> tuple[Any, ...]:
        """Remove and return the oldest tuple matching ``template``, waiting for one if needed.

        Raises ``TimeoutError`` if none arrives within ``timeout`` seconds (``None`` waits
        forever; ``0`` only checks). A cancelled or timed-out call consumes nothing.
        """
        found = self.take_nowait(template)
        if found is not None:
            return found
        return await self._wait(template, True, timeout)

    async def read(
        self, template: Sequence[Any], *, timeout: float | None = None
    ) -> tuple[Any, ...]:
        """Return the oldest tuple matching ``template`` without removing it, waiting if needed.

        Raises ``TimeoutError`` if none arrives within ``timeout`` seconds.
        """
        found = self.read_nowait(template)
        if found is not None:
            return found
        return await self._wait(template, False, timeout)

    async def _wait(
        self, template: Sequence[Any], take: bool, timeout: float | None
    ) -> tuple[Any, ...]:
        if timeout is not None and (math.isnan(timeout) or timeout <= 0):
            if math.isnan(timeout):
                raise InvalidArgumentError("timeout must be a number of seconds or None, not NaN")
            raise TimeoutError(f"no tuple matched {tuple(template)!r}")
        loop = asyncio.get_running_loop()
        # A reader's future gets the tuple; a taker's gets ``(tuple, expires)``, the lease it
        # carries (see ``_add_waiter``).
        future: asyncio.Future[Any] = loop.create_future()
        waiter = self._add_waiter(template, take, future)
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, self._expire, waiter, future, template, timeout)
        try:
            got = await future
        except asyncio.CancelledError:
            served = not self._remove_waiter(waiter)
            delivered = future.done() and not future.cancelled() and future.exception() is None
            if served and take and delivered:
                # A tuple was handed over between the cancellation and now: give it back, with
                # what is left of its lease.
                self._put_back(*future.result())
            raise
        finally:
            if timer is not None:
                timer.cancel()
        found: tuple[Any, ...] = got[0] if take else got
        return found

    def _expire(
        self,
        waiter: int,
        future: asyncio.Future[Any],
        template: Sequence[Any],
        timeout: float,
    ) -> None:
        if self._remove_waiter(waiter) and not future.done():
            future.set_exception(
                TimeoutError(f"no tuple matched {tuple(template)!r} within {timeout:g} s")
            )
