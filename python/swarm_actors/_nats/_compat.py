"""Every use of nats-py's internals, in one place: what it relies on, and why.

The rest of the NATS layer uses nats-py's public API only. What follows is private to nats-py
and may change in any release, so ``pyproject.toml`` pins the versions checked against it
(``SUPPORTED``), and ``tests/test_nats_compat.py`` fails when an installed nats-py no longer
has what is listed here (or no longer behaves as described), through a real ``nats-server``.

1. ``Client._process_msg(sid, subject, reply, data, headers)``, a coroutine method: every
   incoming message passes through it. :func:`fast_subscribe` shadows it with an instance
   attribute that routes chosen subscriptions' messages to a plain function before nats-py
   parses headers, builds a ``Msg`` and queues it for a per-subscription task: that machinery
   costs more than the rest of a journal replay together (ordered push consumer: ~100k msgs/s
   with one header; a plain function: ~200k/s), and a hop on every remote message.
2. ``Subscription._id``: the ``sid`` that ``_process_msg`` receives (the router's key).
3. ``Client._pending`` (``list[bytes]``), ``Client._pending_data_size`` and
   ``Client._transport._io_writer`` (the ``asyncio.StreamWriter`` of the TCP transport):
   :func:`write_now` hands what ``publish`` buffered to the socket at once instead of on the
   flusher task's next turn, one event-loop iteration sooner on every hop of an ask;
   :func:`discard_pending` drops it for a server that is gone, before ``close``.
4. ``Client._server_info`` (the server's ``INFO``): :func:`server_info` reads its
   ``connect_urls``, the servers a cluster advertises (nats-py exposes only the ones it added
   to its pool, not the whole list).
5. Behaviour rather than a name: ``Client.publish`` only appends to the pending buffer, so
   driving its coroutine once (:func:`start_publish`) finishes it unless the buffer is full.
6. ``Client._send_command(cmd)`` (append protocol bytes to the pending buffer; waits for the
   flusher when the buffer is over ``Client._max_pending_size``), ``Client._flush_pending()``
   and ``Client._flush_queue`` (kick the flusher task), ``Client.is_draining_pubs`` and
   ``Client.stats``: :func:`send_frames` hands nats-py a run of ``HPUB`` frames the journal
   built itself, with the checks and bookkeeping ``publish`` does for each message, but once
   for the run. ``publish`` spends more building a frame (subject validation, a header dict
   turned into bytes, an f-string) than the rest of a journal append: about half of the
   JetStream journal's CPU per event on the role swarm.

Each has a fallback that keeps the behaviour (slower) where nats-py lacks it, for a transport
that is not TCP (websocket) in particular; the test makes sure a supported release never
silently takes it.

:func:`fast_subscribe` subscribes normally (so reconnects re-subscribe it, and ``unsubscribe``
works as usual) and routes that subscription's messages to ``handler(subject, reply, data,
status)``: ``bytes`` as received, ``status`` the three-digit status of a server status message
(``b"408"``, ``b"503"``...) or ``None``. The handler runs in the client's read loop: it must be
quick, and should not raise.

Whatever arrives, nothing escapes into the read loop: nats-py ends its read loop on any exception
that reaches it (a ``UnicodeDecodeError`` from a reply subject that is not UTF-8, say, which
nats-py's own ``_process_msg`` raises as readily as a handler), and the connection then stays
deaf until the server declares it stale, about a minute later. So the router runs every message,
routed or not, under one guard: a handler (or nats-py) that raises loses that one message, which
is logged (``nats.message_failed``) and counted (:func:`message_failures`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from swarm_actors._log import get_logger

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = [
    "SUPPORTED",
    "Handler",
    "fast_subscribe",
    "message_failures",
    "routed",
    "send_frames",
    "server_info",
    "start_publish",
    "status_of",
    "supports_frames",
    "unsubscribe_quietly",
    "write_now",
]

SUPPORTED = ((2, 16), (2, 17))
"""nats-py versions checked against this module: from the first, up to the second (excluded).

