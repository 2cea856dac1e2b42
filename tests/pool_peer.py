"""The actors of the pool tests, and a node that joins a named pool from another process.

Run as a script it is a second OS process on NATS::

    python tests/pool_peer.py NATS_URL NODE POOL SIZE NODE_TTL

It opens the pool POOL with SIZE ``Worker``\\ s on node NODE, prints ``ready`` and serves until
its stdin closes (then stops cleanly) or it is killed.
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

from helpers import ready_process
from swarm_actors import Actor, ActorSystem, InvalidArgumentError, PoolRef, Ref, handler
from swarm_actors.cluster import Cluster


class Where(msgspec.Struct):
    """Ask a worker where it runs: ``(node, path)``."""

    user: str = ""


class Worker(Actor):
    """A pool member that says where it runs, and how many messages it handled."""

    def __init__(self) -> None:
        self.handled = 0

    @handler
    async def where(self, msg: Where) -> tuple[str, str]:
        self.handled += 1
        return self.system.node or "", self.ref.path


class UsePool(msgspec.Struct):
    """Ask the pool in the message ``times`` times where its members run."""

    pool: Ref[Any]
    times: int


class Relay(Actor):
    """Receives a pool ref in a message and uses it: what another node's actor does."""

    @handler
    async def use(self, msg: UsePool) -> list[tuple[str, str]]:
        assert isinstance(msg.pool, PoolRef)
        try:
            await msg.pool.resize(5)
        except InvalidArgumentError:
            pass  # a view has no members of its own to resize
        else:
            raise AssertionError("a received pool was resized")
        return [await msg.pool.ask(Where(), timeout=10.0) for _ in range(msg.times)]


@asynccontextmanager
async def pool_peer(
    url: str, node: str, pool: str, size: int, ttl: float = 10.0
) -> AsyncIterator[asyncio.subprocess.Process]:
    """This script in another process, with ``size`` members of ``pool``; killed after."""
    script = str(Path(__file__))
    async with ready_process(script, url, node, pool, str(size), str(ttl), stdin=True) as proc:
        yield proc


async def serve(url: str, node: str, pool: str, size: int, ttl: float) -> None:
    async with ActorSystem(nats=url, cluster=Cluster(node=node, node_ttl=ttl)) as system:
        await system.pool(Worker, size=size, name=pool)
        print("ready", flush=True)
        # Serve until the parent closes our stdin (or kills us).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)  # shown with the output if the peer fails
    import pool_peer as module  # the types under their importable name, not __main__'s

    url, node, pool, size, ttl = sys.argv[1:6]
    asyncio.run(module.serve(url, node, pool, int(size), float(ttl)))
