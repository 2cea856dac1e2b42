"""Messages and actors for the sender tests, and a node to run in another OS process.

Both processes import the types from here (``sender_peer:Ping``...). Run as a script it is a
second node on NATS::

    python tests/sender_peer.py NATS_URL NODE NAME

It starts an ``Echo`` named NAME on node NODE, prints ``ready`` and serves until its stdin
closes or it is killed.
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
from swarm_actors import Actor, ActorSystem, Ref, handler
from swarm_actors.cluster import Cluster


class Ping(msgspec.Struct):
    """Answer with ``Pong(n, ...)`` to whoever ``self.sender`` is."""

    n: int


class Pong(msgspec.Struct):
    n: int
    sender: str  # how the Ping's handler saw its sender: "<kind> <path>", or "None"


class Call(msgspec.Struct):
    """Tell ``Ping(n)`` to ``target`` (from the handler: the sender is this actor)."""

    target: Ref[Any]
    n: int


class Describe(msgspec.Struct):
    """Ask for ``describe(self.sender)`` of this very ask."""


class Pings(msgspec.Struct):
    """Ask for the ``Ping``\\ s handled so far, as ``[n, sender of the Ping]`` pairs."""


class Received(msgspec.Struct):
    """Ask for the ``Pong``\\ s received so far, as ``[n, sender of the Pong]`` pairs."""


def describe(ref: object) -> str:
    """``"<ref kind> <path>"``, or ``"None"``."""
    if ref is None:
        return "None"
    return f"{type(ref).__name__} {ref.path}"  # type: ignore[attr-defined]


class Echo(Actor):
    """Answers ``Ping`` to its sender; records ``Pong``\\ s and who sent them."""

    def __init__(self) -> None:
        self.received: list[tuple[int, str]] = []
        self.pings: list[tuple[int, str]] = []

    @handler
    async def ping(self, msg: Ping) -> None:
        sender = self.sender
        self.pings.append((msg.n, describe(sender)))
        if sender is not None:
            await sender.tell(Pong(msg.n, describe(sender)))

    @handler
    async def call(self, msg: Call) -> None:
        await msg.target.tell(Ping(msg.n))

    @handler
    async def pong(self, msg: Pong) -> None:
        self.received.append((msg.n, describe(self.sender)))

    @handler
    async def describe_sender(self, msg: Describe) -> str:
        return describe(self.sender)

    @handler
    async def received_so_far(self, msg: Received) -> list[tuple[int, str]]:
        return self.received

    @handler
    async def pings_so_far(self, msg: Pings) -> list[tuple[int, str]]:
        return self.pings


class Roamer(Echo):
    """A placed virtual actor of the cluster with ``Echo``'s handlers (state: not kept)."""


@asynccontextmanager
async def peer(url: str, node: str, name: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """This script in another process, serving ``Echo`` ``name`` on ``node``; killed after."""
    async with ready_process(str(Path(__file__)), url, node, name, stdin=True) as proc:
        yield proc


async def serve(url: str, node: str, name: str) -> None:
    async with ActorSystem(nats=url, cluster=Cluster(node=node)) as system:
        await system.start(Echo, name=name)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    import sender_peer  # the types under their importable name, not __main__'s

    asyncio.run(sender_peer.serve(*sys.argv[1:4]))