``pyproject.toml`` pins the same range; widen both once the test passes with a newer release.
"""

Handler = Callable[[bytes, bytes, bytes, "bytes | None"], None]
"""``handler(subject, reply, data, status)``; ``status`` is ``None`` for ordinary messages."""

_routers: weakref.WeakKeyDictionary[Client, _Router] = weakref.WeakKeyDictionary()

_log = get_logger("swarm_actors.transport")


def status_of(headers: bytes | None) -> bytes | None:
    """The inline status code of a raw header block (``NATS/1.0 408 ...``), if it has one."""
    if headers and headers[8:9] == b" ":
        code = headers[9:12]
        if code.isdigit():
            return code
    return None


# --- 1, 2: raw-bytes subscriptions ----------------------------------------------------------


class _Router:
    __slots__ = ("failures", "handlers")

    def __init__(self, client: Client) -> None:
        self.handlers: dict[int, Handler] = {}
        self.failures = 0
        """Messages lost because their handler, or nats-py's own processing, raised."""
        original: Callable[..., Awaitable[None]] = client._process_msg
        handlers = self.handlers

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            # A try costs nothing until it catches (Python 3.11): this runs for every message.
            try:
                handler = handlers.get(sid)
                if handler is None:
                    await original(sid, subject, reply, data, headers)
                else:
                    handler(subject, reply, data, status_of(headers))
            except Exception as exc:  # never into the read loop: it would stop reading
                self.failed(subject, reply, exc)

        client._process_msg = process_msg  # type: ignore[method-assign]

    def failed(self, subject: bytes, reply: bytes, exc: Exception) -> None:
        self.failures += 1
        _log.error(
            "nats.message_failed",
            subject=subject[:200].decode(errors="replace"),
            reply=reply[:200].decode(errors="replace"),
            error=repr(exc),
            exc_info=exc,
        )


def _router(client: Client) -> _Router | None:
    router = _routers.get(client)
    if router is None and callable(getattr(client, "_process_msg", None)):
        router = _routers[client] = _Router(client)
    return router


def message_failures(client: Client) -> int:
    """Messages ``client`` received and lost because processing them raised (see above)."""
    router = _routers.get(client)
    return 0 if router is None else router.failures


def routed(client: Client, sub: Subscription) -> bool:
    """Whether ``sub``'s messages take the raw-bytes route (not the fallback callback)."""
    router = _routers.get(client)
    return router is not None and getattr(sub, "_id", None) in router.handlers


async def fast_subscribe(client: Client, subject: str, handler: Handler) -> Subscription:
    """Subscribe ``handler`` to ``subject`` (see the module docstring); returns the subscription."""
    router = _router(client)
    if router is None:  # pragma: no cover - only with a nats-py without _process_msg

        async def fallback(msg: Msg) -> None:
            status = (msg.headers or {}).get("Status")
            handler(
                msg.subject.encode(),
                (msg.reply or "").encode(),
                msg.data,
                status.encode() if status else None,
            )

        return await client.subscribe(subject, cb=fallback)
    sub = await client.subscribe(subject)
    router.handlers[sub._id] = handler
    return sub


async def unsubscribe_quietly(client: Client, sub: Subscription) -> None:
    """Unsubscribe (and unroute); nothing is raised if the connection is already closed."""
    router = _routers.get(client)
    if router is not None:
        router.handlers.pop(sub._id, None)
    if client.is_closed:
        return
    from nats.errors import BadSubscriptionError, ConnectionClosedError, ConnectionDrainingError

    # A closed or draining connection, or an unsubscribed subscription: it is gone anyway.
    with contextlib.suppress(BadSubscriptionError, ConnectionClosedError, ConnectionDrainingError):
        await sub.unsubscribe()


# --- 3: writing without waiting for the flusher ----------------------------------------------


