"""Placed actors' state keys against a real server: one key per actor, and older releases' keys.

Issue 11: the first key encoding escaped a code point (``=20AC`` for "€", the key of " AC"
too), so two actors shared their persisted state. Each actor now has a key of its own, and
state stored under the old keys is read by the one actor that had the key, or refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from nats.aio.client import Client

from helpers import Add, Get, unique, until
from swarm_actors import Actor, ActorSystem, handler
from swarm_actors._core._messages import type_name
from swarm_actors._nats._cluster import STATE_BUCKET, ClusterState, virtual_target
from swarm_actors._nats._registry import (
    ENCODING_MARKER,
    KEY_ENCODING,
    legacy_key,
    name_key,
    open_bucket,
)
from swarm_actors.cluster import Cluster
from swarm_actors.errors import TransportError
from swarm_actors.testing import NatsServer

pytestmark = pytest.mark.asyncio


class Purse(Actor):
    """A total kept across passivations (in the cluster's state bucket)."""

    def __init__(self) -> None:
        self.total = 0

    @handler
    async def add(self, msg: Add) -> int:
        self.total += msg.n
        return self.total

    @handler
    async def get(self, msg: Get) -> int:
        return self.total

    def snapshot(self) -> int:
        return self.total

    def restore(self, state: int) -> None:
        self.total = state


@asynccontextmanager
async def node(url: str) -> AsyncIterator[ActorSystem]:
    async with ActorSystem(nats=url, cluster=Cluster(node=unique("n"))) as system:
        yield system


def cluster_of(system: ActorSystem) -> ClusterState:
    assert system._transport is not None
    assert system._transport.cluster is not None
    return system._transport.cluster


async def persisted(system: ActorSystem, key: str) -> None:
    """Passivate ``Purse`` ``key`` here and wait until its state is written to the bucket."""
    await system.placed(Purse, key).passivate()
    state = cluster_of(system)
    await until(lambda: not state._writers, 10, "the state write")


def target(key: str) -> str:
    return virtual_target(type_name(Purse), key, None)


async def test_actors_the_first_encoding_mixed_up_keep_separate_state(
    nats_server: NatsServer,
) -> None:
    # A session-wide server: the keys are new to it (the class is this module's).
    async with node(nats_server.url) as system:
        for one, other in (("€", " AC"), ("Ω1", ":91"), ("user-Ā", "user-\x100")):
            assert await system.placed(Purse, one).ask(Add(1000), timeout=10) == 1000
            await persisted(system, one)
            # The other actor's first activation reads its own (empty) state from the bucket.
            assert await system.placed(Purse, other).ask(Add(1), timeout=10) == 1
            await persisted(system, other)
            assert await system.placed(Purse, one).ask(Get(), timeout=10) == 1000
    async with node(nats_server.url) as fresh:  # nothing cached: every state from the bucket
        for one, other in (("€", " AC"), ("Ω1", ":91"), ("user-Ā", "user-\x100")):
            assert await fresh.placed(Purse, one).ask(Get(), timeout=10) == 1000
            assert await fresh.placed(Purse, other).ask(Get(), timeout=10) == 1


async def test_state_an_earlier_release_stored_is_read_by_its_one_owner_or_refused() -> None:
    async with NatsServer() as server:
        client = Client()
        await client.connect(server.url)
        try:
            # The bucket as a release before this one left it: no marker, version-1 keys.
            store = await open_bucket(client.jetstream(), STATE_BUCKET, memory=False, replicas=1)
            await store.put(legacy_key(target("plain")), b"\x07")  # same key in both versions
            await store.put(legacy_key(target("é")), b"\x08")  # "=E9": "é" alone had it
            await store.put(legacy_key(target("€")), b"\x09")  # " AC" had this key too
            await store.put(legacy_key(target("Ω")), b"\x0a")  # "=3A9": ":9" had it too
            async with node(server.url) as system:
                assert (await store.get(ENCODING_MARKER)).value == str(KEY_ENCODING).encode()
                assert await system.placed(Purse, "plain").ask(Get(), timeout=10) == 7
                assert await system.placed(Purse, "é").ask(Get(), timeout=10) == 8
                for shared in ("€", " AC"):
                    with pytest.raises(TransportError, match="another actor's state shared"):
                        await system.placed(Purse, shared).ask(Get(), timeout=10)
                with pytest.raises(TransportError, match="refused"):
                    await system.placed(Purse, "Ω").ask(Get(), timeout=10)
                # An adopted state is written under the current key at its next change.
                assert await system.placed(Purse, "é").ask(Add(1), timeout=10) == 9
                await persisted(system, "é")
                assert (await store.get(name_key(target("é")))).value == b"\x09"
            async with node(server.url) as again:  # the marker stays: the same decisions
                assert await again.placed(Purse, "é").ask(Get(), timeout=10) == 9
                assert await again.placed(Purse, "plain").ask(Get(), timeout=10) == 7
                with pytest.raises(TransportError, match="refused"):
                    await again.placed(Purse, "€").ask(Get(), timeout=10)
        finally:
            await client.close()
