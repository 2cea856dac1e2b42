"""The testing kit: ``run_actor`` probes, the pytest fixtures, and the virtual clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from helpers import Add, Boom, Get, Tick, active
from swarm_actors import Actor, ActorSystem, OneForOne, Passivation, UnhandledMessageError, handler
from swarm_actors.testing import VirtualClock, run_actor, settle
from swarm_actors.testing import pytest_plugin as plugin

pytestmark = pytest.mark.asyncio


@dataclass
class Wait:
    pass


class Counter(Actor):
    def __init__(self, start: int = 0) -> None:
        self.total = start
        self.ticks = 0

    @handler
    async def add(self, msg: Add) -> int:
        self.total += msg.n
        return self.total

    @handler
    async def get(self, msg: Get) -> int:
        return self.total

    @handler
    async def boom(self, msg: Boom) -> None:
        raise ValueError("boom")

    @handler
    async def wait(self, msg: Wait) -> str:
        await asyncio.sleep(0)  # suspends: finished in the actor's task
        return "waited"

    @handler
    async def tick(self, msg: Tick) -> None:
        self.ticks += 1


async def test_nothing_is_handled_until_step() -> None:
    async with run_actor(Counter, 10) as probe:
        await probe.ref.tell(Add(1))
        await probe.ref.tell(Add(2))
        await settle()
        assert probe.mailbox == [Add(1), Add(2)]
        assert probe.actor.total == 10
        assert await probe.step() == 11
        assert probe.mailbox == [Add(2)]
        assert probe.stats().processed == 1
        assert await probe.step() == 13
        assert probe.mailbox == []
        with pytest.raises(LookupError, match="empty"):
            await probe.step()


async def test_an_ask_waits_for_the_step_and_gets_its_result() -> None:
    async with run_actor(Counter) as probe:
        asking = asyncio.create_task(probe.ref.ask(Add(5)))
        await settle()
        assert not asking.done()
        assert probe.mailbox == [Add(5)]
        assert await probe.step() == 5
        assert await asking == 5


async def test_step_finishes_a_suspending_handler_before_returning() -> None:
    async with run_actor(Counter) as probe:
        await probe.ref.tell(Wait())
        await probe.ref.tell(Add(1))
        assert await probe.step() == "waited"
        await settle()
        assert probe.mailbox == [Add(1)]  # the actor's task did not go on by itself
        assert await probe.run_all() == [1]


async def test_failures_raise_from_step_then_supervision_restarts() -> None:
    async with run_actor(Counter, 3) as probe:
        first = probe.actor
        await probe.ref.tell(Boom())
        await probe.ref.tell(Get())
        with pytest.raises(ValueError, match="boom"):
            await probe.step()
        await probe.settle()
        assert probe.actor is not first  # restarted: a fresh instance (start value again)
        assert probe.stats().restarts == 1
        assert probe.mailbox == [Get()]  # a restart keeps the mailbox
        assert await probe.step() == 3


async def test_unhandled_tell_raises_from_step() -> None:
    async with run_actor(Counter) as probe:
        await probe.ref.tell("not a message type it handles")
        with pytest.raises(UnhandledMessageError):
            await probe.step()


async def test_timers_move_with_the_virtual_clock() -> None:
    async with run_actor(Counter) as probe:
        assert probe.clock is not None
        probe.actor.timers.start_periodic("t", Tick(), 5.0)
        await probe.clock.advance(4.9)
        assert probe.mailbox == []
        await probe.clock.advance(10.1)
        assert probe.mailbox == [Tick(), Tick(), Tick()]
        await probe.run_all()
        assert probe.actor.ticks == 3


async def test_stop_with_drain_handles_the_rest() -> None:
    async with run_actor(Counter) as probe:
        await probe.ref.tell(Add(1))
        await probe.ref.tell(Wait())
        await probe.ref.tell(Add(2))
        assert await probe.ref.stop() == 0
        assert probe.actor.total == 3
        assert probe.stats().processed == 3


async def test_leaving_the_block_stops_actor_and_own_system() -> None:
    async with run_actor(Counter, name="probed") as probe:
        system = probe.system
        await probe.ref.tell(Add(1))
        assert system.lookup("probed") is probe.ref or system.lookup("probed") == probe.ref
    assert not probe.ref.is_alive
    assert probe.ref.stats().dropped == 1
    assert system.actors() == []


async def test_probe_in_a_running_system_with_normal_actors() -> None:
    async with ActorSystem() as system:
        normal = await system.start(Counter, name="normal")
        async with run_actor(Counter, system=system, name="manual") as probe:
            assert probe.clock is None
            await normal.tell(Add(1))
            await probe.ref.tell(Add(1))
            await settle()
            assert await normal.ask(Get()) == 1  # runs normally
            assert probe.actor.total == 0  # waits for step
            await probe.step()
            assert probe.actor.total == 1
        assert system.lookup("manual") is None
        assert normal.is_alive


# --- fixtures -------------------------------------------------------------------------------


async def test_actor_system_fixture_gives_a_running_system(actor_system: ActorSystem) -> None:
    counter = await actor_system.start(Counter, name="c")
    assert await counter.ask(Add(2)) == 2


@pytest.mark.swarm_system(
    passivation=Passivation(max_active=2), supervision=OneForOne(max_restarts=7)
)
async def test_marker_configures_the_fixture(actor_system: ActorSystem) -> None:
    assert actor_system.supervision.max_restarts == 7
    for key in "abc":
        await actor_system.virtual(Counter, key).tell(Add(1))
    await settle()
    assert actor_system.virtual_stats().active <= 2


@pytest.mark.swarm_system(passivation=Passivation(idle_after=10.0))
async def test_fixture_uses_the_virtual_clock_for_passivation(
    actor_system: ActorSystem, virtual_clock: VirtualClock
) -> None:
    ref = actor_system.virtual(Counter, "idle")
    await ref.tell(Add(1))
    await settle()
    assert active(ref)
    await virtual_clock.advance(9.0)
    assert active(ref)
    await virtual_clock.advance(12.0)
    assert not active(ref)
    assert actor_system.virtual_stats().passivations == 1


class Stuck(Actor):
    def __init__(self) -> None:
        self.never = asyncio.Event()

    @handler
    async def wait(self, msg: Wait) -> None:
        await self.never.wait()


async def test_fixture_teardown_always_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    # Drive the fixture's generator by hand: a test that leaves a handler stuck forever must
    # still end with every actor stopped (drain times out, then the rest is discarded).
    monkeypatch.setattr(plugin, "SWARM_STOP_TIMEOUT", 0.2)

    class Request:
        fixturenames: tuple[str, ...] = ()

        class node:
            @staticmethod
            def get_closest_marker(name: str) -> None:
                return None

    fixture = plugin.actor_system.__wrapped__(Request())  # type: ignore[attr-defined]
    system = await fixture.__anext__()
    stuck = await system.start(Stuck, name="stuck")
    await stuck.tell(Wait())
    await stuck.tell(Wait())
    await settle()
    with pytest.raises(StopAsyncIteration):
        await fixture.__anext__()
    assert not stuck.is_alive
    assert system.actors() == []
