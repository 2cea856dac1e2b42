"""The JetStream journal: ``Journal`` on a JetStream stream, shared by every process on NATS.

The stream (``SWARM_EVENTS`` on ``swarm.events.>`` by default) is created or updated on first
use: file storage, limits retention, a configurable ``max_age`` / ``max_bytes`` / replica count,
and a duplicate window. A journal sequence is the stream sequence.

Writing. Every event is published with ``Nats-Msg-Id`` = its event id, so the server stores an
id once per duplicate window, and an append answers only once the server acknowledged the
event (``append``: one round trip; ``append_many``: acknowledgements pipelined, up to
``max_pending`` in flight, on one wildcard reply subscription read through the raw-bytes fast
path of ``_compat``, which is why it outruns nats-py's own ``publish_async``). The frames are
built here, not by nats-py's ``publish`` (``_batch.Prepared``: the same bytes, for less).
``append_nowait``'s chunks go as JetStream atomic batches, one acknowledgement per batch
(nats-server 2.12.1+: the journal's stream is created, or updated, with ``allow_atomic``); a
batch that fails or goes unanswered is published again one event at a time, with the same ids
(see ``_batch``).
Acknowledgements that do not come (a node died, a leader election is under way, the
connection dropped) are retried with the same ids until ``timeout``: the duplicate window
makes a retry of an event that was in fact stored answer its original sequence. What could
not be confirmed raises :class:`JournalWriteError` (an error answer from the server) or
:class:`JournalTimeoutError` (no answer in time), both carrying the sequence of every event
that *was* confirmed; nothing is ever reported stored that the server did not acknowledge.
Events of one ``append_many`` get increasing sequences unless a retry was needed.

Reading. ``read`` and ``tail`` create an ephemeral pull consumer (no acks, memory storage,
removed when idle) from the start sequence or time, and pull batches of raw messages through
the fast path: the stream sequence, storage time and remaining count come from the reply
subject, so no header is parsed. ``read`` ends at the last sequence stored when it was called
(its pulls are ``no_wait``: the server's 404 says there is nothing more, also when what the
stream reports as its last sequence was lost); ``tail`` continues until cancelled or until the
journal closes. If the consumer or its pulls are lost (a node restarted, a delivery gap, no
heartbeat for 15 s), a new consumer continues from the next sequence. A message in the stream
that is not a valid event raises ``EventDecodeError`` naming its sequence, and sequences
missing from the stream (a damaged store, a deleted message; not retention) raise
``JournalGapError`` naming them; with ``errors="skip"`` both are logged
(``journal.undecodable``, ``journal.gap``) and skipped.

For at-least-once processing that survives a crash, see :meth:`JetStreamJournal.durable`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import msgspec

from swarm_actors._events._journal import ALL_EVENTS, JournalEntry, _check_filter, _compile
from swarm_actors._events._schema import SwarmEvent, decode_event, encode_event, subject_for
from swarm_actors._exceptions import (
    EventDecodeError,
    InvalidArgumentError,
    JournalClosedError,
    JournalFullError,
    JournalGapError,
    JournalTimeoutError,
    JournalWriteError,
    SubjectError,
)
from swarm_actors._log import get_logger
from swarm_actors._nats._batch import BatchSender, Prepared, decode_ack, server_batches
from swarm_actors._nats._compat import (
    fast_subscribe,
    send_frames,
    server_info,
    supports_frames,
    unsubscribe_quietly,
)
from swarm_actors._nats._conn import (
    NatsOptions,
    check_payload_size,
    connect,
    placement_pending,
    store_creation_failed,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription
    from nats.js.client import JetStreamContext

    from swarm_actors._nats._durable import DurableConsumer

__all__ = ["JetStreamJournal"]

_log = get_logger("swarm_actors.journal")
T = TypeVar("T")

_MSG_ID = "Nats-Msg-Id"
_MAX_HEADS = 1024
_WRITE_CHUNK = 256 * 1024  # bytes of frames handed to nats-py at once (its buffer: 2 MB)
_HEADER_OVERHEAD = len(b"NATS/1.0\r\nNats-Msg-Id: \r\n\r\n")
_RETRYABLE_API_CODES = frozenset({503})  # JetStream unavailable (leader election, no quorum)
_NOWAIT_CHUNK = 4096
_PULL_BATCH = 4096
_PULL_EXPIRES_NS = 30_000_000_000
_PULL_HEARTBEAT_NS = 5_000_000_000
_READER_SILENCE = 15.0  # no message, status or heartbeat for this long: the pull is lost
_READER_INACTIVE = 30.0  # the server removes a reader's consumer after this idle time
_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 1.0
_LEADER_POLL = 0.05


class _Attempt:
    """One round of publishes for one append call: which were answered, and how."""

    __slots__ = ("answered", "closed", "fatal", "retry_reason", "sent", "seqs", "tokens", "waiter")

    def __init__(self, seqs: list[int | None], waiter: asyncio.Future[None]) -> None:
        self.seqs = seqs
        self.waiter = waiter
        self.tokens: list[int] = []
        self.sent = 0
        self.answered = 0
        self.closed = False  # every publish of the round is sent (or the round gave up)
        self.fatal: str | None = None
        self.retry_reason: str | None = None

    def answer(self) -> None:
        self.answered += 1
        if self.closed and self.answered == self.sent and not self.waiter.done():
            self.waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.answered == self.sent and not self.waiter.done():
            self.waiter.set_result(None)


class _AckPipeline:
    """Publishes with a reply subject per message; acknowledgements on one subscription."""

    def __init__(self, client: Client, window: int) -> None:
        self._client = client
        self._window = window
        self.frames = supports_frames(client)
        """Whether publishes go out as frames built here (else through ``Client.publish``)."""
        self._inflight: dict[int, tuple[_Attempt, int]] = {}
        self._next_token = 0
        self._prefix = ""
        self._prefix_bytes = b""
        self._prefix_len = 0
        self._sub: Subscription | None = None
        self._room: list[asyncio.Future[None]] = []  # senders waiting for the window to drain

    async def start(self) -> None:
        self._prefix = self._client.new_inbox() + "."
        self._prefix_bytes = self._prefix.encode()
        self._prefix_len = len(self._prefix)
        self._sub = await fast_subscribe(self._client, self._prefix + "*", self._on_ack)

    async def stop(self) -> None:
        if self._sub is not None:
            await unsubscribe_quietly(self._client, self._sub)
            self._sub = None

    def _on_ack(self, subject: bytes, reply: bytes, data: bytes, status: bytes | None) -> None:
        try:
            token = int(subject[self._prefix_len :])
        except ValueError:
            return
        slot = self._inflight.pop(token, None)
        if slot is None:
            return  # late: its round already gave up on it (a retry will learn its fate)
        attempt, index = slot
        if status is not None:  # 503: no responders (no stream leader right now)
            attempt.retry_reason = f"no responders (status {status.decode()})"
        else:
            try:
                ack = decode_ack(data)
            except msgspec.DecodeError:
                attempt.fatal = f"undecodable acknowledgement {data[:80]!r}"
            else:
                if ack.error is not None:
                    text = f"{ack.error.description} (code {ack.error.code}/{ack.error.err_code})"
                    if ack.error.code in _RETRYABLE_API_CODES:
                        attempt.retry_reason = text
                    else:
                        attempt.fatal = text
                elif ack.seq > 0:
                    attempt.seqs[index] = ack.seq
        attempt.answer()
        if self._room and len(self._inflight) <= self._window // 2:
            self._wake_senders()

    def _wake_senders(self) -> None:
        room, self._room = self._room, []
        for waiter in room:
            if not waiter.done():
                waiter.set_result(None)

    async def send(
        self, attempt: _Attempt, prepared: Sequence[Prepared], indices: Sequence[int], stall: float
    ) -> None:
        """Publish ``prepared[i]`` for each index; stop early if acks stall for ``stall`` s."""
        from nats.errors import ConnectionClosedError, OutboundBufferLimitError

        try:
            if self.frames:
                await self._send_frames(attempt, prepared, indices, stall)
            else:
                await self._send_each(attempt, prepared, indices, stall)
        except OutboundBufferLimitError:
            attempt.retry_reason = "disconnected, and the outgoing buffer is full"
        except ConnectionClosedError:
            attempt.fatal = "the NATS connection is closed"
        finally:
            attempt.close()

    def _register(self, attempt: _Attempt, index: int) -> int:
        token = self._next_token
        self._next_token = token + 1
        self._inflight[token] = (attempt, index)
        attempt.tokens.append(token)
        attempt.sent += 1
        return token

    async def _send_frames(
        self, attempt: _Attempt, prepared: Sequence[Prepared], indices: Sequence[int], stall: float
    ) -> None:
        """Frames built here, handed to nats-py a run at a time (one socket write per run)."""
        client = self._client
        inflight = self._inflight
        window = self._window
        prefix = self._prefix_bytes
        parts: list[bytes] = []
        size = messages = payloads = 0
        for index in indices:
            if len(inflight) >= window:
                if parts:  # what is built goes out first: its acks make the room
                    await send_frames(client, b"".join(parts), messages, payloads)
                    parts, size, messages, payloads = [], 0, 0, 0
                if not await self._wait_room(stall):
                    attempt.retry_reason = f"no acknowledgement for {stall:g} s"
                    return
            token = self._register(attempt, index)
            item = prepared[index]
            tail = item.tail
            parts += (item.head, prefix, b"%d" % token, tail)
            size += len(tail)
            messages += 1
            payloads += len(item.payload)
            if size >= _WRITE_CHUNK:
                await send_frames(client, b"".join(parts), messages, payloads)
                parts, size, messages, payloads = [], 0, 0, 0
        if parts:
            await send_frames(client, b"".join(parts), messages, payloads)

    async def _send_each(
        self, attempt: _Attempt, prepared: Sequence[Prepared], indices: Sequence[int], stall: float
    ) -> None:
        """Through ``Client.publish``, one message at a time (a nats-py without the internals)."""
        publish = self._client.publish
        inflight = self._inflight
        prefix = self._prefix
        for index in indices:
            if len(inflight) >= self._window and not await self._wait_room(stall):
                attempt.retry_reason = f"no acknowledgement for {stall:g} s"
                return
            token = self._register(attempt, index)
            item = prepared[index]
            await publish(
                item.subject, item.payload, reply=f"{prefix}{token}", headers={_MSG_ID: item.msg_id}
            )

    async def _wait_room(self, stall: float) -> bool:
        waiter = asyncio.get_running_loop().create_future()
        self._room.append(waiter)
        await asyncio.wait((waiter,), timeout=stall)
        return waiter.done()

    def forget(self, attempt: _Attempt) -> None:
        """Drop the round's unanswered publishes (their acks, if they come, are ignored)."""
        inflight = self._inflight
        for token in attempt.tokens:
            inflight.pop(token, None)
        if self._room and len(inflight) <= self._window // 2:
            self._wake_senders()


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether two subject filters (as tokens) can match a common subject."""
    for i in range(max(len(a), len(b))):
        if i == len(a) or i == len(b):
            return False  # one is longer, and the shorter has no '>' to cover the rest
        x, y = a[i], b[i]
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    return True


def _covers(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether filter ``a`` (as tokens) matches every subject that filter ``b`` matches."""
    for i, x in enumerate(a):
        if x == ">":
            return len(b) > i
        if i == len(b) or b[i] == ">" or (x != "*" and x != b[i]):
            return False
    return len(a) == len(b)


