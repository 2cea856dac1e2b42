"""The stash: ``self.stash()`` defers the message being handled, ``unstash_all`` brings it back.

Locally (tells and asks, inline and queued), its bound, stop, restart, ``max_concurrency`` and
misuse; and across two OS processes over NATS.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from concurrency_peer import Gate, Open, Seen, Stashed, Work, peer
from helpers import Fail, instance, unique, until, until_async
from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorSystem,
    InvalidArgumentError,
    MailboxFullError,
    handler,
)
from swarm_actors.cluster import RemoteRef
from swarm_actors.testing import NatsServer

pytestmark = pytest.mark.asyncio


async def test_stashed_tells_and_asks_are_handled_in_order_after_unstash_all() -> None:
    async with ActorSystem() as system:
        gate = await system.start(Gate)
        first = asyncio.ensure_future(gate.ask(Work(1)))  # inline: the actor is idle
        await until(lambda: gate.stats().stashed == 1, poll=0)

        async def tell_then_ask() -> int:
            gate.tell_nowait(Work(2))
            answer: int = await gate.ask(Work(3))  # queued behind Work(2): not inline
            return answer

        third = asyncio.ensure_future(tell_then_ask())
        await until(lambda: gate.stats().stashed == 3, what="three messages stashed")
        assert not first.done()
        assert not third.done()
        assert await gate.ask(Open()) == 3
        assert await first == 10  # answered by the handler that finally handled it
        assert await third == 30
        assert await gate.ask(Seen()) == [1, 2, 3]
        assert gate.stats().stashed == 0


async def test_unstashed_messages_go_before_those_already_queued() -> None:
    async with ActorSystem() as system:
        gate = await system.start(Gate)
        await gate.tell(Work(1))
        await gate.tell(Work(2))
        await until(lambda: gate.stats().stashed == 2)
        # Queued together: Work(3) is in the mailbox when Open's handler unstashes.
        gate.tell_nowait(Open())
        gate.tell_nowait(Work(3))
        assert await gate.ask(Seen()) == [1, 2, 3]


async def test_the_stash_is_bounded_by_the_mailbox_size() -> None:
    class Small(Gate, mailbox_size=2):
        pass

    async with ActorSystem() as system:
        gate = await system.start(Small)
        await gate.tell(Work(1))
        await gate.tell(Work(2))
        await until(lambda: gate.stats().stashed == 2)
        with pytest.raises(MailboxFullError, match=r"stash of .* is full") as info:
            await gate.ask(Work(3))  # its handler's stash() raised: the asker gets it
        assert info.value.capacity == 2
        assert gate.stats().stashed == 2
        await gate.ask(Open())
        assert await gate.ask(Seen()) == [1, 2]


@pytest.mark.parametrize("drain", [True, False])
async def test_a_stop_fails_the_stashed_asks(drain: bool) -> None:
    async with ActorSystem() as system:
        gate = await system.start(Gate)
        asks = [asyncio.ensure_future(gate.ask(Work(n))) for n in range(3)]
        await gate.tell(Work(3))
        await until(lambda: gate.stats().stashed == 4)
        assert await gate.stop(drain=drain) == 4  # discarded, draining or not
        results = await asyncio.gather(*asks, return_exceptions=True)
        assert all(isinstance(r, ActorDeadError) for r in results), results
        assert gate.stats().dropped == 4


async def test_a_restart_puts_the_stash_back_in_front_of_the_mailbox() -> None:
    starts: list[int] = []

    class Restarting(Gate):
        def __init__(self) -> None:
            super().__init__()
            starts.append(1)
            self.open = len(starts) > 1  # the instance after a restart is ready

        @handler
        async def fail(self, msg: Fail) -> None:
            raise RuntimeError("a tell's failure: restart")

    async with ActorSystem() as system:
        gate = await system.start(Restarting)
        asked = asyncio.ensure_future(gate.ask(Work(1)))
        await until(lambda: gate.stats().stashed == 1, poll=0)
        await gate.tell(Work(2))
        await until(lambda: gate.stats().stashed == 2)
        await gate.tell(Fail())
        assert await asked == 10  # handled by the new instance
        assert await gate.ask(Seen()) == [1, 2]
        assert gate.stats().restarts == 1


async def test_with_max_concurrency_each_call_stashes_its_own_message() -> None:
    class Many(Actor, max_concurrency=4, stash=True):
        def __init__(self) -> None:
            self.ready = asyncio.Event()
            self.seen: list[str] = []

        @handler
        async def work(self, msg: str) -> str:
            if msg == "open":
                self.ready.set()
                return str(self.unstash_all())
            await asyncio.sleep(0)  # stash after an await, with other calls in flight
            if not self.ready.is_set():
                self.stash()
                return "dropped"
            self.seen.append(msg)
            return msg.upper()

    async with ActorSystem() as system:
        ref = await system.start(Many)
        asks = [asyncio.ensure_future(ref.ask(m)) for m in "abcdef"]
        await until(lambda: ref.stats().stashed == 6)
        assert ref.stats().in_flight == 0
        assert await ref.ask("open") == "6"
        assert await asyncio.gather(*asks) == list("ABCDEF")
        assert instance(ref).seen == list("abcdef")  # started in order: 4 slots, no awaits


async def test_an_error_after_stash_is_the_handlers_and_unstashes_nothing() -> None:
    class Careless(Actor, stash=True):
        @handler
        async def work(self, msg: str) -> None:
            self.stash()
            self.stash()  # again: nothing more
            raise ValueError(msg)

    async with ActorSystem() as system:
        ref = await system.start(Careless)
        with pytest.raises(ValueError, match="oops"):
            await ref.ask("oops")
        assert ref.stats().stashed == 0


async def test_a_stashed_ask_times_out_like_any_ask() -> None:
    async with ActorSystem() as system:
        gate = await system.start(Gate)
        with pytest.raises(TimeoutError):
            await gate.ask(Work(1), timeout=0.05)
        assert gate.stats().stashed == 1
        assert await gate.ask(Open()) == 1  # handled later; its late answer goes nowhere
        assert await gate.ask(Seen()) == [1]


async def test_stash_needs_the_class_keyword_and_a_handler() -> None:
    class NoStash(Actor):
        @handler
        async def work(self, msg: str) -> None:
            self.stash()

        @handler
        async def again(self, msg: int) -> int:
            return self.unstash_all()

    class EarlyStash(Actor, stash=True):
        async def on_start(self) -> None:
            self.stash()

    async with ActorSystem() as system:
        ref = await system.start(NoStash)
        with pytest.raises(InvalidArgumentError, match=r"NoStash\(Actor, stash=True\)"):
            await ref.ask("x")
        with pytest.raises(InvalidArgumentError, match="stash=True"):
            await ref.ask(1)
        with pytest.raises(InvalidArgumentError, match="call it in a handler"):
            await system.start(EarlyStash)


async def test_stash_must_be_a_bool() -> None:
    with pytest.raises(InvalidArgumentError, match="stash must be True or False"):

        class Bad(Actor, stash="yes"):  # type: ignore[arg-type]
            pass


async def test_stashed_asks_across_os_processes(nats_server: NatsServer) -> None:
    """Asks from another process wait in the stash and are answered once it is unstashed."""
    name, node = unique(), unique("peer")
    async with ActorSystem(nats=nats_server.url) as system, peer(nats_server.url, node, name):
        gate: Any = await system.resolve(f"{name}-gate", timeout=10.0)
        assert isinstance(gate, RemoteRef)
        asks = [asyncio.ensure_future(gate.ask(Work(n), timeout=10.0)) for n in range(5)]
        await gate.tell(Work(5))

        async def all_stashed() -> bool:
            stashed: int = await gate.ask(Stashed(), timeout=10.0)
            return stashed == 6

        await until_async(all_stashed, what="the peer's gate stashed all six")
        assert not any(a.done() for a in asks)
        assert await gate.ask(Open(), timeout=10.0) == 6
        assert await asyncio.gather(*asks) == [0, 10, 20, 30, 40]
        assert sorted(await gate.ask(Seen(), timeout=10.0)) == [0, 1, 2, 3, 4, 5]
