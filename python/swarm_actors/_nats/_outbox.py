"""Outgoing frames: envelopes buffered per destination node and published in batches.

Envelopes are encoded straight into a per-destination buffer (``_Outgoing``, after a 5-byte
header filled in at flush time). All buffers are flushed by one ``loop.call_soon`` callback, so
everything sent to a node in one event-loop iteration travels as one NATS message, and a buffer
is flushed at once when it passes ``flush_bytes`` (a quarter of the server's ``max_payload``,
at most 64 KiB). A message that alone exceeds the payload limit is refused before anything is
sent (``MessageTooLargeError``).

``publish`` is driven synchronously: nats-py only appends to its write buffer. If it has to wait
for nats-py to flush, it finishes in a task and ``stalled`` is that task, which ``tell`` waits
for (backpressure). What nats-py buffered is then handed to the socket at once
(``_write_now``) instead of on its flusher task's next turn, which saves an event-loop
iteration on every hop of an ask. Both rely on nats-py internals, kept in ``_compat``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from swarm_actors._core._cell import _Resume
from swarm_actors._exceptions import MessageTooLargeError, TransportError
from swarm_actors._log import get_logger
from swarm_actors._nats._compat import start_publish, write_now
from swarm_actors._nats._wire import FRAME_HEADER, TYPE_NAMES, TellOut, seal, type_name

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["DIRECT_WRITE_BYTES", "FLUSH_BYTES", "Outbox", "node_subject"]

_log = get_logger("swarm_actors.transport")

FLUSH_BYTES = 64 * 1024
"""A destination's buffer is sent once it holds this much (or a quarter of max_payload)."""
DIRECT_WRITE_BYTES = 256 * 1024
"""Unsent bytes in the socket's buffer beyond which writes go through nats-py's flusher."""


def node_subject(node: str) -> str:
    """The subject a node receives frames on."""
    return f"swarm.node.{node}"


class _Outgoing:
    """A frame being filled: encoded envelopes after a 5-byte header, and what to send it with."""

    __slots__ = ("buffer", "count", "node", "trace")

    def __init__(self) -> None:
        self.buffer = bytearray(FRAME_HEADER)
        self.count = 0
        self.node: str | None = None  # set when it holds asks: the "no responders" subject
        self.trace = ""  # traceparent of its first envelope (a header when it is alone)


