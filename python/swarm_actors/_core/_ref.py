"""``ActorRef``: the handle through which everything talks to an actor."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from opentelemetry import trace

from swarm_actors._config import DEFAULT, Timeout
from swarm_actors._core._actor import class_names
from swarm_actors._core._capability import check_send, current_sender
from swarm_actors._core._mailbox import INLINE_CHECKPOINT, Ask
from swarm_actors._core._sender import check_reply_to, origin_of
from swarm_actors._core._telemetry import current_context, start_ask_span
from swarm_actors._exceptions import ActorDeadError, AskCycleError, InvalidArgumentError

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from swarm_actors._core._actor import Actor
    from swarm_actors._core._cell import Cell, Deadlines
    from swarm_actors._core._contract import Ref, RefForm, WireNode
    from swarm_actors._system import ActorSystem

__all__ = ["INLINE_CHECKPOINT", "ActorRef", "MailboxStats"]

A = TypeVar("A", bound="Actor")


@dataclass(frozen=True, slots=True)
class MailboxStats:
    """A snapshot of an actor's mailbox and failure counters."""

    pending: int
    """Messages waiting in the mailbox."""
    processed: int
    """Messages taken from the mailbox (handled, refused as unhandled, or failed)."""
    dropped: int
    """Messages discarded by ``stop(drain=False)`` or a stop after a failure."""
    capacity: int
    """Mailbox capacity."""
    failures: int
    """Handler failures."""
    restarts: int
    """Restarts carried out by the supervisor."""
    in_flight: int = 0
    """Handler calls in progress: 0 or 1, up to ``max_concurrency`` for an actor declaring it."""
    stashed: int = 0
    """Messages held back by ``Actor.stash`` (for an actor declared with ``stash=True``)."""


async def _wait_reply(
    cell: Cell,
    future: asyncio.Future[Any],
    timeout: Timeout,
    asker: Cell | None = None,
    *,
    left: bool = False,
) -> Any:
    """Wait for the answer ``future`` of an ask to ``cell``; ``asker`` (an actor) waits for it.

    ``left``: ``timeout`` is what is left of one after waiting for room (a value of its own:
    a timer of its own, not buckets).
    """
    bucket = handle = None
    if timeout is DEFAULT:  # the system's default: in the deadline buckets (see Deadlines)
        deadlines: Deadlines | None = cell.dispatcher.deadlines
    elif timeout is None:
        deadlines = None
    else:  # explicit: the buckets of its value, or a timer of its own (see ``left``)
        deadlines = None if left else cell.dispatcher.deadlines.of(timeout)
        if deadlines is None:
            handle = cell.dispatcher.deadlines.later(future, timeout, cell)
    if deadlines is not None:
        bucket = deadlines.bucket
        bucket[future] = cell
        if deadlines.handle is None:
            deadlines.start()
    if asker is not None:
        asker.awaiting = cell  # see _refuse_cycle
    try:
        return await future
    finally:
        if asker is not None:
            asker.awaiting = None
        if bucket is not None:
            del bucket[future]  # answered (or given up): nothing left to expire
        elif handle is not None:
            handle.cancel()


async def _deliver(cell: Cell, entry: Ask, timeout: Timeout, asker: Cell | None) -> Any:
    """Put an ask into a mailbox that is busy or full, and wait for the answer.

    ``timeout`` covers both: a full mailbox's wait for room and the wait for the answer. An
    ask from ``asker``'s handler is refused if it closes a cycle of waits.
    """
    if asker is not None:
        _refuse_cycle(asker, cell)
        asker.awaiting = cell
    future = entry.future
    assert future is not None
    try:
        if cell.post(entry):  # room now: delivered without waiting
            return await _wait_reply(cell, future, timeout)
        if timeout is DEFAULT:
            timeout = cell.system.timeouts.ask
        if timeout is None:
            await cell.put(entry)
            return await _wait_reply(cell, future, timeout)
        started = cell.loop.time()
        try:
            async with asyncio.timeout(timeout):
                await cell.put(entry)
        except TimeoutError:
            raise TimeoutError(
                f"ask to {cell.path} found the mailbox full for {timeout:g} s (nothing was sent)"
            ) from None
        left = timeout - (cell.loop.time() - started)
        if left <= 0:
            future.cancel()  # enqueued: its handler may still run; nobody waits for the answer
            raise TimeoutError(f"ask to {cell.path} got no reply within {timeout:g} s")
        return await _wait_reply(cell, future, left, left=True)
    finally:
        if asker is not None:
            asker.awaiting = None


