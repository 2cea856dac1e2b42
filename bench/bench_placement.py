"""Placement locality: how many actor messages stay on one node, Hilbert vs hash placement.

Four nodes (``ActorSystem(nats=...)``, one process, one nats-server started for the run) share
the virtual actors of a full hierarchy of depth 4 and branching 8: 4,681 ``Member`` actors
(the root included), each placed by ``system.placed(Member, key, position=path)``. Each actor is
told ``Gossip`` once, from the node that holds it, and then tells ``Ping`` to each of its
siblings and to its parent: 37,440 actor-to-actor messages. The nodes' ``placement_stats``
count how each of them travelled: delivered on the sending node, or sent over NATS to the
node holding the target's shard. The same run is made with ``Placement(strategy="hash")``
(every key hashed to a shard), on a fresh server.

Reported: the share of actor-to-actor messages that stayed on one node, measured, beside the
share the placement function predicts from the shard ranges; and the wall time of two gossip
rounds: the first activates every actor (reading its state from the cluster's store), the
second finds them all active (the messages that stay local skip NATS).

Run: python bench/bench_placement.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from contextlib import AsyncExitStack
from typing import Any

import msgspec

from _common import fmt_rate, machine, progress, table
from bench_nats import bench_server, quiet_logs
from swarm_actors import Actor, ActorSystem, handler
from swarm_actors.cluster import Cluster, PlacedRef, Placement

NODES = 4
TTL = 2.0
RECEIVED = [0]
EXPECTED = [0]
ALL_ARRIVED: list[asyncio.Event] = []


class Gossip(msgspec.Struct):
    pass


class Ping(msgspec.Struct):
    pass


class Member(Actor):
    """A member of the hierarchy: on ``Gossip``, pings its siblings and its parent."""

    def __init__(self) -> None:
        self.pings = 0

    @handler
    async def gossip(self, msg: Gossip) -> int:
        path = position_of(self.key)
        if not path:
            return 0
        parent = path[:-1]
        targets = [(*parent, i) for i in range(BRANCHING[0]) if i != path[-1]]
        targets.append(parent)
        for target in targets:
            await self.system.placed(Member, key_of(target), position=target).tell(Ping())
        return len(targets)

    @handler
    async def ping(self, msg: Ping) -> None:
        self.pings += 1
        RECEIVED[0] += 1
        if RECEIVED[0] == EXPECTED[0]:
            ALL_ARRIVED[0].set()


BRANCHING = [8]


def key_of(path: tuple[int, ...]) -> str:
    return "m" + "".join(f".{p}" for p in path)


def position_of(key: str) -> tuple[int, ...]:
    return tuple(int(p) for p in key.split(".")[1:])


def hierarchy(depth: int, branching: int) -> list[tuple[int, ...]]:
    paths: list[tuple[int, ...]] = [()]
    for level in range(1, depth + 1):
        paths += list(itertools.product(range(branching), repeat=level))
    return paths


def predicted_share(placement: Placement, paths: list[tuple[int, ...]], branching: int) -> float:
    """Share of sibling/parent messages whose ends fall in one node's contiguous shard range."""

    def node(path: tuple[int, ...]) -> int:
        return (
            placement.shard(f"{Member.__module__}:{Member.__qualname__}", key_of(path), path)
            * NODES
            // (placement.shards)
        )

    same = total = 0
    for path in paths:
        if not path:
            continue
        parent = path[:-1]
        for other in [*((*parent, i) for i in range(branching) if i != path[-1]), parent]:
            total += 1
            same += node(other) == node(path)
    return same / total


async def run(url: str, placement: Placement, paths: list[tuple[int, ...]]) -> dict[str, float]:
    async with AsyncExitStack() as stack:
        systems = [
            await stack.enter_async_context(
                ActorSystem(
                    nats=url, cluster=Cluster(node=f"node{i}", node_ttl=TTL, placement=placement)
                )
            )
            for i in range(NODES)
        ]
        progress(f"{placement.strategy}: waiting for the shards to spread over {NODES} nodes")
        deadline = time.monotonic() + 60
        while any(len(s.placement_stats().shards) != placement.shards // NODES for s in systems):
            if time.monotonic() > deadline:
                raise RuntimeError("the shards did not spread evenly within 60 s")
            await asyncio.sleep(0.1)
        by_node = {s.node: s for s in systems}
        # Each actor is started by its own node (so the trigger itself is a local message).
        triggers = []
        for path in paths:
            ref = systems[0].placed(Member, key_of(path), position=path)
            assert isinstance(ref, PlacedRef)
            owner = by_node[ref.node]
            triggers.append(owner.placed(Member, key_of(path), position=path))
        before = [s.placement_stats() for s in systems]
        progress(f"{placement.strategy}: gossip round over {len(paths)} actors (activating)")
        cold, sent = await gossip(triggers)
        after = [s.placement_stats() for s in systems]
        progress(f"{placement.strategy}: second gossip round (all active)")
        warm, _ = await gossip(triggers)
    local = sum(a.sent_local - b.sent_local for a, b in zip(after, before, strict=True))
    remote = sum(a.sent_remote - b.sent_remote for a, b in zip(after, before, strict=True))
    local -= len(paths)  # the triggers (each sent by the actor's own node)
    assert local + remote == sent, (local, remote, sent)
    return {"local": local, "remote": remote, "sent": sent, "cold": cold, "warm": warm}


async def gossip(triggers: list[Any]) -> tuple[float, int]:
    """One round: every actor gossips; returns (seconds until every ping arrived, pings)."""
    RECEIVED[0] = 0
    EXPECTED[0] = (len(triggers) - 1) * BRANCHING[0]  # 7 siblings and a parent, but the root
    ALL_ARRIVED[:] = [asyncio.Event()]
    started = time.perf_counter()
    sent = sum(await asyncio.gather(*(t.ask(Gossip(), timeout=60) for t in triggers)))
    assert sent == EXPECTED[0], (sent, EXPECTED[0])
    async with asyncio.timeout(60):
        await ALL_ARRIVED[0].wait()
    return time.perf_counter() - started, sent


def main() -> None:
    quiet_logs()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="depth 3 (585 actors)")
    args = parser.parse_args()
    depth, branching = (3, 8) if args.quick else (4, 8)
    BRANCHING[0] = branching
    paths = hierarchy(depth, branching)
    rows = []
    shares = {}
    for strategy in ("hilbert", "hash"):
        placement = Placement(shards=64, strategy=strategy)
        with bench_server() as server:
            result = asyncio.run(run(server.url, placement, paths))
        share = result["local"] / result["sent"]
        shares[strategy] = share
        rows.append(
            [
                strategy,
                f"{int(result['sent']):,}",
                f"{share:.1%}",
                f"{predicted_share(placement, paths, branching):.1%}",
                f"{result['cold'] * 1e3:.0f} ms",
                f"{result['warm'] * 1e3:.0f} ms",
                fmt_rate(result["sent"] / result["warm"]),
            ]
        )
    print(f"## Placement locality ({NODES} nodes, depth {depth}, branching {branching})\n")
    print(machine())
    print()
    print(
        table(
            [
                "placement",
                "actor messages",
                "stayed on one node",
                "predicted",
                "round 1 (activating)",
                "round 2 (active)",
                "round 2 rate",
            ],
            rows,
        )
    )
    print(
        f"\nHilbert placement keeps {shares['hilbert']:.1%} of sibling and parent messages on "
        f"one node against {shares['hash']:.1%} when keys are hashed "
        f"({shares['hilbert'] / max(shares['hash'], 1e-9):.1f}x)."
    )


if __name__ == "__main__":
    main()