class Outbox:
    """The frames a node is filling, and their publication on its NATS client.

    ``reply_prefix`` is the node's (see ``_transport``): frames holding asks to node ``d`` are
    published with the reply subject ``<reply_prefix>.<d>`` (:meth:`reply_to`), where the asks'
    answers come back, and where the server's "no responders" status says that nobody listens
    at the destination.
    """

    def __init__(
        self,
        client: Client,
        encoder: Any,
        node_id: str,
        reply_prefix: str,
        tasks: set[asyncio.Task[Any]],
    ) -> None:
        self.client = client
        self._encode_into = encoder.encode_into
        self._node_id = node_id
        self._reply_prefix = reply_prefix
        self._replies: dict[str, str] = {}
        self._tasks = tasks  # the transport's: cancelled when it closes
        self._loop = asyncio.get_running_loop()
        self.max_payload: int = client.max_payload
        self.flush_bytes = min(FLUSH_BYTES, self.max_payload // 4)
        self._out: dict[str, _Outgoing] = {}  # frames being filled, per destination subject
        self._subjects: dict[str, str] = {}
        self._flush_scheduled = False
        self._quiet = True  # nothing was sent in this loop iteration yet
        self.stalled: asyncio.Future[None] | None = None
        """A publish waiting for nats-py to flush (senders wait for it), or ``None``."""
        self.frames_sent = 0
        """NATS messages published with frames (for tests and benchmarks)."""
        self.closed = False

    @property
    def filling(self) -> bool:
        """Whether some frame holds envelopes not sent yet."""
        return bool(self._out)

    def close(self) -> None:
        """Send what is buffered; refuse anything more (``TransportError``)."""
        self.flush_all()
        self.closed = True

    def subject_of(self, node: str) -> str:
        """The frame subject of ``node`` (cached: senders ask for it on every message)."""
        subject = self._subjects.get(node)
        if subject is None:
            subject = self._subjects[node] = node_subject(node)
        return subject

    def reply_to(self, node: str) -> str:
        """The subject where ``node`` answers this node's asks (cached, as ``subject_of``)."""
        reply = self._replies.get(node)
        if reply is None:
            reply = self._replies[node] = f"{self._reply_prefix}.{node}"
        return reply

    def tell(
        self,
        subject: str,
        name: str,
        message: Any,
        trace: str,
        sender: str,
        hops: int = 0,
        origin: Any = None,
    ) -> None:
        """Buffer a tell to ``name`` on the node of ``subject`` (the hot path of remote tells).

        ``hops``: how many nodes forwarded it already (placed actors whose shard moved);
        ``origin``: the ref its handler's ``self.sender`` is (``None``: nobody).
        """
        out = self._out.get(subject)
        if out is None:
            out = self._open(subject)
        buffer = out.buffer
        start = len(buffer)
        cls = type(message)
        wire_type = TYPE_NAMES.get(cls)
        if wire_type is None:
            wire_type = type_name(cls)
        try:
            envelope = TellOut(name, wire_type, message, trace, sender, hops, origin)
            self._encode_into(envelope, buffer, -1)
        except BaseException:
            del buffer[start:]
            raise
        out.count += 1
        if trace and out.count == 1:
            out.trace = trace
        if len(buffer) >= self.flush_bytes:
            self._full(subject, out, start)

    def _open(self, subject: str) -> _Outgoing:
        """A new frame for ``subject``, flushed at the end of this loop iteration."""
        if self.closed:
            raise TransportError(f"node {self._node_id} is closed")
        out = self._out[subject] = _Outgoing()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush_all)
        return out

    def append(self, subject: str, envelope: Any, trace: str = "", node: str | None = None) -> None:
        """Buffer any envelope; ``node``: it is an ask to that node (see ``_flush``)."""
        out = self._out.get(subject)
        if out is None:
            out = self._open(subject)
        buffer = out.buffer
        start = len(buffer)
        try:
            self._encode_into(envelope, buffer, -1)
        except BaseException:
            del buffer[start:]
            raise
        out.count += 1
        if trace and out.count == 1:
            out.trace = trace
        if node is not None:
            out.node = node
        if len(buffer) >= self.flush_bytes:
            self._full(subject, out, start)
        elif node is not None and self._quiet and out.count == 1:
            # The first ask of this loop iteration goes at once (an iteration sooner: a
            # sequential asker waits on every hop); later ones are batched as usual.
            self._quiet = False
            self._flush(subject)
            self._write_now()

    def _full(self, subject: str, out: _Outgoing, start: int) -> None:
        """The frame reached ``flush_bytes`` with the envelope at ``start``: send it.

        An envelope that alone exceeds the payload limit is taken back out and refused; one
        that does not fit beside the others is sent in a frame of its own.
        """
        buffer = out.buffer
        size = len(buffer) - start
        if size + FRAME_HEADER > self.max_payload:
            del buffer[start:]
            out.count -= 1
            raise MessageTooLargeError(
                f"message of {size} bytes encoded exceeds the server's max_payload of "
                f"{self.max_payload} bytes",
                size=size,
                limit=self.max_payload,
            )
        if len(buffer) > self.max_payload:
            alone = buffer[start:]
            del buffer[start:]
            out.count -= 1
            self._flush(subject)
            single = self._out[subject] = _Outgoing()
            single.buffer += alone
            single.count = 1
            single.node = out.node  # it may be an ask (a spare reply subject is harmless)
            out = single
        self._flush(subject)

    def flush_all(self) -> None:
        self._flush_scheduled = False
        self._quiet = True
        for subject in list(self._out):
            self._flush(subject)
        self._write_now()

    def _write_now(self) -> None:
        """Hand what nats-py buffered to the socket now, instead of in its flusher task.

        nats-py's ``publish`` appends to a list that a flusher task writes out on the next
        event-loop iteration; doing that here saves one iteration on each hop of an ask (its
        flusher then finds nothing to do). Only while the socket keeps up (``DIRECT_WRITE_BYTES``
        unsent at most): see ``_compat.write_now``, which holds the nats-py internals it needs.
        """
        write_now(self.client, DIRECT_WRITE_BYTES)

    def _flush(self, subject: str) -> None:
        out = self._out.pop(subject, None)
        if out is None or not out.count:
            return
        buffer = out.buffer
        seal(buffer, out.count)
        headers = {"traceparent": out.trace} if out.trace and out.count == 1 else None
        reply = self.reply_to(out.node) if out.node is not None else ""
        self.frames_sent += 1
        self.publish(subject, bytes(buffer), reply, headers)

    def publish(
        self, subject: str, payload: bytes, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        """Publish without awaiting: nats-py only buffers, unless its buffer is full."""
        try:
            started = start_publish(self.client, subject, payload, reply, headers)
        except Exception as exc:  # closed connection, bad subject: this frame is lost
            _log.warning("transport.publish_failed", subject=subject, error=repr(exc))
            return
        if started is None:
            return
        coro, yielded = started
        task = self._loop.create_task(_finish_publish(coro, yielded, subject))
        self._track(task)
        self.stalled = task
        task.add_done_callback(self._unstall)

    def _unstall(self, task: asyncio.Task[None]) -> None:
        if self.stalled is task:
            self.stalled = None

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _finish_publish(coro: Any, yielded: Any, subject: str) -> None:
    try:
        await _Resume(coro, yielded)
    except Exception as exc:
        _log.warning("transport.publish_failed", subject=subject, error=repr(exc))
