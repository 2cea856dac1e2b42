"""Actor runtime semantics: messaging, ordering, backpressure, stopping, registry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorNameError,
    ActorRef,
    ActorSystem,
    MailboxFullError,
    UnhandledMessageError,
    handler,
)
from swarm_actors.testing import settle

pytestmark = pytest.mark.asyncio


@dataclass
class Add:
    n: int


@dataclass
class Get:
    pass


@dataclass
class Boom:
    pass


@dataclass
class Unknown:
    pass


@dataclass
class Slow:
    gate: asyncio.Event
    tag: str


class Counter(Actor):
    def __init__(self, start: int = 0) -> None:
        self.total = start
        self.log: list[Any] = []

    @handler
    async def add(self, msg: Add) -> int:
        self.total += msg.n
        self.log.append(msg.n)
        return self.total

    @handler
    async def get(self, msg: Get) -> int:
        return self.total

    @handler
    async def boom(self, msg: Boom) -> None:
        raise ValueError("boom")

    @handler
    async def slow(self, msg: Slow) -> str:
        self.log.append(f"start {msg.tag}")
        await msg.gate.wait()
        self.log.append(f"end {msg.tag}")
        return msg.tag


class Fallback(Actor):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def on_receive(self, message: Any) -> Any:
        self.seen.append(message)
        return ("echo", message)


async def test_tell_and_ask_through_typed_handlers() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Counter, 10, name="counter")
        await ref.tell(Add(1))
        ref.tell_nowait(Add(2))
        assert await ref.ask(Get(), timeout=1.0) == 13
        assert await ref.ask(Add(4)) == 17
        stats = ref.stats()
        assert stats.processed == 4
        assert stats.pending == 0


async def test_handler_for_a_base_class_serves_subclasses_and_union() -> None:
    @dataclass
    class Big(Add):
        pass

    class Union_(Actor):
        @handler
        async def either(self, msg: Get | Unknown) -> str:
            return type(msg).__name__

    async with ActorSystem() as system:
        counter = await system.start(Counter)
        assert await counter.ask(Big(5)) == 5
        either = await system.start(Union_)
        assert await either.ask(Unknown()) == "Unknown"
        assert await either.ask(Get()) == "Get"


async def test_on_receive_gets_what_no_handler_claims() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Fallback)
        assert await ref.ask(42) == ("echo", 42)
        await ref.tell("hello")
        await settle()
        assert await ref.ask(None) == ("echo", None)


async def test_unhandled_is_an_error_for_ask_and_a_dead_letter_for_tell() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Counter)
        with pytest.raises(UnhandledMessageError, match="Unknown") as info:
            await ref.ask(Unknown())
        assert info.value.actor == ref.path
        await ref.tell(Unknown())
        await settle()
        assert system.dead_letters == 1
        assert ref.stats().restarts == 0, "an unhandled message is not a failure"
        assert await ref.ask(Get()) == 0


async def test_ask_raises_the_handlers_exception() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Counter)
        with pytest.raises(ValueError, match="boom"):
            await ref.ask(Boom())
        await settle()
        assert await ref.ask(Get()) == 0


async def test_ask_timeout_raises_builtin_timeout_error() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Counter)
        gate = asyncio.Event()
        with pytest.raises(TimeoutError, match=ref.path):
            await ref.ask(Slow(gate, "a"), timeout=0.02)
        gate.set()
        assert await ref.ask(Get()) == 0
        with pytest.raises(ValueError, match="timeout"):
            await ref.ask(Get(), timeout=0)


async def test_one_message_at_a_time_even_when_handlers_await() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Counter)
        gates = [asyncio.Event() for _ in range(3)]
        replies = [asyncio.create_task(ref.ask(Slow(g, str(i)))) for i, g in enumerate(gates)]
        await settle()
        for gate in reversed(gates):
            gate.set()
            await settle()
        assert await asyncio.gather(*replies) == ["0", "1", "2"]
        actor = system.lookup(ref.name)
        assert actor is not None
        counter: Counter = actor._cell.actor  # type: ignore[assignment]
        assert counter.log == ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]


async def test_fifo_per_sender_with_concurrent_senders() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Counter)

        async def sender(base: int) -> None:
            for i in range(200):
                await ref.tell(Add(base + i))
                if i % 7 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(sender(0), sender(1000), sender(2000))
        await ref.ask(Get())
        counter: Counter = ref._cell.actor  # type: ignore[assignment]
        for base in (0, 1000, 2000):
            mine = [n for n in counter.log if base <= n < base + 1000]
            assert mine == list(range(base, base + 200))


async def test_cancelling_an_asker_never_corrupts_the_actor() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Counter)
        gate = asyncio.Event()
        asker = asyncio.create_task(ref.ask(Slow(gate, "x")))
        await settle()
        asker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asker
        gate.set()
        await settle()
        counter: Counter = ref._cell.actor  # type: ignore[assignment]
        assert counter.log == ["start x", "end x"], "the handler ran to completion"
        assert await ref.ask(Add(1)) == 1


class Small(Counter, mailbox_size=2):
    pass


async def test_bounded_mailbox_backpressure_and_nowait() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Small)
        gate = asyncio.Event()
        await ref.tell(Slow(gate, "block"))
        await settle()  # the actor is now busy in the slow handler
        await ref.tell(Add(1))
        await ref.tell(Add(2))
        with pytest.raises(MailboxFullError) as info:
            ref.tell_nowait(Add(3))
        assert info.value.capacity == 2
        blocked = asyncio.create_task(ref.tell(Add(3)))
        await settle()
        assert not blocked.done(), "tell waits while the mailbox is full"
        assert ref.stats().pending == 2
        gate.set()
        await asyncio.wait_for(blocked, 1.0)
        assert await ref.ask(Get()) == 6


async def test_stop_drains_by_default() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Counter)
        for _ in range(50):
            ref.tell_nowait(Add(1))
        assert await ref.stop() == 0
        counter: Counter = ref._cell.actor  # type: ignore[assignment]
        assert counter.total == 50
        assert not ref.is_alive
        with pytest.raises(ActorDeadError):
            await ref.tell(Add(1))
        with pytest.raises(ActorDeadError):
            await ref.ask(Get())
        assert system.lookup("counter") is None


async def test_stop_without_drain_discards_and_fails_pending_asks() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Counter)
        gate = asyncio.Event()
        busy = asyncio.create_task(ref.ask(Slow(gate, "busy")))
        await settle()
        pending_ask = asyncio.create_task(ref.ask(Get()))
        for _ in range(5):
            ref.tell_nowait(Add(1))
        await settle()
        assert await ref.stop(drain=False) == 6
        assert ref.stats().dropped == 6
        with pytest.raises(ActorDeadError):
            await pending_ask
        with pytest.raises(ActorDeadError):
            await busy


class Parent(Actor):
    async def on_start(self) -> None:
        self.kids = [await self.start_child(Recorder, name=f"kid-{i}") for i in range(2)]


STOPPED: list[str] = []


class Recorder(Actor):
    async def on_stop(self) -> None:
        STOPPED.append(self.ref.path)

    async def on_receive(self, message: Any) -> Any:
        return message


async def test_children_registry_and_subtree_stop() -> None:
    STOPPED.clear()
    async with ActorSystem() as system:
        parent = await system.start(Parent, name="parent")
        kid = system.lookup("kid-0")
        assert kid is not None
        assert kid.path == "/parent/kid-0"
        assert system.lookup("/parent/kid-1") == system.lookup("kid-1")
        assert [r.path for r in system.actors()] == ["/parent", "/parent/kid-0", "/parent/kid-1"]
        with pytest.raises(ActorNameError):
            await system.start(Recorder, name="kid-0")
        with pytest.raises(ActorNameError):
            await system.start(Recorder, name="a/b")
        await parent.stop()
        assert sorted(STOPPED) == ["/parent/kid-0", "/parent/kid-1"]
        assert system.actors() == []
        assert not kid.is_alive


async def test_failing_on_start_is_raised_and_not_registered() -> None:
    class Broken(Actor):
        async def on_start(self) -> None:
            raise RuntimeError("no")

    async with ActorSystem() as system:
        with pytest.raises(RuntimeError, match="no"):
            await system.start(Broken, name="broken")
        assert system.lookup("broken") is None
        ok = await system.start(Recorder, name="broken")
        assert await ok.ask(1) == 1


async def test_asks_sent_while_an_actor_starts_fail_if_its_start_fails() -> None:
    release = asyncio.Event()

    class Doomed(Actor):
        async def on_start(self) -> None:
            await release.wait()
            raise RuntimeError("no")

        @handler
        async def get(self, msg: Get) -> int:
            return 0

    async with ActorSystem() as system:
        starting = asyncio.ensure_future(system.start(Doomed, name="doomed"))
        await settle()
        ref = system.lookup("doomed")  # found while on_start runs: messages wait for it
        assert ref is not None
        asking = asyncio.ensure_future(ref.ask(Get()))  # no timeout: it must not hang
        await settle()
        assert not asking.done()
        release.set()
        with pytest.raises(RuntimeError, match="no"):
            await starting
        with pytest.raises(ActorDeadError, match="failed to start"):
            await asyncio.wait_for(asking, 5)
        with pytest.raises(ActorDeadError):
            await ref.tell(Get())


async def test_stop_all_on_exit_stops_everything() -> None:
    system = ActorSystem()
    async with system:
        refs = [await system.start(Counter) for _ in range(3)]
    assert all(not r.is_alive for r in refs)
    assert system.actors() == []


async def test_start_rejects_non_actor_classes() -> None:
    async with ActorSystem() as system:
        with pytest.raises(TypeError):
            await system.start(dict)  # type: ignore[type-var]


async def test_handler_definition_errors_are_raised_at_class_creation() -> None:
    with pytest.raises(TypeError, match="async def"):

        class NotAsync(Actor):
            @handler  # type: ignore[type-var]
            def sync(self, msg: Add) -> None: ...

    with pytest.raises(TypeError, match="annotate"):

        class NoAnnotation(Actor):
            @handler
            async def bare(self, msg) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(ValueError, match="mailbox_size"):

        class BadBox(Actor, mailbox_size=0):
            pass


class Hanging(Actor):
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.cancelled = False

    @handler
    async def wait(self, msg: Get) -> None:
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_discarding_stop_cuts_a_hanging_draining_stop_short() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Hanging, name="hanging")
        for _ in range(3):
            await ref.tell(Get())
        await settle()
        draining = asyncio.create_task(ref.stop())
        await settle()
        assert not draining.done()  # the first handler never finishes
        assert await ref.stop(drain=False) == 2
        assert await draining == 2
        assert ref.stats().dropped == 2
        assert not ref.is_alive


async def test_a_loop_of_inline_asks_lets_other_tasks_run() -> None:
    """Asks answered inline never suspend; every INLINE_CHECKPOINT of them yields once."""
    from swarm_actors._ref import INLINE_CHECKPOINT

    class Echo(Actor):
        @handler
        async def echo(self, msg: int) -> int:
            return msg

    async with ActorSystem() as system:
        ref = await system.start(Echo)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        start = ticks
        asks = 10 * INLINE_CHECKPOINT
        for i in range(asks):
            assert await ref.ask(i) == i
        assert ticks - start >= asks // INLINE_CHECKPOINT - 1

        async def ask_forever() -> None:
            while True:
                await ref.ask(0)

        # So a timeout around such a loop fires.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ask_forever(), 0.01)
        task.cancel()


@dataclass
class Relay:
    to: ActorRef[Any]


class Mirror(Actor):
    @handler
    async def mirror(self, msg: int) -> int:
        return msg


class Relayer(Actor):
    @handler
    async def relay(self, msg: Relay) -> int:
        return int(await msg.to.ask(7)) + 1


async def test_the_inline_checkpoint_inside_a_handler_run_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler run inline asks another idle actor inline, and that ask is the checkpoint.

    The checkpoint suspends the outer handler, which then goes on in the actor's own task (in
    another context): the inner ask must not be holding its sender token across it (once in
    128 nested inline asks this failed with "ValueError: <Token ...> was created in a
    different Context").
    """
    from swarm_actors import _ref

    async with ActorSystem() as system:
        mirror, relayer = await system.start(Mirror), await system.start(Relayer)
        monkeypatch.setattr(_ref, "_INLINE_LEFT", [1])  # the next inline ask is the checkpoint
        assert await relayer.ask(Relay(mirror)) == 8
        assert _ref._INLINE_LEFT[0] == _ref.INLINE_CHECKPOINT  # it was taken, and re-armed
        assert relayer.stats().failures == 0
        assert await relayer.ask(Relay(mirror)) == 8  # and the actor serves on