async def _checkpoint(cell: Cell) -> None:
    """Yield to the event loop once: INLINE_CHECKPOINT asks were answered inline.

    Taken by ``ask`` where it holds no context-variable token (its sender's, its span's): if
    the caller is a handler that was itself run inline, this suspension moves the rest of it
    to a task of its own, in another context, where such a token can no longer be reset.
    """
    cell.dispatcher.inline_left = INLINE_CHECKPOINT
    await asyncio.sleep(0)


def _refuse_cycle(asker: Cell, cell: Cell) -> None:
    """``AskCycleError`` if ``cell`` is, through a chain of asks, waiting for ``asker``.

    A chain through an actor with ``max_concurrency > 1`` is no cycle: it may take the ask
    while it waits (and its ``awaiting`` says nothing, several of its calls may be waiting).
    """
    if asker.actor_class.max_concurrency > 1:
        return
    cycle = [asker.path, cell.path]
    waiter: Cell | None = cell
    while waiter is not None and len(cycle) <= 1000:
        if waiter.actor_class.max_concurrency > 1:
            return
        if waiter is asker:
            raise AskCycleError(
                f"ask cycle: {' -> '.join(cycle)} (each waits for the next; an actor handles "
                "one message at a time, so this ask would never be answered)",
                actor=cell.path,
                cycle=tuple(cycle),
            )
        waiter = waiter.awaiting
        if waiter is not None:
            cycle.append(waiter.path)


def with_origin(message: Any, sender: Cell | None, reply_to: Any) -> Any:
    """``message`` as a mailbox item that remembers its sender (see ``_sender``), if it has one.

    ``reply_to`` (checked: a ref) wins over ``sender``, the running actor (``None``: outside
    any actor); without either, the message stays bare.
    """
    if reply_to is not None:
        return Ask(message, None, None, check_reply_to(reply_to))
    if sender is None:
        return message
    return Ask(message, None, None, origin_of(sender))


def _traced(message: Any, context: Context) -> Ask:
    """A tell's mailbox item with the sender's trace ``context`` (it may have an origin)."""
    if type(message) is Ask:
        message.context = context
        return message
    return Ask(message, None, context)


def _check_timeout(timeout: Timeout) -> None:
    if timeout is DEFAULT or timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidArgumentError(
            f"timeout must be a number of seconds > 0, None (no limit) or DEFAULT, got {timeout!r}"
        )
    if math.isnan(timeout) or timeout <= 0:
        raise InvalidArgumentError(
            f"timeout must be a number of seconds > 0 or None, got {timeout!r}"
        )


def resolve_timeout(timeout: Timeout, system: ActorSystem) -> float | None:
    """``timeout`` checked, with ``DEFAULT`` replaced by the system's ``Timeouts.ask``."""
    _check_timeout(timeout)
    return system.timeouts.ask if timeout is DEFAULT else timeout


