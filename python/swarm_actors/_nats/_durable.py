"""Durable consumers of a JetStream journal: at-least-once delivery that survives crashes.

The server keeps a durable consumer's state under its name: which entries were acknowledged,
which are out for processing. A process that opens the consumer again (after a crash, a
restart, on another host) continues after the last acknowledged entry; an entry handed out
but not acknowledged is handed out again after ``ack_wait``. So every entry is processed at
least once; acknowledge an entry only once its effects are durable, and make processing
idempotent (an entry's ``event.event_id`` identifies it) where twice would be wrong.

Acknowledgements are confirmed by the server (``ack`` waits for its answer): once ``ack``
returns, that entry will not come again. A message that is not a valid event can never be
processed, so it is terminated (``+TERM``: never redelivered) and logged
(``journal.undecodable``) instead of being handed out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, Self, TypeVar

import msgspec

from swarm_actors._events._journal import JournalEntry, _check_filter
from swarm_actors._events._schema import decode_event
from swarm_actors._exceptions import EventDecodeError, InvalidArgumentError, JournalClosedError
from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js.client import JetStreamContext

    from swarm_actors._nats._jetstream import JetStreamJournal

T = TypeVar("T")


class JetStreamApi(Protocol):
    """The journal's JetStream API caller: retries while the cluster is between leaders."""

    def __call__(self, call: Callable[[], Awaitable[T]], /) -> Awaitable[T]: ...


__all__ = ["Delivery", "DurableConsumer", "RawDelivery"]

_log = get_logger("swarm_actors.journal")


def _raise_lost_cancellation() -> None:
    """Re-raise a cancellation that nats-py's fetch lost.

    On Python 3.11 ``asyncio.wait_for`` (inside nats-py's ``next_msg``) returns its result and
    drops a cancellation that arrives as the result does; the task's ``cancelling()`` count
    still shows it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _stored_ns(reply: str) -> int:
    """The storage time (Unix ns) from a JetStream delivery's reply subject."""
    tokens = reply.split(".")
    return int(tokens[7] if len(tokens) == 9 else tokens[9])


class Delivery:
    """One journal entry handed out by a :class:`DurableConsumer`; settle it exactly once.

    ``ack`` when processed; ``nak`` to have it again (after ``delay`` seconds); ``term`` to
    never have it again; ``in_progress`` to extend the ``ack_wait`` of a long job.
    """

    __slots__ = ("_msg", "_timeout", "delivered", "entry")

    def __init__(self, entry: JournalEntry, msg: Msg, delivered: int, timeout: float) -> None:
        self.entry = entry
        """The entry."""
        self.delivered = delivered
        """How many times the server has handed this entry out (1 the first time)."""
        self._msg = msg
        self._timeout = timeout

    async def ack(self) -> None:
        """Acknowledge; returns once the server recorded it (it will not come again)."""
        await self._msg.ack_sync(timeout=self._timeout)

    async def nak(self, delay: float | None = None) -> None:
        """Hand it out again, after ``delay`` seconds (default: at once)."""
        await self._msg.nak(delay=delay)

    async def term(self) -> None:
        """Never hand it out again (without processing it)."""
        await self._msg.term()

    async def in_progress(self) -> None:
        """Still working on it: restart its ``ack_wait``."""
        await self._msg.in_progress()

    def __repr__(self) -> str:
        return f"<Delivery seq={self.entry.sequence} delivered={self.delivered}>"


class RawDelivery:
    """One message handed out by :meth:`DurableConsumer.fetch_raw`, not decoded.

    For a consumer that must keep what it cannot decode (an archive's dead letters) rather
    than have it terminated: decode ``data`` with ``decode_event``, settle with
    :meth:`DurableConsumer.ack_many` once the outcome is durable. Everything but the bytes
    comes from the reply subject (no header is parsed).
    """

    __slots__ = ("data", "delivered", "reply", "sequence", "stored_ns", "subject")

    def __init__(self, subject: str, reply: str, data: bytes) -> None:
        tokens = reply.split(".")
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ns>.<pending>, or the form
        # with a domain and an account hash after ACK (and a random token at the end).
        at = 4 if len(tokens) == 9 else 6
        self.sequence: int = int(tokens[at + 1])
        """The stream sequence."""
        self.subject = subject
        """The subject it was published on."""
        self.reply = reply
        """Where its acknowledgement goes."""
        self.data = data
        """Its bytes, as stored."""
        self.stored_ns: int = int(tokens[at + 3])
        """When the server stored it (Unix ns)."""
        self.delivered: int = int(tokens[at])
        """How many times the server has handed it out (1 the first time)."""

    def __repr__(self) -> str:
        return f"<RawDelivery seq={self.sequence} delivered={self.delivered}>"