def _rfc3339(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


class _ReaderState:
    """What a reader's raw-bytes handler hands over: data messages and status codes."""

    __slots__ = ("messages", "statuses", "waiter")

    def __init__(self) -> None:
        self.messages: collections.deque[tuple[bytes, bytes, bytes]] = collections.deque()
        self.statuses: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def on_msg(self, subject: bytes, reply: bytes, data: bytes, status: bytes | None) -> None:
        if status is None:
            self.messages.append((subject, reply, data))
        else:
            self.statuses.append(status)
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class JetStreamJournal:
    """A ``Journal`` on a JetStream stream (see the module docstring for the guarantees).

    ``client`` is a connected nats-py client (:func:`swarm_actors._nats._conn.connect`, or use
    :meth:`connect`); the journal does not close a client it was given. Keyword arguments:

    * ``stream``, ``subjects``: the stream's name and subject filter.
    * ``max_age`` (seconds, ``None``: no limit), ``max_bytes`` (``None``: no limit),
      ``replicas``: the stream's retention and replication; applied to an existing stream too,
      unless ``configure=False``.
    * ``configure``: whether to bring an existing stream to these settings (the default), or
      to use it as it is configured (``False``: they only apply when the journal creates it).
      ``False`` suits journals that many processes open with settings they do not agree on
      (replicas each computes from what it sees, say) or a stream an operator configured.
    * ``duplicate_window``: seconds during which an event id is stored once (default 120).
    * ``timeout``: how long an append may take, retries included, before
      ``JournalTimeoutError``; at most ``duplicate_window`` (retries must stay deduplicated).
    * ``ack_timeout``: how long without any acknowledgement before unanswered publishes are
      retried; ``max_pending``: publishes in flight at once; ``buffer_size``: capacity of the
      ``append_nowait`` buffer; ``api_timeout``: JetStream API calls (stream, consumer admin).
    * ``linger``: how long ``append_nowait`` lets events gather before publishing a chunk
      (seconds, default 10 ms; 0: at once); ``flush`` and ``close`` cut it short. Fewer,
      larger socket writes and ack rounds: each chunk costs the event loop a socket write,
      an acknowledgement and a few task switches whatever its size. On the role swarm (32
      coders, 8 events per item; bench/bench_swarm.py --nats) 2 ms cut the journal's CPU per
      item by about 40% against 0, and 10 ms by about half of what was left. ``append`` does
      not linger. A chunk is stored as atomic batches where the server and the stream allow
      them (``configure=False`` leaves a stream without ``allow_atomic`` as it is: one
      message per event then).
    """

    def __init__(
        self,
        client: Client,
        *,
        stream: str = "SWARM_EVENTS",
        subjects: str = ALL_EVENTS,
        max_age: float | None = None,
        max_bytes: int | None = None,
        replicas: int = 1,
        duplicate_window: float = 120.0,
        timeout: float = 30.0,
        ack_timeout: float = 2.0,
        max_pending: int = 8192,
        buffer_size: int = 65_536,
        api_timeout: float = 5.0,
        configure: bool = True,
        linger: float = 0.01,
    ) -> None:
        if not stream or any(c in stream for c in ". *>\t\r\n/\\"):
            raise InvalidArgumentError(f"invalid stream name {stream!r}")
        _check_filter(subjects)
        if max_age is not None and not max_age > 0:
            raise InvalidArgumentError(f"max_age must be > 0 seconds or None, got {max_age}")
        if max_bytes is not None and max_bytes < 1:
            raise InvalidArgumentError(f"max_bytes must be >= 1 or None, got {max_bytes}")
        if not isinstance(replicas, int) or not 1 <= replicas <= 5:
            raise InvalidArgumentError(f"replicas must be 1-5, got {replicas!r}")
        if not duplicate_window > 0:
            raise InvalidArgumentError("duplicate_window must be > 0 seconds")
        if max_age is not None and duplicate_window > max_age:
            raise InvalidArgumentError(
                f"duplicate_window ({duplicate_window:g} s) must not exceed max_age ({max_age:g} s)"
            )
        if not 0 < timeout <= duplicate_window:
            raise InvalidArgumentError(
                f"timeout must be > 0 and <= duplicate_window ({duplicate_window:g} s), "
                f"got {timeout}: retries beyond the window could store an event twice"
            )
        if not ack_timeout > 0 or not api_timeout > 0:
            raise InvalidArgumentError("ack_timeout and api_timeout must be > 0")
        if max_pending < 1 or buffer_size < 1:
            raise InvalidArgumentError("max_pending and buffer_size must be >= 1")
        if not 0 <= linger <= 1:
            raise InvalidArgumentError(f"linger must be 0-1 seconds, got {linger!r}")
        self._client = client
        self._js: JetStreamContext = client.jetstream(timeout=api_timeout)
        self._stream = stream
        self._subjects = subjects
        self._filter = _compile(subjects)
        self._heads: dict[str, bytes] = {}  # subject -> "HPUB <subject> ", once past the filter
        self._max_age = max_age
        self._max_bytes = max_bytes
        self._replicas = replicas
        self._duplicate_window = duplicate_window
        self._timeout = timeout
        self._ack_timeout = ack_timeout
        self._api_timeout = api_timeout
        self._buffer_size = buffer_size
        self._linger = linger
        self._configure = configure
        self._acks = _AckPipeline(client, max_pending)
        # append_nowait's chunks go as atomic batches where the server and stream allow it.
        self._batches = BatchSender(client, enabled=False)
        self._atomic = False  # the server takes deduplicated batches: streams allow them
        self._setup: asyncio.Task[None] | None = None
        self._closed = False
        self._owns_client = False
        self._queue: collections.deque[Prepared] = collections.deque()
        self._drainer: asyncio.Task[None] | None = None
        self._lingering: asyncio.Future[None] | None = None  # the drainer's, while it lingers
        self._nowait_error: BaseException | None = None
        # append_nowait events handed over, and how many of them were stored or failed (in
        # queue order): a flush waits for the count handed over when it was called.
        self._handed = 0
        self._settled = 0
        self._flushers: list[tuple[int, asyncio.Future[None]]] = []
        self._readers: set[_ReaderState] = set()
        self._storing = 0  # appends waiting for acknowledgements (close lets them finish)
        self._stored_all: asyncio.Event | None = None
        self._cleanups: set[asyncio.Task[None]] = set()

    @classmethod
    async def connect(cls, options: NatsOptions, **kwargs: object) -> Self:
        """A started journal on a new connection (closed by :meth:`close`); ``kwargs`` as above."""
        client = await connect(options)
        try:
            journal = cls(client, **kwargs)  # type: ignore[arg-type]
            journal._owns_client = True
            await journal.start()
        except BaseException:
            await client.close()
            raise
        return journal

    @property
    def stream(self) -> str:
        """The stream's name."""
        return self._stream

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def client(self) -> Client:
        """The NATS client the journal uses."""
        return self._client

    # --- setup ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create or update the stream and wait for its leader; done on first use otherwise."""
        if self._closed:
            raise JournalClosedError("the journal is closed")
        setup = self._setup
        if setup is None or (setup.done() and setup.exception() is not None):
            setup = self._setup = asyncio.ensure_future(self._set_up())
        if not setup.done():
            await asyncio.wait((setup,))  # a cancelled caller does not cancel the shared setup
        setup.result()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _stream_config(self) -> object:
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        return StreamConfig(
            name=self._stream,
            subjects=[self._subjects],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self._max_age or 0,
            max_bytes=self._max_bytes or -1,
            num_replicas=self._replicas,
            duplicate_window=self._duplicate_window,
            allow_atomic=True if self._atomic else None,
        )

    async def _set_up(self) -> None:
        from nats.js.api import StorageType
        from nats.js.errors import NotFoundError

        version = server_info(self._client).get("version")
        self._atomic = self._acks.frames and server_batches(version)
        config: Any = self._stream_config()
        try:
            info = await self._api(lambda: self._js.stream_info(self._stream))
        except NotFoundError:
            info = await self._api(lambda: self._js.add_stream(config))
        else:
            current = info.config
            if current.storage != StorageType.FILE:  # (a str, or the str enum)
                raise InvalidArgumentError(
                    f"stream {self._stream!r} exists with {current.storage} storage; "
                    "the journal needs file storage"
                )
            if not self._configure and self._subjects not in (current.subjects or ()):
                raise InvalidArgumentError(
                    f"stream {self._stream!r} exists on subjects {current.subjects}, "
                    f"not on {self._subjects!r}: the journal's events would not be stored"
                )
            wanted = (
                [self._subjects],
                float(self._max_age or 0),
                self._max_bytes or -1,
                self._replicas,
                float(self._duplicate_window),
                self._atomic,
            )
            have = (
                current.subjects,
                float(current.max_age or 0),
                current.max_bytes if current.max_bytes is not None else -1,
                current.num_replicas or 1,
                float(current.duplicate_window or 0),
                bool(current.allow_atomic) if self._atomic else False,
            )
            if self._configure and wanted[:-1] == have[:-1] and wanted != have:
                # Only batches to allow: the stream's other settings stay as they are.
                config = dataclasses.replace(current, allow_atomic=True)
            if self._configure and wanted != have:
                info = await self._api(lambda: self._js.update_stream(config))
        await self._wait_leader(info.cluster is not None)
        await self._acks.start()
        if self._atomic and info.config.allow_atomic:
            await self._batches.start()
            self._batches.enabled = True

    async def _wait_leader(self, clustered: bool) -> None:
        """In a cluster, wait until the stream's raft group has a leader (publishes need one)."""
        if not clustered:
            return
        async with asyncio.timeout(self._timeout):
            while True:
                info = await self._api(lambda: self._js.stream_info(self._stream))
                if info.cluster is None or info.cluster.leader:
                    return
                await asyncio.sleep(_LEADER_POLL)

    def _check_open(self) -> None:
        if self._closed:
            raise JournalClosedError("the journal is closed")

    async def _api(self, call: Callable[[], Awaitable[T]]) -> T:
        """A JetStream API call, retried while the cluster is between leaders (until timeout).

        Timeouts, "no responders" and 503 answers are what a leader election looks like
        from here, "no suitable peers: peer offline" what a cluster that formed moments ago
        answers, and "error creating store for stream" what a loaded server sometimes answers
        a new stream; they are retried with backoff. The last one is raised after ``timeout``.
        """
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeoutError
        from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        delay = _RETRY_FIRST_DELAY
        while True:
            try:
                return await call()
            except (
                NatsTimeoutError,
                NoRespondersError,
                NoStreamResponseError,
                ServiceUnavailableError,
            ) as e:
                if loop.time() + delay >= deadline:
                    raise
                _log.info("journal.api_retry", error=f"{type(e).__name__}: {e}")
            except APIError as e:
                retryable = placement_pending(e) or store_creation_failed(e)
                if not retryable or loop.time() + delay >= deadline:
                    raise
                _log.info("journal.api_retry", error=f"{type(e).__name__}: {e}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_DELAY)

    # --- writing ----------------------------------------------------------------------------

    def _prepare(self, event: SwarmEvent) -> Prepared:
        if type(event) is not SwarmEvent and not isinstance(event, SwarmEvent):
            raise InvalidArgumentError(f"expected a SwarmEvent, got {type(event).__name__}")
        subject = subject_for(event)
        head = self._heads.get(subject)
        if head is None:
            if self._filter is not None and not self._filter(subject):
                raise SubjectError(
                    f"event subject {subject!r} is outside the journal's subjects "
                    f"({self._subjects!r}): the stream would not store it",
                    token=subject,
                )
            if len(self._heads) >= _MAX_HEADS:  # (roles are open-ended)
                self._heads.clear()
            head = self._heads[subject] = b"HPUB %b " % subject.encode()
        payload = encode_event(event)
        size = len(payload) + _HEADER_OVERHEAD + len(event.event_id)
        if size > self._client.max_payload:
            check_payload_size(self._client, size)
        return Prepared(head, subject, payload, event.event_id)

    async def append(self, event: SwarmEvent) -> int:
        """Store ``event``; its journal sequence, once the server acknowledged it.

        A duplicate event id (within the duplicate window) answers the original's sequence.
        Raises ``SubjectError`` (bad role), ``MessageTooLargeError`` (over the server's max
        payload) before publishing; ``JournalWriteError`` if the server refused it;
        ``JournalTimeoutError`` if it was not confirmed within ``timeout``.
        """
        self._check_open()
        prepared = self._prepare(event)
        await self.start()
        (seq,) = await self._store([prepared])
        return seq

    async def append_many(self, events: Sequence[SwarmEvent]) -> list[int]:
        """Store ``events`` (acknowledgements pipelined); their sequences, once all are stored.

        Every event is checked and encoded before anything is published. On failure,
        ``JournalWriteError.sequences`` tells which events were confirmed (see ``append``).
        """
        self._check_open()
        prepared = [self._prepare(event) for event in events]
        if not prepared:
            return []
        await self.start()
        return await self._store(prepared)

    async def _store(self, prepared: Sequence[Prepared], *, batch: bool = False) -> list[int]:
        """Store ``prepared``: their sequences. ``batch``: try atomic batches first."""
        self._storing += 1
        try:
            deadline = asyncio.get_running_loop().time() + self._timeout
            if batch and self._batches.enabled:
                # No answer within ack_timeout: published one by one (with the same ids).
                seqs = await self._batches.store(prepared, min(self._ack_timeout, self._timeout))
                if seqs is not None:
                    return seqs
            return await self._store_attempts(prepared, deadline)
        finally:
            self._storing -= 1
            if not self._storing and self._stored_all is not None:
                self._stored_all.set()

    async def _store_attempts(self, prepared: Sequence[Prepared], deadline: float) -> list[int]:
        loop = asyncio.get_running_loop()
        seqs: list[int | None] = [None] * len(prepared)
        todo: Sequence[int] = range(len(prepared))
        delay = _RETRY_FIRST_DELAY
        while True:
            attempt = _Attempt(seqs, loop.create_future())
            try:
                try:
                    # A paused or unreachable server can block a publish (full socket
                    # buffers): the deadline bounds sending too.
                    async with asyncio.timeout_at(deadline):
                        await self._acks.send(attempt, prepared, todo, self._ack_timeout)
                except TimeoutError:
                    pass  # what is unanswered is reported below
                await self._await_answers(attempt, deadline)
            finally:
                self._acks.forget(attempt)
            todo = [i for i in todo if seqs[i] is None]
            if not todo:
                return seqs  # type: ignore[return-value]  # no None left
            if attempt.fatal is not None:
                raise JournalWriteError(
                    f"{len(todo)} of {len(seqs)} events not stored: {attempt.fatal}",
                    sequences=tuple(seqs),
                )
            reason = attempt.retry_reason or f"no acknowledgement within {self._ack_timeout:g} s"
            if loop.time() + delay >= deadline:
                raise JournalTimeoutError(
                    f"{len(todo)} of {len(seqs)} events not confirmed within "
                    f"{self._timeout:g} s (last: {reason}); appending them again is safe",
                    sequences=tuple(seqs),
                )
            _log.info("journal.append_retry", unconfirmed=len(todo), reason=reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_DELAY)

    async def _await_answers(self, attempt: _Attempt, deadline: float) -> None:
        """Until every publish of the round is answered, acks stall, or the deadline passes."""
        loop = asyncio.get_running_loop()
        while not attempt.waiter.done():
            before = attempt.answered
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait((attempt.waiter,), timeout=min(self._ack_timeout, remaining))
            if attempt.answered == before and not attempt.waiter.done():
                return  # no progress for ack_timeout: what is unanswered is retried

    def append_nowait(self, event: SwarmEvent) -> None:
        """Queue ``event`` for storage; never blocks. ``flush`` reports a failure to store it.

        Returns ``None`` (the sequence is not known yet). Raises ``JournalFullError`` when
        ``buffer_size`` events are already waiting, and the errors of ``append`` that are
        found without the server (bad role, too large). Needs a running event loop.
        """
        self._check_open()
        queue = self._queue
        if len(queue) >= self._buffer_size:
            raise JournalFullError(
                f"{len(queue)} events are waiting to be stored", capacity=self._buffer_size
            )
        queue.append(self._prepare(event))
        self._handed += 1
        drainer = self._drainer
        if drainer is None or drainer.done():  # (inline: this runs for every event)
            self._ensure_drainer()

    def _ensure_drainer(self) -> asyncio.Task[None]:
        drainer = self._drainer
        if drainer is None or drainer.done():
            drainer = self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return drainer

    async def _drain(self) -> None:
        queue = self._queue
        loop = asyncio.get_running_loop()
        while queue:
            if len(queue) < _NOWAIT_CHUNK and self._linger and not self._flushers:
                # Let a chunk gather (fewer, larger writes); a flush cuts it short.
                lingering = self._lingering = loop.create_future()
                timer = loop.call_later(self._linger, _set_unless_done, lingering)
                try:
                    await lingering
                finally:
                    timer.cancel()
                    self._lingering = None
            chunk = [queue.popleft() for _ in range(min(len(queue), _NOWAIT_CHUNK))]
            try:
                await self.start()
                await self._store(chunk, batch=True)
            except asyncio.CancelledError:
                queue.extendleft(reversed(chunk))
                raise
            except Exception as e:
                _log.error("journal.append_failed", events=len(chunk), error=str(e))
                if self._nowait_error is None:
                    self._nowait_error = e
            # Set after the error, so that a flush woken here sees it.
            self._settled += len(chunk)
            self._wake_flushers()

    def _wake_flushers(self) -> None:
        settled, waiting = self._settled, []
        for target, waiter in self._flushers:
            if target <= settled:
                if not waiter.done():
                    waiter.set_result(None)
            elif not waiter.done():  # (a cancelled flush leaves its waiter cancelled)
                waiting.append((target, waiter))
        self._flushers = waiting

    async def flush(self) -> None:
        """Wait until every event given to ``append_nowait`` before this call is stored.

        Raises the first error met storing one of them (or a later one) since the last
        ``flush``. Events handed over while it waits are not waited for: under a steady stream
        of events it still returns, once the earlier ones are settled.
        """
        self._check_open()
        await self._flush(self._handed)

    async def _flush(self, target: int | None = None) -> None:
        """Wait until ``target`` events were settled (``None``: until the queue is empty)."""
        await self._settle(target)
        error, self._nowait_error = self._nowait_error, None
        if error is not None:
            raise error

    async def _settle(self, target: int | None) -> None:
        """``_flush`` without the error: a failed event counts as settled too."""
        _set_unless_done(self._lingering)  # what is queued goes now
        if target is None:
            while self._drainer is not None and not self._drainer.done():
                await asyncio.wait((self._drainer,))  # our cancellation does not cancel it
        else:
            loop = asyncio.get_running_loop()
            while self._settled < target:
                drainer = self._drainer
                if drainer is None or drainer.done():
                    if not self._queue:
                        break  # (not seen: what is handed over stays queued until settled)
                    # A cancelled drainer put its chunk back in the queue: store it anyway.
                    drainer = self._ensure_drainer()
                waiter = loop.create_future()
                self._flushers.append((target, waiter))
                try:
                    await asyncio.wait((waiter, drainer), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()  # (a no-op once woken)

    # --- reading ----------------------------------------------------------------------------

    def read(
        self,
        *,
        start_sequence: int | None = None,
        start_time_ns: int | None = None,
        subject: str = ALL_EVENTS,
        errors: Literal["raise", "skip"] = "raise",
    ) -> AsyncGenerator[JournalEntry, None]:
        """Stored entries matching ``subject``, oldest first, up to the last one stored now.

        Events given to this journal's ``append_nowait`` before the call are stored first (a
        read sees its own journal's writes; a failure among them is left for ``flush``).

        From ``start_sequence``, or the first entry stored at or after ``start_time_ns``
        (not both), or the oldest retained. It ends at the last sequence the stream holds,
        also when entries up to the last sequence it reported are missing.

        ``errors`` decides what the read does with what it cannot deliver, an undecodable
        message or a gap (sequences missing from the stream: lost to a damaged store, or
        deleted): ``"raise"`` raises ``EventDecodeError`` naming the message's sequence, or
        ``JournalGapError`` naming the missing sequences, once every entry before it was
        yielded (read again from after it to go on); ``"skip"`` logs it
        (``journal.undecodable``, ``journal.gap``) and goes on. What retention removed is
        not a gap. An async generator: ``contextlib.aclosing`` it to release its consumer at
        once when leaving early.
        """
        self._check_open()
        self._check_read_args(start_sequence, start_time_ns, subject, errors)
        end = asyncio.ensure_future(self._bounds(settle=self._handed))
        end.add_done_callback(_consume_outcome)
        return self._replay(start_sequence, start_time_ns, subject, end, errors)

    def tail(
        self,
        *,
        start_sequence: int | None = None,
        subject: str = ALL_EVENTS,
        errors: Literal["raise", "skip"] = "raise",
    ) -> AsyncGenerator[JournalEntry, None]:
        """Entries matching ``subject`` from ``start_sequence``, then each new one as stored.

        Without ``start_sequence``, only entries stored after the call. Ends when the journal
        closes; cancel it otherwise. ``errors`` as for ``read`` (a tail without a subject filter
        knows a gap once the entry after it comes; a filtered one cannot tell).
        ``contextlib.aclosing`` it so that leaving the loop releases its consumer at once.
        """
        self._check_open()
        self._check_read_args(start_sequence, None, subject, errors)
        start: asyncio.Future[int] | None = None
        if start_sequence is None:
            start = asyncio.ensure_future(self.last_sequence())
            start.add_done_callback(_consume_outcome)
        return self._follow(start_sequence, start, subject, errors)

    def _check_read_args(
        self, start_sequence: int | None, start_time_ns: int | None, subject: str, errors: str
    ) -> None:
        if start_sequence is not None and start_time_ns is not None:
            raise InvalidArgumentError("give start_sequence or start_time_ns, not both")
        if start_sequence is not None and (
            not isinstance(start_sequence, int) or start_sequence < 1
        ):
            raise InvalidArgumentError(f"start_sequence must be >= 1, got {start_sequence!r}")
        if start_time_ns is not None and (not isinstance(start_time_ns, int) or start_time_ns < 0):
            raise InvalidArgumentError(f"start_time_ns must be >= 0, got {start_time_ns!r}")
        if errors not in ("raise", "skip"):
            raise InvalidArgumentError(f"errors must be 'raise' or 'skip', got {errors!r}")
        if not _overlap(_check_filter(subject), _check_filter(self._subjects)):
            raise SubjectError(
                f"subject filter {subject!r} is outside stream {self._stream!r} "
                f"({self._subjects}): it can match nothing",
                token=subject,
            )

    async def _follow(
        self,
        start_sequence: int | None,
        start: asyncio.Future[int] | None,
        subject: str,
        errors: str,
    ) -> AsyncGenerator[JournalEntry, None]:
        if start is not None:
            start_sequence = await start + 1
        async for entry in self._replay(start_sequence, None, subject, None, errors):
            yield entry

    async def _replay(
        self,
        start_sequence: int | None,
        start_time_ns: int | None,
        subject: str,
        end: asyncio.Future[tuple[int, int]] | None,
        errors: str,
    ) -> AsyncGenerator[JournalEntry, None]:
        """Entries from a pull consumer, reopened after a loss; ``end``: a read's bounds.

        Gaps. An unfiltered reader knows the sequence it must be handed next (``expect``):
        anything else means the sequences in between are missing. A filtered reader cannot
        tell a missing sequence from one of another subject; it relies on the server's count
        of the entries matching its filter left after each one it hands out (``remaining``):
        the stream's index still counts a message whose stored bytes are lost, and when the
        server has nothing more to hand out (a ``no_wait`` pull answered 404), what it still
        counts is missing. A read ends on that 404 or when the count is 0, rather than wait
        for a last sequence that a damaged store will never deliver.
        """
        await self.start()
        end_seq: int | None = None
        filtered = self._consumer_filter(subject) is not None
        expect = start_sequence  # unfiltered: the sequence the reader must be handed next
        first_seq = start_sequence  # the first sequence the read covers, when known
        if end is not None:
            oldest, end_seq = await end
            if end_seq == 0 or (start_sequence is not None and start_sequence > end_seq):
                return
            if start_sequence is None:
                first_seq = oldest
                if start_time_ns is None:
                    expect = oldest
        state = _ReaderState()
        self._readers.add(state)
        next_seq = start_sequence
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._closed:
                    if end is None:
                        return
                    raise JournalClosedError("the journal closed during a read")
                sub, consumer, pending = await self._open_reader(
                    state, subject, next_seq, start_time_ns if next_seq is None else None
                )
                left = pending  # entries (matching the filter) the server counts after ours
                probing = False  # a filtered read past its end: is what is counted there?
                try:
                    if end_seq is not None and pending == 0:
                        if not filtered and expect is not None and expect <= end_seq:
                            await self._report_gap(expect, end_seq, None, errors)
                        return
                    pull = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{consumer}"
                    if end_seq is None:
                        request = msgspec.json.encode(
                            {
                                "batch": _PULL_BATCH,
                                "expires": _PULL_EXPIRES_NS,
                                "idle_heartbeat": _PULL_HEARTBEAT_NS,
                            }
                        )
                        refill = _PULL_BATCH // 2
                    else:
                        # A read pulls what is there and hears 404 at once when nothing more
                        # is: one pull at a time, so that a 404 comes after all it delivers.
                        request = msgspec.json.encode({"batch": _PULL_BATCH, "no_wait": True})
                        refill = 1
                    inbox = sub.subject
                    credit = 0
                    expected = 1  # the consumer's delivery sequence
                    heard = loop.time()
                    messages, statuses = state.messages, state.statuses
                    while True:
                        if self.closed:  # (a property: mypy would narrow the attribute)
                            break
                        if credit < refill:
                            if probing:  # one message says enough
                                request = msgspec.json.encode({"batch": 1, "no_wait": True})
                            await self._client.publish(pull, request, reply=inbox)
                            credit += _PULL_BATCH
                        if not messages:
                            if statuses:
                                code = statuses.popleft()
                                heard = loop.time()
                                if code == b"404" and end_seq is not None:
                                    # Nothing more to deliver: what the read has not had up
                                    # to its end is missing.
                                    if not filtered:
                                        if expect is not None and expect <= end_seq:
                                            await self._report_gap(expect, end_seq, None, errors)
                                    elif left > 0 and first_seq is not None:
                                        await self._report_gap(first_seq, end_seq, left, errors)
                                    return
                                if code in (b"404", b"408"):
                                    credit = 0  # that pull ended: ask again
                                elif code != b"100":  # 409 & co: consumer or leader gone
                                    _log.info("journal.reader_reset", status=code.decode())
                                    break
                                continue
                            if loop.time() - heard > _READER_SILENCE:
                                _log.info("journal.reader_reset", reason="silence")
                                break
                            state.waiter = loop.create_future()
                            try:
                                await asyncio.wait((state.waiter,), timeout=_READER_SILENCE)
                            finally:
                                state.waiter = None
                            continue
                        heard = loop.time()
                        subj, reply, data = messages.popleft()
                        tokens = reply.split(b".")
                        if len(tokens) == 9:
                            sseq, dseq = int(tokens[5]), int(tokens[6])
                            stored_ns, remaining = int(tokens[7]), int(tokens[8])
                        else:
                            sseq, dseq = int(tokens[7]), int(tokens[8])
                            stored_ns, remaining = int(tokens[9]), int(tokens[10])
                        if dseq != expected:
                            _log.info("journal.reader_reset", reason="delivery gap")
                            break
                        expected += 1
                        credit -= 1
                        left = remaining
                        if not filtered:
                            if expect is not None and sseq > expect:
                                last = sseq - 1 if end_seq is None else min(sseq - 1, end_seq)
                                await self._report_gap(expect, last, None, errors)
                            expect = sseq + 1
                        if end_seq is not None and sseq > end_seq:
                            return  # (what the server counts may be stored after the end)
                        next_seq = sseq + 1
                        try:
                            event = decode_event(data)
                        except EventDecodeError as e:
                            if errors == "raise":
                                raise EventDecodeError(
                                    f"journal {self._stream} sequence {sseq} "
                                    f"({subj.decode(errors='replace')}) is not an event: {e}"
                                ) from e
                            _log.warning(
                                "journal.undecodable",
                                stream=self._stream,
                                sequence=sseq,
                                subject=subj.decode(errors="replace"),
                                error=str(e),
                            )
                        else:
                            yield JournalEntry(sseq, subj.decode(), event, stored_ns)
                        if end_seq is not None and (sseq >= end_seq or remaining == 0):
                            if filtered:
                                if remaining == 0:
                                    return
                                probing = True  # 404 or an entry after the end will tell
                                continue
                            if sseq < end_seq:
                                # The server has nothing after it: the rest up to end_seq is
                                # missing (deleted, or lost with a damaged store).
                                await self._report_gap(sseq + 1, end_seq, None, errors)
                            return
                finally:
                    await unsubscribe_quietly(self._client, sub)
                    self._delete_consumer_later(consumer)
                messages.clear()
                statuses.clear()
                await asyncio.sleep(_RETRY_FIRST_DELAY)
        finally:
            self._readers.discard(state)

    async def _report_gap(self, first: int, last: int, missing: int | None, errors: str) -> None:
        """Raise or log the gap ``first..last`` (``missing``: how many; ``None``: all of it).

        Retention removes the oldest entries, so what lies before the stream's first sequence
        now is not a gap: an unfiltered gap is cut to what follows it. A filtered count over a
        span that retention reached cannot be told apart from retention's work: not reported.
        """
        info = await self._api(lambda: self._js.stream_info(self._stream))
        oldest = int(info.state.first_seq)
        if missing is None:
            first = max(first, oldest)
            missing = last - first + 1
        elif first < oldest:
            return
        if missing <= 0 or first > last:
            return
        span = f"sequence {first}" if first == last else f"sequences {first}-{last}"
        what = (
            f"{span} missing"
            if missing == last - first + 1
            else f"{missing} {'entry' if missing == 1 else 'entries'} matching the read's "
            f"filter missing from {span}"
        )
        if errors == "raise":
            raise JournalGapError(
                f"journal {self._stream}: {what} (lost or deleted); "
                f"read from sequence {last + 1} to go on",
                first=first,
                last=last,
                missing=missing,
            )
        _log.warning("journal.gap", stream=self._stream, first=first, last=last, missing=missing)

    async def _open_reader(
        self, state: _ReaderState, subject: str, start_seq: int | None, start_ns: int | None
    ) -> tuple[Subscription, str, int]:
        """A fresh inbox subscription and ephemeral pull consumer: (sub, name, num_pending)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        if start_seq is not None:
            policy = DeliverPolicy.BY_START_SEQUENCE
        elif start_ns is not None:
            policy = DeliverPolicy.BY_START_TIME
        else:
            policy = DeliverPolicy.ALL
        config = ConsumerConfig(
            deliver_policy=policy,
            opt_start_seq=start_seq,
            opt_start_time=_rfc3339(start_ns) if start_ns is not None else None,  # type: ignore[arg-type]
            ack_policy=AckPolicy.NONE,
            filter_subject=self._consumer_filter(subject),
            inactive_threshold=_READER_INACTIVE,
            mem_storage=True,
            num_replicas=1,
        )
        sub = await fast_subscribe(self._client, self._client.new_inbox(), state.on_msg)
        try:
            info = await self._api(lambda: self._js.add_consumer(self._stream, config))
        except BaseException:
            await unsubscribe_quietly(self._client, sub)
            raise
        return sub, info.name, info.num_pending or 0

    def _consumer_filter(self, subject: str) -> str | None:
        """A reader's consumer filter: ``None`` when ``subject`` matches all the stream holds."""
        if _covers(_check_filter(subject), _check_filter(self._subjects)):
            return None
        return subject

    def _delete_consumer_later(self, name: str) -> None:
        """Remove a reader's consumer without waiting (it expires when idle anyway)."""
        if self._client.is_closed:
            return

        async def delete() -> None:
            from nats.errors import Error as NatsError

            with contextlib.suppress(NatsError, TimeoutError):  # else: expires when idle
                await self._js.delete_consumer(self._stream, name)

        task = asyncio.ensure_future(delete())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    # --- misc -------------------------------------------------------------------------------

    async def last_sequence(self) -> int:
        """Sequence of the last stored entry (0 when nothing was ever stored)."""
        return (await self._bounds())[1]

    async def _bounds(self, settle: int = 0) -> tuple[int, int]:
        """The stream's first and last sequences (what retention left, what was stored).

        First waits until ``settle`` events given to ``append_nowait`` were stored or failed,
        so that a read sees what this journal was handed before it (read your own writes).
        """
        self._check_open()
        if self._settled < settle:
            await self._settle(settle)
        await self.start()
        info = await self._api(lambda: self._js.stream_info(self._stream))
        return int(info.state.first_seq), int(info.state.last_seq)

    def durable(
        self,
        name: str,
        *,
        subject: str = ALL_EVENTS,
        start_sequence: int | None = None,
        ack_wait: float = 30.0,
        max_deliver: int = -1,
        max_ack_pending: int | None = None,
    ) -> DurableConsumer:
        """A durable consumer of this journal: at-least-once, explicit acks, survives crashes.

        See :class:`swarm_actors._nats._durable.DurableConsumer`. The server keeps its position
        under ``name``; a consumer opened again with the same name resumes after the last
        acknowledged entry, and unacknowledged entries come again after ``ack_wait``.
        ``start_sequence`` applies only when the consumer is first created.
        ``max_ack_pending`` bounds the entries handed out and not yet acknowledged (``None``:
        the server's default, 1,000); a consumer that pulls a batch while acknowledging the
        previous one needs room for both.
        """
        from swarm_actors._nats._durable import DurableConsumer

        self._check_open()
        return DurableConsumer(
            self,
            name,
            subject=subject,
            start_sequence=start_sequence,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
            api=self._api,
            api_timeout=self._api_timeout,
        )

    async def close(self) -> None:
        """Flush, then close: reads raise ``JournalClosedError``, tails end; idempotent.

        Appends already waiting for acknowledgements (in other tasks) finish first.
        """
        if self._closed:
            return
        try:
            await self._flush()
        finally:
            self._closed = True
            for state in self._readers:
                state.wake()
            if self._storing:  # appends of other tasks: their acks need the subscription
                self._stored_all = asyncio.Event()
                await self._stored_all.wait()  # bounded by their timeout
            await self._acks.stop()
            await self._batches.stop()
            if self._cleanups:
                if not self._client.is_connected:
                    # The server is gone (a live run's, once it ended): no one to ask, and a
                    # reader's consumer expires when idle anyway. Do not wait out the timeout.
                    for task in self._cleanups:
                        task.cancel()
                await asyncio.wait(self._cleanups, timeout=self._api_timeout)
            if self._owns_client:
                from swarm_actors._nats._compat import discard_pending

                discard_pending(self._client)  # buffered for a server that is gone
                try:
                    await self._client.close()
                except ConnectionError:
                    # nats-py's close writes what it buffered while reconnecting to a server
                    # that is gone (a live run's, once it ended): nothing is left to tell it.
                    _log.debug("journal.closed_after_connection_lost")


def _set_unless_done(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    """Mark a background future's exception as seen (its reader may never be iterated)."""
    if not future.cancelled():
        future.exception()
