"""Message types and actors shared by the transport tests, and a node to run in another process.

The types live here and in ``helpers`` (not in the test module) so that both processes know them
under the same ``module:qualname``: ``helpers:Add``, ``transport_peer:Record`` and so on.

Run as a script it is a second OS process on NATS::

    python tests/transport_peer.py NATS_URL NODE NAME [NODE_TTL]

It starts a ``Counter`` named NAME on node NODE, prints ``ready`` and serves until its stdin
closes (then stops cleanly) or it is killed. Tests start it with :func:`peer`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from helpers import Add, Get, ready_process
from swarm_actors import Actor, ActorSystem, Passivation, Ref, handler
from swarm_actors.cluster import Cluster


class Boom(msgspec.Struct):
    text: str


class Sleep(msgspec.Struct):
    seconds: float


class AskBack(msgspec.Struct):
    """Ask ``who`` for its total and return it (a ref inside a message)."""

    who: Ref[Any]  # any kind of ref: the receiving side gets the one that reaches it


class Record(msgspec.Struct):
    item: int


class Totals(msgspec.Struct):
    total: int
    seen: list[int]


class Counter(Actor):
    def __init__(self) -> None:
        self.total = 0
        self.seen: list[int] = []

    @handler
    async def add(self, msg: Add) -> None:
        self.total += msg.n

    @handler
    async def record(self, msg: Record) -> None:
        self.seen.append(msg.item)

    @handler
    async def get(self, msg: Get) -> int:
        return self.total

    @handler
    async def boom(self, msg: Boom) -> None:
        raise KeyError(msg.text)

    @handler
    async def sleep(self, msg: Sleep) -> str:
        await asyncio.sleep(msg.seconds)
        return "slept"

    @handler
    async def ask_back(self, msg: AskBack) -> int:
        result: int = await msg.who.ask(Get(), timeout=5.0)
        return result

    @handler
    async def totals(self, msg: Totals) -> Totals:
        return Totals(self.total, self.seen)


class Tally(Actor):
    """A virtual actor the cluster places: a total that survives passivation and handover."""

    def __init__(self) -> None:
        self.total = 0

    @handler
    async def add(self, msg: Add) -> int:
        self.total += msg.n
        return self.total

    @handler
    async def get(self, msg: Get) -> int:
        return self.total

    @handler
    async def where(self, msg: str) -> str:
        node = self.system.node
        assert node is not None
        return node

    def snapshot(self) -> int:
        return self.total

    def restore(self, state: int) -> None:
        self.total = state


@asynccontextmanager
async def peer(
    url: str, node: str, name: str, ttl: float = 10.0
) -> AsyncIterator[asyncio.subprocess.Process]:
    """This script in another process, serving ``Counter`` ``name`` on ``node``; killed after."""
    async with ready_process(str(Path(__file__)), url, node, name, str(ttl), stdin=True) as proc:
        yield proc


async def serve(url: str, node: str, name: str, ttl: float) -> None:
    # Idle virtual actors are passivated (their state written to the cluster) within ~0.4 s.
    async with ActorSystem(
        nats=url, cluster=Cluster(node=node, node_ttl=ttl), passivation=Passivation(idle_after=0.2)
    ) as system:
        await system.start(Counter, name=name)
        print("ready", flush=True)
        # Serve until the parent closes our stdin (or kills us).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)  # shown with the output if the peer fails
    import transport_peer  # the types under their importable name, not __main__'s

    url, node, name = sys.argv[1:4]
    ttl = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    asyncio.run(transport_peer.serve(url, node, name, ttl))
