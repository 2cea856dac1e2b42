"""Actors with ``max_concurrency`` or a stash, and a node serving them in another process.

The types live here (not in the test modules) so that both processes know them under the same
``module:qualname`` (``concurrency_peer:Arrive``...). Run as a script it is a second OS process
on NATS::

    python tests/concurrency_peer.py NATS_URL NODE NAME

It starts a ``Gathering`` named NAME and a ``Gate`` named NAME-gate on node NODE, prints
``ready`` and serves until its stdin closes or it is killed. Tests start it with :func:`peer`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec

from helpers import ready_process
from swarm_actors import Actor, ActorSystem, handler
from swarm_actors.cluster import Cluster


class Arrive(msgspec.Struct):
    """Wait in the handler until ``together`` calls are in it at once; returns the peak."""

    together: int


class Peak(msgspec.Struct):
    """The most calls that were in a handler at once."""


class Gathering(Actor, max_concurrency=8):
    """Its handler returns only once ``together`` calls are in flight: proof of overlap.

    With fewer slots than ``together`` the first calls wait forever (their asks time out).
    """

    def __init__(self) -> None:
        self.inside = 0
        self.peak = 0
        self.changed = asyncio.Event()

    @handler
    async def arrive(self, msg: Arrive) -> int:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        self.changed.set()
        try:
            while self.peak < msg.together:
                self.changed.clear()
                await self.changed.wait()
        finally:
            self.inside -= 1
        return self.peak

    @handler
    async def get_peak(self, msg: Peak) -> int:
        return self.peak


class Work(msgspec.Struct):
    n: int


class Open(msgspec.Struct):
    """Open the gate: handle what was stashed."""


class Seen(msgspec.Struct):
    """The work items handled, in order."""


class Stashed(msgspec.Struct):
    """How many messages the stash holds."""


class Gate(Actor, stash=True):
    """Stashes ``Work`` until it is opened (a long initialization, say); returns ``n * 10``."""

    def __init__(self) -> None:
        self.open = False
        self.seen: list[int] = []

    @handler
    async def work(self, msg: Work) -> int:
        if not self.open:
            self.stash()
            return -1  # dropped: the ask is answered when the message is handled again
        self.seen.append(msg.n)
        return msg.n * 10

    @handler
    async def opened(self, msg: Open) -> int:
        self.open = True
        return self.unstash_all()

    @handler
    async def get_seen(self, msg: Seen) -> list[int]:
        return self.seen

    @handler
    async def stashed(self, msg: Stashed) -> int:
        return self.ref.stats().stashed


@asynccontextmanager
async def peer(url: str, node: str, name: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """This script in another process, serving ``name`` and ``name-gate`` on ``node``."""
    async with ready_process(str(Path(__file__)), url, node, name, stdin=True) as proc:
        yield proc


async def serve(url: str, node: str, name: str) -> None:
    async with ActorSystem(nats=url, cluster=Cluster(node=node)) as system:
        await system.start(Gathering, name=name)
        await system.start(Gate, name=f"{name}-gate")
        print("ready", flush=True)
        # Serve until the parent closes our stdin (or kills us).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)  # shown with the output if the peer fails
    import concurrency_peer  # the types under their importable name, not __main__'s

    asyncio.run(concurrency_peer.serve(*sys.argv[1:4]))