def write_now(client: Client, limit: int) -> bool:
    """Hand what ``publish`` buffered to the socket now, instead of in nats-py's flusher task.

    Only while the socket keeps up: once the kernel and asyncio hold more than ``limit`` bytes
    unsent, writing is left to the flusher, which waits for the socket to drain (so nats-py's
    buffer fills and ``publish`` waits: backpressure). Returns whether it wrote; ``False`` also
    with a transport that lacks these internals (websocket): the flusher does it all.
    """
    try:
        transport = client._transport
        if not client._pending or transport is None or not client.is_connected:
            return False
        writer = transport._io_writer  # type: ignore[attr-defined]
        if writer.transport.get_write_buffer_size() > limit:
            return False
        transport.writelines(client._pending)
        client._pending = []
        client._pending_data_size = 0
    except AttributeError:  # pragma: no cover - another nats-py transport
        return False
    return True


def discard_pending(client: Client) -> None:
    """Drop what ``publish`` buffered while the client waits to reconnect to a server that is gone.

    nats-py's ``close`` writes it to the lost socket first, raises ``ConnectionResetError`` and
    leaves its subscriptions' tasks pending. For a client given up on (a live run's server
    stopped): nothing buffered can reach anyone.
    """
    if client.is_connected:
        return
    with contextlib.suppress(AttributeError):  # pragma: no branch - another nats-py
        client._pending = []
        client._pending_data_size = 0


# --- 4: the server's INFO --------------------------------------------------------------------


def server_info(client: Client) -> dict[str, object]:
    """The ``INFO`` the connected server sent (``{}`` if nats-py keeps it elsewhere)."""
    info = getattr(client, "_server_info", None)
    return info if isinstance(info, dict) else {}


# --- 5: publishing without awaiting -----------------------------------------------------------


def start_publish(
    client: Client, subject: str, payload: bytes, reply: str, headers: dict[str, str] | None
) -> tuple[Coroutine[Any, Any, None], Any] | None:
    """Run ``client.publish`` until it first suspends.

    ``None`` when it finished (the frame is in nats-py's buffer: the usual case); otherwise the
    suspended coroutine and what it yielded, for the caller to finish in a task (nats-py waits
    for its flusher: the buffer is full). Exceptions of ``publish`` propagate.
    """
    coro = client.publish(subject, payload, reply=reply, headers=headers)
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return coro, yielded


# --- 6: frames built by the caller ------------------------------------------------------------


_DIRECT_WRITE_LIMIT = 256 * 1024  # unsent bytes beyond which the flusher writes (backpressure)


def supports_frames(client: Client) -> bool:
    """Whether :func:`send_frames` can hand ``client`` raw frames (else: ``publish`` each)."""
    return all(
        hasattr(client, name)
        for name in ("_send_command", "_flush_pending", "_flush_queue", "_pending_data_size")
    )


async def send_frames(client: Client, frames: bytes, messages: int, payload_bytes: int) -> None:
    """Send ``frames``, complete ``PUB``/``HPUB`` protocol lines of ``messages`` messages.

    Checked and accounted as ``publish`` checks and accounts each message (``payload_bytes``:
    the sum of their payload sizes, for ``Client.stats``): ``ConnectionClosedError``,
    ``ConnectionDrainingError``, and ``OutboundBufferLimitError`` while disconnected when the
    reconnect buffer has no room for them. The caller checked each payload's size and built
    the frames right: nats-py does not look inside them. Written to the socket at once like
    :func:`write_now` does, else by nats-py's flusher.
    """
    from nats.errors import ConnectionClosedError, ConnectionDrainingError, OutboundBufferLimitError

    if client.is_closed:
        raise ConnectionClosedError
    if client.is_draining_pubs:
        raise ConnectionDrainingError
    if not client.is_connected:
        limit = client._max_pending_size
        if limit <= 0 or len(frames) + client._pending_data_size > limit:
            raise OutboundBufferLimitError
    stats = client.stats
    stats["out_msgs"] += messages
    stats["out_bytes"] += payload_bytes
    await client._send_command(frames)
    # To the socket now, while it keeps up (3): the flusher task need not wake for it.
    if not write_now(client, _DIRECT_WRITE_LIMIT) and (
        client._flush_queue is not None and client._flush_queue.empty()
    ):
        await client._flush_pending()
