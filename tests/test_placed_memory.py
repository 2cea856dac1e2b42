"""Memory of a node reached by many distinct placed keys (issue 11: unauthenticated input).

A plain client can name any number of distinct keys. Once such an actor is passivated and its
state written to the store, the node must forget it (its ref, agent, key, revision): memory
follows the active actors, not the keys ever named. The next message reads the state back.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import msgspec
import nats
import pytest

from helpers import Add, Get, unique, until
from swarm_actors import ActorSystem, Passivation
from swarm_actors._core._messages import type_name
from swarm_actors._nats._cluster import virtual_target
from swarm_actors._nats._wire import TellOut, frame
from swarm_actors.cluster import Cluster
from swarm_actors.testing import NatsServer
from transport_peer import Tally

KEYS = 3000
MAX_ACTIVE = 100
BYTES_PER_KEY = 100
"""Bound on the Python heap a node keeps per distinct key once all are passivated; main kept
about 800 (a ref, an agent, a key, a revision and a digest per key, for ever)."""


@asynccontextmanager
async def placed_node(server: NatsServer, passivation: Passivation) -> AsyncIterator[ActorSystem]:
    """A node holding every shard."""
    cluster = Cluster(node=unique("n"))
    async with ActorSystem(nats=server.url, cluster=cluster, passivation=passivation) as system:
        await until(lambda: len(system.placement_stats().shards) == 64, 10, "every shard held")
        yield system


IDLE = Passivation(max_active=MAX_ACTIVE, idle_after=0.2)


def forgotten(system: ActorSystem) -> bool:
    """Every actor passivated and forgotten: none left in the node's agent tree."""
    stats = system.virtual_stats()
    return stats.active == 0 and stats.known == 0


async def ask_keys(system: ActorSystem, prefix: str, count: int) -> None:
    for i in range(count):
        assert await system.placed(Tally, f"{prefix}{i}").ask(Add(1), timeout=10) == 1


@pytest.mark.asyncio
async def test_distinct_keys_are_forgotten_once_passivated(nats_server: NatsServer) -> None:
    async with placed_node(nats_server, IDLE) as system:
        # Warm up (table and cache sizes, the client's buffers), then measure from idle.
        await ask_keys(system, "warm", 300)
        await until(lambda: forgotten(system), 20, "the warm-up keys to be forgotten")
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            await ask_keys(system, "k", KEYS)
            assert system.virtual_stats().active <= MAX_ACTIVE
            await until(lambda: system.virtual_stats().active == 0, 20, "every passivation")
            await until(lambda: forgotten(system), 20, "every key to be forgotten")
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert growth < KEYS * BYTES_PER_KEY, f"{growth} bytes kept for {KEYS} passivated keys"
        assert system.virtual_stats().passivations >= KEYS
        assert system.placement_stats().remembered == 0


@pytest.mark.asyncio
async def test_a_forgotten_key_reads_its_state_back(nats_server: NatsServer) -> None:
    async with placed_node(nats_server, IDLE) as system:
        held = system.placed(Tally, "kept")  # a ref a user holds across the forgetting
        assert await held.ask(Add(5), timeout=10) == 5
        await until(lambda: forgotten(system), 20, "the key to be forgotten")
        assert await held.ask(Get(), timeout=10) == 5  # bound again, state from the store
        assert await system.placed(Tally, "kept").ask(Add(2), timeout=10) == 7
        await held.tell(Add(1))
        assert await held.ask(Get(), timeout=10) == 8
        assert system.placement_stats().remembered == 1


@pytest.mark.asyncio
async def test_messages_racing_the_forgetting_are_not_lost(nats_server: NatsServer) -> None:
    # One active actor at a time: each message to the other key passivates (and then forgets)
    # the one that ran, while tells and asks to it are on their way.
    async with placed_node(nats_server, Passivation(max_active=1)) as system:
        refs = [system.placed(Tally, key) for key in ("left", "right", "third")]
        rounds = 60
        sends = [ref.tell(Add(1)) for _ in range(rounds) for ref in refs]
        await asyncio.gather(*sends, *(ref.ask(Add(0), timeout=10) for ref in refs * rounds))
        for ref in refs:
            assert await ref.ask(Get(), timeout=10) == rounds
        fresh = [system.placed(Tally, key) for key in ("left", "right", "third")]
        assert [await ref.ask(Get(), timeout=10) for ref in fresh] == [rounds] * 3


FLOOD = 5000


def reached(system: ActorSystem, activations: int) -> bool:
    """Whether ``system`` has activated at least ``activations`` virtual actors in all."""
    return system.virtual_stats().activations >= activations


@pytest.mark.asyncio
async def test_a_flood_of_distinct_keys_from_a_plain_client_leaves_nothing_behind(
    nats_server: NatsServer,
) -> None:
    # Issue 11 item 5's attack: a client that is no node (plain nats-py, no credentials on an
    # open server) tells thousands of distinct virtual keys into a node's subject. Every tell is
    # handled, and once the actors passivate the node keeps nothing per key. Its tables keep
    # the size of their peak (a dict does not shrink until its next insertions), which is
    # bounded by how many keys are in flight at once, not by how many were ever seen: so the
    # first two floods reach that peak, and a third flood of as many new keys must leave
    # nothing more behind.
    encoder = msgspec.msgpack.Encoder()
    wire_type = type_name(Add)
    class_name = type_name(Tally)
    async with placed_node(nats_server, IDLE) as system:
        client = await nats.connect(nats_server.url)
        subject = f"swarm.node.{system.node}"

        async def flood(prefix: str) -> None:
            activations = system.virtual_stats().activations
            for start in range(0, FLOOD, 500):  # frames of 500 tells, as a fast sender would
                tells = [
                    TellOut(
                        virtual_target(class_name, f"{prefix}{i}", None), wire_type, Add(1), "", ""
                    )
                    for i in range(start, start + 500)
                ]
                await client.publish(subject, frame(tells, encoder))
                # Paced by the node: on a loaded machine an unpaced burst overflows the node's
                # subscription (a slow consumer drops tells, at most once as documented), and
                # this test is about what the handled keys leave behind, not about overload.
                target = activations + start + 500
                await until(
                    partial(reached, system, target),
                    60,
                    f"{prefix} keys up to {start + 500} activated",
                )
            await until(lambda: forgotten(system), 30, f"every {prefix} key to be forgotten")

        try:
            # Traced from the start: a table allocated untraced and resized later would show
            # as growth (its replacement is traced, its release is not).
            tracemalloc.start()
            try:
                await flood("first-")
                await flood("second-")
                gc.collect()
                before = tracemalloc.take_snapshot()
                await flood("third-")
                gc.collect()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
        finally:
            await client.close()
        stats = after.compare_to(before, "lineno")
        growth = sum(stat.size_diff for stat in stats)
        top = "\n".join(str(stat) for stat in stats[:8])
        assert growth < FLOOD * BYTES_PER_KEY, f"{growth} bytes kept for {FLOOD} keys:\n{top}"
        assert system.placement_stats().remembered == 0
        assert system.dead_letters == 0  # every tell was delivered, none dropped
