"""The ``Ref`` contract: four sibling ref kinds, each describing itself for the wire."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import Add, Get, unique
from swarm_actors import ActorRef, ActorSystem, Ref, VirtualRef
from swarm_actors.cluster import Cluster, PlacedRef, RemoteRef
from swarm_actors.testing import NatsServer
from transport_peer import Counter

KINDS = (ActorRef, RemoteRef, VirtualRef, PlacedRef)


def test_the_ref_kinds_are_siblings() -> None:
    for kind in KINDS:
        others = [other for other in KINDS if other is not kind]
        assert not any(issubclass(kind, other) for other in others), kind
        assert callable(kind.__swarm_wire__)
    # stats() only where the counters live.
    assert [kind for kind in KINDS if hasattr(kind, "stats")] == [ActorRef]


@pytest.mark.asyncio
async def test_every_kind_is_a_ref_and_says_how_to_reach_it(nats_server: NatsServer) -> None:
    name, key = unique(), unique("k")
    async with (
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("a"))) as a,
        ActorSystem(nats=nats_server.url, cluster=Cluster(node=unique("b"))) as b,
        ActorSystem() as alone,
    ):
        assert a._transport is not None
        local = await b.start(Counter, name=name)
        remote = await a.resolve(name, timeout=5.0)
        placed = a.placed(Counter, key)
        virtual = alone.virtual(Counter, key)
        refs: list[Ref[Any]] = [local, remote, placed, virtual]
        assert [type(ref) for ref in refs] == [ActorRef, RemoteRef, PlacedRef, VirtualRef]
        for ref, total in zip(refs, (2, 4, 2, 2), strict=True):  # local, remote: one actor
            assert isinstance(ref, Ref)
            assert ref.is_alive
            assert ref == ref
            assert hash(ref) == hash(ref)
            await ref.tell(Add(2))
            assert await ref.ask(Get(), timeout=5.0) == total
        assert local.path == remote.path == f"/{name}"
        assert placed.path == virtual.path == f"/Counter:{key}"
        assert len(set(refs)) == 4  # no kind equals another

        node = a._transport
        role = Counter.role
        assert remote.__swarm_wire__(node)[:4] == (b.node, name, f"/{name}", role)
        assert placed.__swarm_wire__(node)[0] == "~"  # by its virtual target, from any node
        assert placed.__swarm_wire__(node)[2] == f"/Counter:{key}"
        with pytest.raises(TypeError, match="local virtual actors"):
            virtual.__swarm_wire__(node)
    assert not virtual.is_alive  # its system stopped
    assert not placed.is_alive  # its node left the cluster