class _RawInbox:
    """The raw-bytes handler of ``fetch_raw``'s inbox: messages and pull statuses, in order."""

    __slots__ = ("messages", "statuses", "waiter")

    def __init__(self) -> None:
        self.messages: collections.deque[RawDelivery] = collections.deque()
        self.statuses: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def on_msg(self, subject: bytes, reply: bytes, data: bytes, status: bytes | None) -> None:
        if status is None:
            self.messages.append(RawDelivery(subject.decode(), reply.decode(), data))
        elif status != b"100":  # heartbeats say nothing here
            self.statuses.append(status)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class DurableConsumer:
    """A named, server-side position in a :class:`JetStreamJournal` (``journal.durable(name)``).

    Take entries with ``fetch`` or ``async for delivery in consumer``, or let ``consume`` run
    a handler. ``close`` releases this process's subscription and keeps the position; ``delete``
    removes it from the server.
    """

    def __init__(
        self,
        journal: JetStreamJournal,
        name: str,
        *,
        subject: str,
        start_sequence: int | None,
        ack_wait: float,
        max_deliver: int,
        max_ack_pending: int | None = None,
        api: JetStreamApi,
        api_timeout: float,
    ) -> None:
        if not name or any(c in name for c in ". *>\t\r\n/\\"):
            raise InvalidArgumentError(f"invalid durable consumer name {name!r}")
        _check_filter(subject)
        if start_sequence is not None and start_sequence < 1:
            raise InvalidArgumentError(f"start_sequence must be >= 1, got {start_sequence}")
        if not ack_wait > 0:
            raise InvalidArgumentError(f"ack_wait must be > 0 seconds, got {ack_wait}")
        if max_deliver == 0 or max_deliver < -1:
            raise InvalidArgumentError("max_deliver must be >= 1, or -1 for no limit")
        if max_ack_pending is not None and max_ack_pending < 1:
            raise InvalidArgumentError("max_ack_pending must be >= 1 (None: the server's 1,000)")
        self._max_ack_pending = max_ack_pending
        self._journal = journal
        self._name = name
        self._subject = subject
        self._start_sequence = start_sequence
        self._ack_wait = ack_wait
        self._max_deliver = max_deliver
        self._api = api  # the journal's: the consumer's API calls retry as the journal's do
        self._api_timeout = api_timeout
        self._js: JetStreamContext = journal.client.jetstream(timeout=api_timeout)
        self._sub: JetStreamContext.PullSubscription | None = None
        self._raw: tuple[_RawInbox, Subscription] | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        """The durable name (the server keeps the position under it)."""
        return self._name

    @property
    def ack_wait(self) -> float:
        """Seconds an entry handed out waits for its acknowledgement before it comes again."""
        return self._ack_wait

    async def __aenter__(self) -> Self:
        await self._subscription()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        if self._journal.closed:
            raise JournalClosedError("the journal is closed")
        if self._sub is not None:
            return self._sub
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        async with self._lock:
            if self._sub is None:
                await self._journal.start()
                config = ConsumerConfig(
                    durable_name=self._name,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=(
                        DeliverPolicy.ALL
                        if self._start_sequence is None
                        else DeliverPolicy.BY_START_SEQUENCE
                    ),
                    opt_start_seq=self._start_sequence,
                    ack_wait=self._ack_wait,
                    max_deliver=self._max_deliver,
                    max_ack_pending=self._max_ack_pending,
                    filter_subject=self._subject,
                )
                self._sub = await self._api(
                    lambda: self._js.pull_subscribe(
                        self._subject,
                        durable=self._name,
                        stream=self._journal.stream,
                        config=config,
                    )
                )
        return self._sub

    async def fetch(self, batch: int = 100, timeout: float = 5.0) -> list[Delivery]:
        """Up to ``batch`` entries, waiting up to ``timeout`` seconds for the first one.

        Returns an empty list when none came in time. Undecodable messages are terminated,
        logged and left out (so fewer than ``batch`` may come even when more are pending).
        """
        if batch < 1 or not timeout > 0:
            raise InvalidArgumentError("batch must be >= 1 and timeout > 0")
        sub = await self._subscription()
        try:
            msgs = await sub.fetch(batch, timeout=timeout)
        except TimeoutError:  # nats-py raises its own subclass, or the builtin itself
            msgs = []
        _raise_lost_cancellation()
        if not msgs:
            return []
        out = []
        api_timeout = self._api_timeout
        for msg in msgs:
            meta = msg.metadata
            seq = meta.sequence.stream
            try:
                event = decode_event(msg.data)
            except EventDecodeError as e:
                _log.warning(
                    "journal.undecodable",
                    stream=self._journal.stream,
                    consumer=self._name,
                    sequence=seq,
                    subject=msg.subject,
                    error=str(e),
                )
                await msg.term()
                continue
            entry = JournalEntry(seq, msg.subject, event, _stored_ns(msg.reply))
            out.append(Delivery(entry, msg, meta.num_delivered, api_timeout))
        return out

    async def fetch_raw(
        self, batch: int = 100, timeout: float = 5.0, *, no_wait: bool = False
    ) -> list[RawDelivery]:
        """Up to ``batch`` messages as stored, undecoded (undecodable ones included).

        One pull of ``batch`` expiring after ``timeout`` seconds: returns once ``batch`` came,
        or when the pull expired with fewer (an empty list when none came). With ``no_wait``
        the pull takes what is there now and ends at once (the server's 404 after it). Read
        through the raw-bytes fast path (``_compat.fast_subscribe``), several times nats-py's
        ``fetch``.
        """
        if batch < 1 or not timeout > 0:
            raise InvalidArgumentError("batch must be >= 1 and timeout > 0")
        inbox, sub = await self._raw_inbox()
        out: list[RawDelivery] = []
        messages, statuses = inbox.messages, inbox.statuses
        while messages and len(out) < batch:  # left over from a pull that came late
            out.append(messages.popleft())
        if len(out) == batch:
            return out
        statuses.clear()  # a late pull's end says nothing of this one
        ask: dict[str, object] = {"batch": batch - len(out)}
        if no_wait:
            ask["no_wait"] = True
        else:
            ask["expires"] = int(timeout * 1e9)
        request = msgspec.json.encode(ask)
        pull = f"$JS.API.CONSUMER.MSG.NEXT.{self._journal.stream}.{self._name}"
        await self._journal.client.publish(pull, request, reply=sub.subject)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout + 1.0  # the server's 408 ends the pull before this
        while len(out) < batch:
            if messages:
                out.append(messages.popleft())
                continue
            if statuses or self._journal.closed:
                break  # 408: expired; 404 / 409: nothing, or the consumer changed
            left = deadline - loop.time()
            if left <= 0:
                break
            inbox.waiter = loop.create_future()
            try:
                await asyncio.wait((inbox.waiter,), timeout=left)
            finally:
                inbox.waiter = None
        return out

    async def _raw_inbox(self) -> tuple[_RawInbox, Subscription]:
        if self._raw is None:
            await self._subscription()  # the durable consumer exists on the server
            from swarm_actors._nats._compat import fast_subscribe

            inbox = _RawInbox()
            client = self._journal.client
            self._raw = (inbox, await fast_subscribe(client, client.new_inbox(), inbox.on_msg))
        return self._raw

    async def ack_many(self, deliveries: Sequence[RawDelivery]) -> None:
        """Acknowledge many at once: one publish each, then one round trip for them all.

        A flush (PING/PONG) returns once the server has read every acknowledgement before it,
        so this costs one round trip per batch instead of one per message (``ack``).
        """
        client = self._journal.client
        for delivery in deliveries:
            await client.publish(delivery.reply, b"+ACK")
        await client.flush(timeout=max(1, round(self._api_timeout)))

    async def __aiter__(self) -> AsyncIterator[Delivery]:
        """Deliveries as they come, until cancelled or the journal closes."""
        while not self._journal.closed:
            for delivery in await self.fetch(timeout=1.0):
                yield delivery

    async def consume(
        self, handler: Callable[[JournalEntry], Awaitable[None]], *, batch: int = 100
    ) -> None:
        """Run ``handler`` on every entry, acknowledging each after it returns.

        An entry whose handler raises is logged and handed out again (``nak``) after a
        second. Runs until cancelled or the journal closes.
        """
        while not self._journal.closed:
            for delivery in await self.fetch(batch, timeout=1.0):
                try:
                    await handler(delivery.entry)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    _log.warning(
                        "journal.handler_failed",
                        consumer=self._name,
                        sequence=delivery.entry.sequence,
                        error=f"{type(e).__name__}: {e}",
                    )
                    await delivery.nak(delay=1.0)
                else:
                    await delivery.ack()

    async def pending(self) -> int:
        """Entries not yet handed out plus those handed out and not acknowledged."""
        sub = await self._subscription()
        info = await self._api(sub.consumer_info)
        return (info.num_pending or 0) + (info.num_ack_pending or 0)

    async def set_ack_wait(self, ack_wait: float) -> None:
        """Change ``ack_wait`` on the server, for the entries handed out already too.

        Their wait counts from when they were handed out: shortened, the entries an
        acknowledger that is known to be gone took come again at once rather than after the
        old wait (``pending`` counts them meanwhile).
        """
        if not ack_wait > 0:
            raise InvalidArgumentError(f"ack_wait must be > 0 seconds, got {ack_wait}")
        sub = await self._subscription()
        info = await self._api(sub.consumer_info)
        config = dataclasses.replace(info.config, ack_wait=ack_wait)
        await self._api(lambda: self._js.add_consumer(self._journal.stream, config=config))
        self._ack_wait = ack_wait

    async def ack_pending(self) -> int:
        """Entries handed out and not yet acknowledged."""
        sub = await self._subscription()
        info = await self._api(sub.consumer_info)
        return info.num_ack_pending or 0

    async def close(self) -> None:
        """Stop consuming here; the server keeps the position (and unacked entries return)."""
        sub, self._sub = self._sub, None
        raw, self._raw = self._raw, None
        if raw is not None:
            from swarm_actors._nats._compat import unsubscribe_quietly

            await unsubscribe_quietly(self._journal.client, raw[1])
        if sub is not None and not self._journal.client.is_closed:
            from nats.errors import Error as NatsError

            with contextlib.suppress(NatsError):  # already gone with the connection
                await sub.unsubscribe()

    async def delete(self) -> None:
        """Remove the durable consumer (and its position) from the server."""
        await self.close()
        await self._js.delete_consumer(self._journal.stream, self._name)
