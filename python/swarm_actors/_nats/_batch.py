"""Publishing a journal's events: ``HPUB`` frames built here, and atomic batches.

Two costs dominated the JetStream journal's CPU per event, both paid in the event loop's
thread: nats-py's ``publish`` (validating the subject, turning a header dict into bytes, an
f-string, a flusher kick: about half of it) and one acknowledgement per event (nats-py parses
each ``MSG``, then its JSON). So the journal builds its frames itself (:class:`Prepared`: byte
for byte what ``publish`` would send; :func:`swarm_actors._nats._compat.send_frames` hands a
run of them to nats-py at once), and :class:`BatchSender` stores a chunk of queued events as
JetStream *atomic batches* (nats-server 2.12.1+, streams with ``allow_atomic``): every message
carries ``Nats-Batch-Id`` and ``Nats-Batch-Sequence``, only the last one (``Nats-Batch-Commit:
1``) has a reply subject, and the server answers it once for the whole batch with the last
sequence and the count; the batch's messages got the sequences before it, in order. Each
message keeps its ``Nats-Msg-Id`` (the event id), so the duplicate window still covers it.

A batch is all or nothing. Whatever goes wrong with one (an error answer, a duplicate id in
it, no answer within ``ack_timeout``, a stream without ``allow_atomic``, a server that ignored
the headers and answered like for a single message), :meth:`BatchSender.store` answers
``None`` and the caller publishes the same events one by one, with their ids: what the batch
did store answers as duplicates with its sequences, so nothing is stored twice or reported
stored without an acknowledgement. A stream or server that cannot take batches turns them off
for the sender (``enabled``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from swarm_actors._log import get_logger
from swarm_actors._nats._compat import fast_subscribe, send_frames, unsubscribe_quietly

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription

__all__ = ["BATCH_MIN_SERVER", "BatchSender", "Prepared", "decode_ack", "server_batches"]

_log = get_logger("swarm_actors.journal")

BATCH_MIN_SERVER = (2, 12, 1)
"""The first nats-server release that takes ``Nats-Msg-Id`` inside atomic batches."""

_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_BATCH_MAX = 1000  # messages per batch: the server's default limit
_BATCH_NOT_ENABLED = 10174  # the stream does not allow atomic batches
_BATCH_TOO_LARGE = 10199  # more messages than the server takes in one batch
_HEADER = b"NATS/1.0\r\nNats-Msg-Id: %b\r\nNats-Batch-Id: %b\r\nNats-Batch-Sequence: %d\r\n\r\n"
_HEADER_SIZE = len(_HEADER) - 6  # without the three placeholders
_COMMIT_HEADER = _HEADER[:-2] + b"Nats-Batch-Commit: 1\r\n\r\n"
# "HPUB <subject> ", an empty reply (as nats-py writes one), <header size> <total size>, the
# header, the payload.
_FRAME = b"%b %d %d\r\n" + _HEADER + b"%b\r\n"


class ApiError(msgspec.Struct):
    """The ``error`` of a JetStream answer."""

    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct):
    """A JetStream publish acknowledgement (``batch`` and ``count``: of a committed batch)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: ApiError | None = None
    batch: str = ""
    count: int = 0


decode_ack = msgspec.json.Decoder(PubAck).decode


class Prepared:
    """An event ready to publish, encoded once (and retried as is).

    ``head`` is the start of its ``HPUB`` line (``HPUB <subject> ``) and ``mid`` its event id
    as a header value: stripped, line breaks made spaces, as nats-py writes header values
    (``translate`` costs about 2 us: only done when there is something to translate).
    """

    __slots__ = ("_tail", "head", "mid", "msg_id", "payload", "subject")

    def __init__(self, head: bytes, subject: str, payload: bytes, msg_id: str) -> None:
        self.head = head
        self.subject = subject
        self.payload = payload
        msg_id = msg_id.strip()
        if "\r" in msg_id or "\n" in msg_id:
            msg_id = msg_id.translate(_HEADER_VALUE_NEWLINES)
        self.msg_id = msg_id
        self.mid = msg_id.encode()
        self._tail: bytes | None = None

    @property
    def tail(self) -> bytes:
        """The frame after the reply subject, for a message of its own (built once)."""
        tail = self._tail
        if tail is None:
            header = b"NATS/1.0\r\nNats-Msg-Id: %b\r\n\r\n" % self.mid
            size = len(header)
            payload = self.payload
            tail = self._tail = b" %d %d\r\n%b%b\r\n" % (size, size + len(payload), header, payload)
        return tail


def server_batches(version: object) -> bool:
    """Whether a server's ``INFO`` version (``"2.12.1"``) takes deduplicated atomic batches."""
    if not isinstance(version, str):
        return False
    try:
        numbers = tuple(int(part) for part in version.split("-")[0].split(".")[:3])
    except ValueError:
        return False
    return numbers >= BATCH_MIN_SERVER


