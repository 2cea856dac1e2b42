"""Topic message types and actors both processes know, and a node to run in another process.

Run as a script it is a second OS process on NATS::

    python tests/topics_peer.py NATS_URL NODE NAME PATTERN[,PATTERN...]

It starts a ``Listener`` named NAME on node NODE, subscribed to the patterns, prints ``ready``
and serves until its stdin closes or it is killed. Tests start it with :func:`peer`.
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
from swarm_actors.events import SwarmEvent


class News(msgspec.Struct):
    n: int
    topic: str = ""


class Publish(msgspec.Struct):
    """Ask a ``Listener`` to publish ``count`` ``News`` on ``topic``; it answers the count."""

    topic: str
    count: int


class Seen(msgspec.Struct):
    """Ask a ``Listener`` for the ``News.n`` it received, in order."""


class Decide(msgspec.Struct):
    """Ask a ``Listener`` to record a decision; it answers the event's id."""

    choice: str


class Events(msgspec.Struct):
    """Ask a ``Listener`` for the ids of the events it received."""


class Listener(Actor):
    """Subscribes to ``patterns`` when it starts; keeps what it receives."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = patterns
        self.news: list[int] = []
        self.events: list[str] = []

    async def on_start(self) -> None:
        for pattern in self.patterns:
            await self.subscribe(pattern)

    @handler
    async def on_news(self, msg: News) -> None:
        self.news.append(msg.n)

    @handler
    async def on_event(self, msg: SwarmEvent) -> None:
        self.events.append(msg.event_id)

    @handler
    async def publish(self, msg: Publish) -> int:
        for i in range(msg.count):
            await self.system.publish(msg.topic, News(i, msg.topic))
        return msg.count

    @handler
    async def seen(self, msg: Seen) -> list[int]:
        return self.news

    @handler
    async def decide_now(self, msg: Decide) -> str:
        return self.decide(msg.choice).event_id

    @handler
    async def seen_events(self, msg: Events) -> list[str]:
        return self.events


@asynccontextmanager
async def peer(
    url: str, node: str, name: str, patterns: list[str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """This script in another process, serving ``Listener`` ``name`` on ``node``; killed after."""
    script = str(Path(__file__))
    async with ready_process(script, url, node, name, ",".join(patterns), stdin=True) as proc:
        yield proc


async def serve(url: str, node: str, name: str, patterns: list[str]) -> None:
    async with ActorSystem(nats=url, cluster=Cluster(node=node)) as system:
        await system.start(Listener, patterns, name=name)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    import topics_peer  # the types under their importable name, not __main__'s

    url, node, name, patterns = sys.argv[1:5]
    asyncio.run(topics_peer.serve(url, node, name, patterns.split(",")))
