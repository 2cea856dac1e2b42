"""Raw-bytes subscriptions: messages go to a plain function, without nats-py's ``Msg`` machinery.

nats-py hands every incoming message to ``Client._process_msg``, which parses the headers into
a dict, builds a ``Msg``, checks JetStream control messages, and queues it for a per-
subscription task that awaits the callback. That costs more than the rest of a journal replay
together (ordered push consumer: ~100k msgs/s with one header; a plain function: ~200k/s).

:func:`fast_subscribe` subscribes normally (so reconnects re-subscribe it, and ``unsubscribe``
works as usual) and routes that subscription's messages, before nats-py sees them, to
``handler(subject, reply, data, status)``: ``bytes`` as received, ``status`` the three-digit
status of a server status message (``b"408"``, ``b"100"``...) or ``None``. The handler runs in
the client's read loop: it must be quick and must not raise.

The router is installed once per client as an instance attribute shadowing ``_process_msg``
and passes every other subscription's messages to the original method. If a future nats-py
drops that method, subscriptions fall back to an ordinary callback that calls the handler the
same way (slower, same behaviour).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = ["Handler", "fast_subscribe", "unsubscribe_quietly"]

Handler = Callable[[bytes, bytes, bytes, "bytes | None"], None]
"""``handler(subject, reply, data, status)``; ``status`` is ``None`` for ordinary messages."""

_HDR_LINE = b"NATS/1.0"
_routers: weakref.WeakKeyDictionary[Client, _Router] = weakref.WeakKeyDictionary()


def status_of(headers: bytes | None) -> bytes | None:
    """The inline status code of a raw header block (``NATS/1.0 408 ...``), if it has one."""
    if headers and headers[8:9] == b" ":
        code = headers[9:12]
        if code.isdigit():
            return code
    return None


class _Router:
    __slots__ = ("handlers",)

    def __init__(self, client: Client) -> None:
        self.handlers: dict[int, Handler] = {}
        original: Callable[..., Awaitable[None]] = client._process_msg
        handlers = self.handlers

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            handler = handlers.get(sid)
            if handler is None:
                await original(sid, subject, reply, data, headers)
            else:
                handler(subject, reply, data, status_of(headers))

        client._process_msg = process_msg  # type: ignore[method-assign]


def _router(client: Client) -> _Router | None:
    router = _routers.get(client)
    if router is None and callable(getattr(client, "_process_msg", None)):
        router = _routers[client] = _Router(client)
    return router


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
