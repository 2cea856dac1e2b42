"""Actors coordinating through the tuple space (``self.space``), with lane capabilities."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from swarm_actors import Actor, ActorSystem, SpaceGrant, handler
from swarm_actors.errors import CapabilityError
from swarm_actors.space import ANY

pytestmark = pytest.mark.asyncio


@dataclass
class Run:
    pass


class Worker(Actor, space=SpaceGrant(lanes=("task", "result"), read=False)):
    """Takes tasks until it finds the poison pill; writes one result per task."""

    @handler
    async def run(self, msg: Run) -> int:
        done = 0
        while True:
            _, n = await self.space.take(("task", int), timeout=5.0)
            if n < 0:
                return done
            await asyncio.sleep(0)  # real work would await something here
            self.space.out(("result", n, n * n))
            done += 1


async def test_bag_of_tasks_with_several_workers() -> None:
    async with ActorSystem() as system:
        workers = [await system.start(Worker) for _ in range(4)]
        runs = [asyncio.create_task(w.ask(Run())) for w in workers]
        for n in range(200):
            system.space.out(("task", n))
        results = [await system.space.take(("result", int, int), timeout=5.0) for _ in range(200)]
        for _ in workers:
            system.space.out(("task", -1))
        per_worker = await asyncio.gather(*runs)
        assert sorted(r[1] for r in results) == list(range(200))
        assert all(r[2] == r[1] ** 2 for r in results)
        assert sum(per_worker) == 200
        assert all(n > 0 for n in per_worker), "the bag was shared among the workers"
        assert len(system.space) == 0


class Snoop(Actor, space=SpaceGrant(lanes=("public",), take=False)):
    @handler
    async def run(self, msg: Run) -> str:
        self.space.out(("public", 1))
        try:
            self.space.read_nowait(("secret", ANY))
        except CapabilityError as exc:
            return exc.operation
        return "read a secret"


async def test_capability_violations_raise_and_change_nothing() -> None:
    async with ActorSystem() as system:
        system.space.out(("secret", "s3cr3t"))
        snoop = await system.start(Snoop)
        assert await snoop.ask(Run()) == "read"
        assert system.space.read_all((ANY, ANY)) == [("secret", "s3cr3t"), ("public", 1)]
        with pytest.raises(TypeError, match="lanes"):
            SpaceGrant(lanes="public")  # type: ignore[arg-type]
