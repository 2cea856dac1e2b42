"""Observing NATS subjects from a second plain client in tests, without racing the publisher.

``await client.subscribe(...); await client.flush()`` does not make a subscription live: in
nats-py (2.16) ``subscribe`` only queues ``SUB`` for the client's flusher task, while ``flush``
writes its ``PING`` straight to the socket, ahead of that ``SUB``. The ``PONG`` can then come
back before the server has registered the subscription, and a message another connection
publishes right after ``flush`` returns may reach every subscriber but this one (62 of 1000
tries on a shared 2-core machine; the server's trace shows the ``SUB`` arriving after the other
connection's ``PUB``). The same holds for a queued ``PUB``.

:func:`sync` sends a message to an inbox of the client's own, which travels behind everything
the client queued; the server handles a connection's commands in order, so when it arrives,
all of them were processed.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.aio.msg import Msg


async def sync(client: Client) -> None:
    """Return once the server has processed every command ``client`` sent or queued so far."""
    inbox = client.new_inbox()
    sub = await client.subscribe(inbox)
    await client.publish(inbox, b"")
    await sub.next_msg(timeout=10.0)
    await sub.unsubscribe()


async def observe(client: Client, subject: str) -> asyncio.Queue[Msg]:
    """Subscribe to ``subject``: every message published from now on arrives in the queue."""
    queue: asyncio.Queue[Msg] = asyncio.Queue()
    await client.subscribe(subject, cb=queue.put)
    await sync(client)
    return queue