class BatchSender:
    """Stores chunks of prepared events as atomic batches (see the module docstring)."""

    def __init__(self, client: Client, *, enabled: bool) -> None:
        self._client = client
        self.enabled = enabled
        """Whether :meth:`store` tries batches (turned off when the stream cannot take them)."""
        self.max_size = _BATCH_MAX
        """Messages per batch (halved when the server says its limit is lower)."""
        self._id = os.urandom(8).hex()  # batch ids: unique across clients, at most 64 chars
        self._count = 0
        self._prefix = ""
        self._prefix_len = 0
        self._sub: Subscription | None = None
        self._waiting: dict[int, asyncio.Future[tuple[bytes, bytes | None]]] = {}

    async def start(self) -> None:
        if self._sub is None:
            self._prefix = self._client.new_inbox() + "."
            self._prefix_len = len(self._prefix)
            self._sub = await fast_subscribe(self._client, self._prefix + "*", self._on_answer)

    async def stop(self) -> None:
        if self._sub is not None:
            await unsubscribe_quietly(self._client, self._sub)
            self._sub = None

    def _on_answer(self, subject: bytes, reply: bytes, data: bytes, status: bytes | None) -> None:
        try:
            number = int(subject[self._prefix_len :])
        except ValueError:
            return
        waiter = self._waiting.pop(number, None)
        if waiter is not None and not waiter.done():
            waiter.set_result((data, status))

    async def store(self, prepared: Sequence[Prepared], timeout: float) -> list[int] | None:
        """The events' sequences once stored as batches; ``None``: publish them one by one.

        ``timeout``: how long to wait for the answers (then ``None``: the caller's retries,
        with the same ids, learn what was stored).
        """
        if not self.enabled or self._sub is None or not prepared:
            return None
        from nats.errors import Error as NatsError

        loop = asyncio.get_running_loop()
        size = self.max_size
        numbers: list[int] = []
        waiters: list[asyncio.Future[tuple[bytes, bytes | None]]] = []
        try:
            async with asyncio.timeout(timeout):
                for start in range(0, len(prepared), size):
                    frames = self._frames(prepared[start : start + size], numbers)
                    if frames is None:
                        return None
                    data, messages, payloads = frames
                    waiter = self._waiting[numbers[-1]] = loop.create_future()
                    waiters.append(waiter)
                    await send_frames(self._client, data, messages, payloads)
                answers = [await waiter for waiter in waiters]
        except (TimeoutError, NatsError) as e:
            _log.info("journal.batch_unconfirmed", events=len(prepared), error=repr(e))
            return None
        finally:
            for number in numbers:  # (answered ones are gone already)
                unanswered = self._waiting.pop(number, None)
                if unanswered is not None:
                    unanswered.cancel()
        seqs: list[int] = []
        for (data, status), start in zip(answers, range(0, len(prepared), size), strict=True):
            count = min(size, len(prepared) - start)
            if not self._accepted(data, status, count):
                return None
            last = decode_ack(data).seq
            seqs.extend(range(last - count + 1, last + 1))
        return seqs

    def _frames(
        self, chunk: Sequence[Prepared], numbers: list[int]
    ) -> tuple[bytes, int, int] | None:
        """One batch's frames, its number appended to ``numbers``; ``None``: one is too large."""
        self._count += 1
        number = self._count
        numbers.append(number)
        batch = b"%b%d" % (self._id.encode(), number)
        limit = self._client.max_payload
        parts = []
        payloads = 0
        last = len(chunk)
        fixed = _HEADER_SIZE + len(batch)
        for i, item in enumerate(chunk[:-1], 1):  # one format per message: this is per event
            payload = item.payload
            mid = item.mid
            size = fixed + len(mid) + len(str(i))
            total = size + len(payload)
            if total > limit:
                return None  # (the server would close the connection)
            payloads += len(payload)
            parts.append(_FRAME % (item.head, size, total, mid, batch, i, payload))
        item = chunk[-1]
        header = _COMMIT_HEADER % (item.mid, batch, last)
        reply = b"%b%d " % (self._prefix.encode(), number)
        size = len(header)
        total = size + len(item.payload)
        if total > limit:
            return None
        payloads += len(item.payload)
        parts.append(
            b"%b%b%d %d\r\n%b%b\r\n" % (item.head, reply, size, total, header, item.payload)
        )
        return b"".join(parts), last, payloads

    def _accepted(self, data: bytes, status: bytes | None, count: int) -> bool:
        """Whether a batch's answer says all ``count`` of its messages are stored."""
        if status is not None:  # 503: no stream leader right now
            return False
        try:
            ack = decode_ack(data)
        except msgspec.DecodeError:
            return False
        if ack.error is not None:
            if ack.error.err_code == _BATCH_NOT_ENABLED:
                self._turn_off(ack.error.description)
            elif ack.error.err_code == _BATCH_TOO_LARGE and self.max_size > 1:
                self.max_size //= 2
            return False
        if not ack.batch or ack.count != count or ack.seq < count:
            # A server that ignored the batch headers: each message was a message of its own.
            self._turn_off(f"answered {data[:200]!r} to a batch of {count}")
            return False
        return True

    def _turn_off(self, reason: str) -> None:
        self.enabled = False
        _log.info("journal.batches_off", reason=reason)
