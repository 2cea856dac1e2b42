"""A placed actor's ask: its timeout covers the wait for room in a full mailbox (issue 11 item 7).

The local ``ActorRef`` and ``VirtualRef`` cases are in ``tests/test_actor.py``
(``test_an_ask_timeout_covers_the_wait_for_room_in_a_full_mailbox``), ``tests/test_ref.py`` and
``tests/test_virtual.py``; a ``PlacedRef`` whose shard this node holds goes through the same
``VirtualRef.ask``, checked here end to end.
"""

from __future__ import annotations

import asyncio

import pytest

from helpers import Get, unique, until
from swarm_actors import Actor, ActorSystem, handler
from swarm_actors.cluster import Cluster
from swarm_actors.testing import NatsServer, settle

pytestmark = pytest.mark.asyncio

GATE: dict[str, asyncio.Event] = {}


class Narrow(Actor, mailbox_size=1):
    """A placed actor whose ``Get`` waits on the gate of its key."""

    @handler
    async def get(self, msg: Get) -> str:
        await GATE[self.key].wait()
        return "done"


async def test_a_placed_ask_times_out_while_the_mailbox_stays_full(
    nats_server: NatsServer,
) -> None:
    key = unique("narrow")
    GATE[key] = asyncio.Event()
    cluster = Cluster(node=unique("n"))
    async with ActorSystem(nats=nats_server.url, cluster=cluster) as system:
        ref = system.placed(Narrow, key)
        await until(lambda: ref.node == system.node, 10, "this node to hold the shard")
        held = asyncio.ensure_future(ref.ask(Get(), timeout=None))  # busy on the gate
        await until(lambda: ref.is_active, 10, "the activation")
        await settle()
        await ref.tell(Get())  # the mailbox (1) is full
        # The placed ref hands the local ask what is left of its 0.05 s.
        pattern = r"found the mailbox full for 0\.0[0-9]+ s \(nothing was sent\)$"
        try:
            with pytest.raises(TimeoutError, match=pattern):
                await asyncio.wait_for(ref.ask(Get(), timeout=0.05), 5.0)
        finally:
            GATE[key].set()
        assert await asyncio.wait_for(held, 5.0) == "done"
        assert await ref.ask(Get(), timeout=5.0) == "done"