class ActorRef(Generic[A]):
    """A reference to a running actor of this process: send it messages, ask it, stop it.

    Refs are cheap, hashable and compare equal when they point at the same actor. Every method
    must be called from the event loop the actor system runs on. One of the ``Ref`` kinds
    (``_contract``), the only one with ``stats()``: the counters live in this process.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        """The actor's name, unique within its system."""
        return self._cell.name

    @property
    def path(self) -> str:
        """The actor's path: its ancestors' names and its own, e.g. ``/parent/child``."""
        return self._cell.path

    @property
    def is_alive(self) -> bool:
        """Whether the actor still accepts messages."""
        return self._cell.accepting

    async def tell(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message`` without waiting for it to be handled.

        Waits while the mailbox is full (backpressure). Raises ``ActorDeadError`` if the actor
        is stopped, and ``MessageCapabilityError`` (sending nothing) if the sending actor's
        ``may_message`` does not include this one. Messages from one sender are handled in
        the order sent. The handler's ``self.sender`` is ``reply_to`` if given (any ref),
        else the sending actor (``None`` from outside any actor).
        """
        cell = self._cell
        sender = current_sender()  # one read: the capability check and the sender
        # One comparison for the common case: both None (from outside, no reply_to).
        if reply_to is not sender:  # type: ignore[comparison-overlap]
            if sender is not None and sender.grant is not None:
                check_send(cell.actor_class, cell.path)
            if reply_to is None:  # ``with_origin``, written out for actor-to-actor tells
                assert sender is not None
                message = Ask(
                    message, None, None, sender if sender.virtual_id is None else origin_of(sender)
                )
            else:
                message = Ask(message, None, None, check_reply_to(reply_to))
        if cell.tracer is not None:  # inlined SampledCache.sampled(): this is the hottest path
            current = current_context()
            traces = cell.dispatcher.traces
            last = traces.last
            context = last[1] if last[0] is current else traces.sampled()
            if context is not None:
                message = _traced(message, context)
        if not cell.post(message):
            await cell.put(message)  # stopped (it raises) or full (it waits)

    def tell_nowait(self, message: Any, reply_to: Ref[Any] | None = None) -> None:
        """Send ``message`` now or raise (``self.sender`` as for ``tell``).

        Raises ``MailboxFullError`` when full, ``ActorDeadError`` when stopped, and
        ``MessageCapabilityError`` when the sender's ``may_message`` refuses it.
        """
        cell = self._cell
        sender = current_sender()
        if sender is not None and sender.grant is not None:
            check_send(cell.actor_class, cell.path)
        message = with_origin(message, sender, reply_to)
        if cell.tracer is not None and (context := cell.dispatcher.traces.sampled()) is not None:
            message = _traced(message, context)
        cell.enqueue_nowait(message)

    async def ask(self, message: Any, *, timeout: Timeout = DEFAULT) -> Any:
        """Send ``message`` and return the handler's result (or raise its exception).

        Raises the builtin ``TimeoutError`` if no reply comes within ``timeout`` seconds (the
        message may still be handled later; the wait for room in a full mailbox counts too),
        never earlier and at most an eighth of the timeout later (asks share timers).
        ``timeout`` defaults to the system's ``Timeouts.ask`` (30 s); ``None`` waits without
        limit. Also raises ``ActorDeadError`` if the actor is or becomes
        stopped, ``UnhandledMessageError`` if it has no handler for the message's type, and
        ``MessageCapabilityError`` if the sender's ``may_message`` refuses it (nothing is sent).
        Cancelling the caller never disturbs the actor: the message is handled regardless.
        """
        if timeout is not DEFAULT:
            _check_timeout(timeout)
        cell = self._cell
        sender = current_sender()
        if sender is not None and sender.grant is not None:
            check_send(cell.actor_class, cell.path)
        if not cell.accepting:
            raise ActorDeadError(f"{cell.path} is stopped", actor=cell.path)
        if cell.tracer is not None and (context := cell.dispatcher.traces.sampled()) is not None:
            result = await self._ask_traced(message, timeout, cell.tracer, context)
            if cell.dispatcher.inline_left <= 0:
                await _checkpoint(cell)
            return result
        dispatcher = cell.dispatcher
        if cell.runnable and not cell.queue:
            done, future = cell.ask_inline(message)
            if done:  # ``future`` is the answer
                dispatcher.inline_left -= 1
                if dispatcher.inline_left <= 0:
                    await _checkpoint(cell)
                return future
            # The handler suspended: the actor's own task finishes it and answers ``future``.
        else:
            future = dispatcher.new_future()
            if sender is not None:  # from an actor: the cycle check and its origin
                entry = Ask(message, future, None, origin_of(sender))
                return await _deliver(cell, entry, timeout, sender)
            entry = Ask(message, future)
            if not cell.post(entry):  # no room now
                return await _deliver(cell, entry, timeout, None)
        # Waiting for the answer: ``_wait_reply``, written out on the two hottest paths (a
        # coroutine frame less for every suspending ask).
        handle = None
        if timeout is DEFAULT:  # the system's default: in the deadline buckets (see Deadlines)
            deadlines: Deadlines | None = dispatcher.deadlines
        elif timeout is None:
            deadlines = None
        else:  # explicit: the buckets of its value, or (too many values) a timer of its own
            deadlines = dispatcher.deadlines.of(timeout)
            if deadlines is None:
                handle = dispatcher.deadlines.later(future, timeout, cell)
        if deadlines is not None:
            bucket = deadlines.bucket
            bucket[future] = cell
            if deadlines.handle is None:
                deadlines.start()
        else:
            bucket = None
        if sender is not None:
            sender.awaiting = cell  # see _refuse_cycle
        try:
            return await future
        finally:
            if sender is not None:
                sender.awaiting = None
            if bucket is not None:
                del bucket[future]  # answered (or given up): nothing left to expire
            elif handle is not None:
                handle.cancel()

    async def _ask_traced(
        self, message: Any, timeout: Timeout, tracer: trace.Tracer, parent: Context
    ) -> Any:
        """An ask from a sampled caller: the same two paths, inside an ``ask <Type>`` span."""
        cell = self._cell
        span = start_ask_span(tracer, cell.path, message, parent)
        # Current here (the inline path runs the handler in this task) and carried otherwise.
        with trace.use_span(span, end_on_exit=True):
            if cell.runnable and not cell.queue:
                return await self._ask_inline(message, timeout)
            future: asyncio.Future[Any] = cell.loop.create_future()
            sender = current_sender()
            origin = None if sender is None else origin_of(sender)
            entry = Ask(message, future, current_context(), origin)
            return await _deliver(cell, entry, timeout, sender)

    async def _ask_inline(self, message: Any, timeout: Timeout) -> Any:
        """The actor is idle: run the handler in the caller's task under the actor's guard."""
        cell = self._cell
        done, value = cell.ask_inline(message)
        if done:
            cell.dispatcher.inline_left -= 1  # at 0, ``ask`` takes the checkpoint (see there)
            return value
        # The handler suspended and finishes in the actor's own task, which answers ``value``.
        return await _wait_reply(cell, value, timeout, current_sender())

    async def stop(self, *, drain: bool = True) -> int:
        """Stop the actor and its children; returns the number of discarded messages.

        With ``drain=True`` (default) the mailbox is handled first and nothing is discarded;
        with ``drain=False`` queued messages are discarded (pending asks get ``ActorDeadError``)
        and a handler in progress is cancelled. ``on_stop`` runs last. Calling ``stop`` again
        waits for the first stop; ``stop(drain=False)`` during a draining stop discards what
        is still queued and cancels the handler in progress (use it when draining hangs).
        """
        return await self._cell.stop(drain)

    def stats(self) -> MailboxStats:
        """Mailbox and failure counters."""
        c = self._cell
        return MailboxStats(
            pending=len(c.queue),
            processed=c.processed,
            dropped=c.dropped,
            capacity=c.capacity,
            failures=c.failures,
            restarts=c.restarts,
            in_flight=c.in_flight(),
            stashed=c.stashed_count(),
        )

    def __repr__(self) -> str:
        return f"<ActorRef {self.path} ({self._cell.actor_class.__qualname__})>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)

    def __swarm_watch__(self, watcher: Cell) -> Callable[[], None] | None:
        """Register ``watcher``'s watch of this actor (see ``Watchable``, ``Actor.watch``)."""
        cell = self._cell
        if cell.virtual_id is not None:  # ``self.ref`` of a virtual actor: it is passivated
            raise InvalidArgumentError(
                f"{cell.path} is a virtual actor: it cannot be watched (passivation is not "
                "death: its next message activates it again); watch actors started with "
                "system.start or start_child"
            )
        return watcher.dispatcher.watches.watch_cell(watcher, cell, self)

    def __swarm_wire__(self, node: WireNode) -> RefForm:
        """The ref as sent from ``node`` (see ``Ref``): by name, or by its virtual address."""
        cell = self._cell
        cls = cell.actor_class
        if cell.virtual_id is None:
            where = (node.node_id, cell.name)
        else:
            address = node.virtual_address(cell.virtual_id)
            if address is None:
                raise TypeError(
                    "refs to local virtual actors (batch_spawn members) cannot be sent to "
                    "another process; use system.placed(Cls, key, position=...) for actors "
                    "the cluster places"
                )
            where = address
        return (*where, cell.path, cls.role, class_names(cls))
