"""Actor runtime semantics: messaging, ordering, backpressure, stopping, registry."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, cast

import pytest

from helpers import Add, Boom, Get, Unknown, count_turns
from log_capture import capture_logs
from swarm_actors import (
    Actor,
    ActorDeadError,
    ActorNameError,
    ActorRef,
    ActorSystem,
    AskCycleError,
    InvalidArgumentError,
    MailboxFullError,
    SystemStoppedError,
    Timeouts,
    UnhandledMessageError,
    WrongLoopError,
    handler,
)
from swarm_actors.events import MemoryJournal, SignalKind, SystemSignal
from swarm_actors.testing import settle

pytestmark = pytest.mark.asyncio


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
        assert isinstance(actor, ActorRef)
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
        with pytest.raises(ActorNameError):  # a subject token must not end in a newline
            await system.start(Recorder, name="kid-9\n")
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
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.cancelled = False

    @handler
    async def wait(self, msg: Get) -> str:
        self.entered.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "released"


async def test_a_draining_stop_lets_the_handler_in_progress_finish() -> None:
    """``stop()`` waits for a handler that is mid-await, even with nothing queued.

    Only ``stop(drain=False)`` cancels a handler in progress; here its asker gets the answer.
    """
    async with ActorSystem() as system:
        ref = await system.start(Hanging, name="hanging")
        hanging: Hanging = ref._cell.actor  # type: ignore[assignment]
        asking = asyncio.create_task(ref.ask(Get()))
        await hanging.entered.wait()  # the handler awaits its gate; the mailbox is empty
        # A callback runs only once this task suspends: the gate opens after the stop below has
        # stopped taking messages and decided whether to wait for the handler.
        asyncio.get_running_loop().call_soon(hanging.gate.set)
        assert await ref.stop() == 0
        assert not hanging.cancelled
        assert await asyncio.wait_for(asking, 1.0) == "released"
        assert not ref.is_alive


def _unstarted(ref: ActorRef[Any]) -> bool:
    """Whether ``ref``'s actor handed a suspended handler to a task that has not started yet."""
    task = ref._cell.task
    if task is None:
        return False
    finish = cast("Generator[Any, Any, None]", task.get_coro())  # Cell._finish's
    return inspect.getgeneratorstate(finish) == inspect.GEN_CREATED


async def test_a_discarding_stop_before_the_handlers_task_starts_fails_the_inline_asker() -> None:
    """``stop(drain=False)`` just after an inline ask's handler suspended.

    The ask runs the handler in the asker's task up to its first await, then hands it to a task
    of the actor's own; the stop comes in the same loop iteration, before that task's first
    step. The handler must still be cancelled and its asker answered with ``ActorDeadError``.
    """
    async with ActorSystem() as system:
        ref = await system.start(Hanging, name="hanging")
        hanging: Hanging = ref._cell.actor  # type: ignore[assignment]

        async def stop_now() -> int:
            assert hanging.entered.is_set()  # the case under test
            assert _unstarted(ref)
            return await ref.stop(drain=False)

        # Tasks take their first step in the order they were made, in the next loop iteration.
        asking = asyncio.create_task(ref.ask(Get()))
        stopping = asyncio.create_task(stop_now())
        assert await asyncio.wait_for(stopping, 2.0) == 0
        with pytest.raises(ActorDeadError):
            await asyncio.wait_for(asking, 2.0)
        assert hanging.cancelled
        assert not ref.is_alive
        assert ref._cell.task is None
        assert not ref._cell.busy


async def test_a_discarding_stop_cuts_a_draining_one_before_the_handlers_task_starts() -> None:
    """The draining stop resumes after the handler suspended, before its task's first step.

    The draining stop waits for the queued message; ``stop(drain=False)`` cuts it short; the
    dispatcher's turn then starts the handler, which suspends and is handed to a task; the
    draining stop resumes before that task's first step, and must still cancel the handler.
    """
    async with ActorSystem() as system:
        ref = await system.start(Hanging, name="hanging")
        hanging: Hanging = ref._cell.actor  # type: ignore[assignment]
        seen: list[bool] = []

        def check() -> None:  # runs after the dispatcher's turn, before the draining stop resumes
            drained = ref._cell.drained
            seen.append(hanging.entered.is_set() and _unstarted(ref))  # the case under test
            seen.append(drained is not None and drained.done())

        # Each of these runs, in this order, in the next loop iteration.
        draining = asyncio.create_task(ref.stop())  # waits for the queued message
        cutting = asyncio.create_task(ref.stop(drain=False))
        ref.tell_nowait(Get())  # schedules the dispatcher's turn
        asyncio.get_running_loop().call_soon(check)
        assert await asyncio.wait_for(draining, 2.0) == 0
        assert await asyncio.wait_for(cutting, 2.0) == 0
        assert seen == [True, True]
        assert hanging.cancelled
        assert not ref.is_alive
        assert ref._cell.task is None
        assert not ref._cell.busy


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
    from swarm_actors._core._ref import INLINE_CHECKPOINT

    class Echo(Actor):
        @handler
        async def echo(self, msg: int) -> int:
            return msg

    async with ActorSystem() as system:
        ref = await system.start(Echo)
        async with count_turns() as turns:
            asks = 10 * INLINE_CHECKPOINT
            for i in range(asks):
                assert await ref.ask(i) == i
            assert turns.count >= asks // INLINE_CHECKPOINT - 1

        async def ask_forever() -> None:
            while True:
                await ref.ask(0)

        # So a timeout around such a loop fires.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ask_forever(), 0.01)


# --- asks that would wait for themselves -----------------------------------------------------


@dataclass
class AskSelf:
    pass


@dataclass
class Relay:
    """Ask ``to`` for ``Relay(rest)``; at the end of the chain, answer ``"done"``."""

    chain: tuple[str, ...]
    pause: bool = False  # suspend before asking on: the next ask is not inline


class Asker(Actor):
    @handler
    async def ask_self(self, msg: AskSelf) -> Any:
        return await self.ref.ask(Get(), timeout=5.0)

    @handler
    async def relay(self, msg: Relay) -> Any:
        if msg.pause:
            await asyncio.sleep(0)
        if not msg.chain:
            return "done"
        target = self.system.lookup(msg.chain[0])
        assert target is not None
        return await target.ask(Relay(msg.chain[1:], msg.pause), timeout=5.0)

    @handler
    async def get(self, msg: Get) -> int:
        return 1


async def test_an_actor_asking_itself_gets_a_typed_error_at_once() -> None:
    async with ActorSystem() as system:
        ref = await system.start(Asker, name="me")
        with pytest.raises(AskCycleError, match=r"^ask cycle: /me -> /me ") as info:
            await asyncio.wait_for(ref.ask(AskSelf()), 1.0)
        assert info.value.cycle == ("/me", "/me")
        assert info.value.actor == "/me"
        assert await ref.ask(Get()) == 1  # the actor still serves


@pytest.mark.parametrize("pause", [False, True], ids=["inline", "in-tasks"])
async def test_a_chain_of_asks_back_to_an_asker_is_refused_naming_the_cycle(pause: bool) -> None:
    async with ActorSystem() as system:
        a = await system.start(Asker, name="a")
        for name in ("b", "c"):
            await system.start(Asker, name=name)
        # a asks b, b asks c, c asks a: a is waiting for b, so a can never answer c.
        with pytest.raises(AskCycleError) as info:
            await asyncio.wait_for(a.ask(Relay(("b", "c", "a"), pause)), 1.0)
        assert info.value.cycle == ("/c", "/a", "/b", "/c")
        assert "ask cycle: /c -> /a -> /b -> /c" in str(info.value)
        # A chain without a cycle is answered, and nobody is left waiting.
        assert await asyncio.wait_for(a.ask(Relay(("b", "c"), pause)), 1.0) == "done"
        with pytest.raises(AskCycleError, match="ask cycle: /c -> /b -> /c "):
            await asyncio.wait_for(a.ask(Relay(("b", "c", "b"), pause)), 1.0)


async def test_a_cycle_through_a_thousand_actors_is_still_refused() -> None:
    async with ActorSystem() as system:
        a = await system.start(Asker, name="a")
        names = tuple(f"n{i}" for i in range(1, 999))
        for name in names:
            await system.start(Asker, name=name)
        # a -> n1 -> ... -> n998 -> a: the cycle names 1000 paths, the longest one looked for.
        with pytest.raises(AskCycleError) as info:
            await asyncio.wait_for(a.ask(Relay((*names, "a"), pause=True)), 5.0)
        assert info.value.cycle == ("/n998", "/a", *(f"/{name}" for name in names))
        assert len(info.value.cycle) == 1000


async def test_asking_a_busy_actor_that_waits_for_someone_else_is_no_cycle() -> None:
    gate = asyncio.Event()

    class Waiter(Actor):
        @handler
        async def relay(self, msg: Relay) -> int:
            await gate.wait()
            return 2

    async with ActorSystem() as system:
        waiter = await system.start(Waiter, name="w")
        asker = await system.start(Asker, name="x")
        first = asyncio.ensure_future(waiter.ask(Relay(())))
        await settle()  # w is busy, waiting on the gate (not on x)
        second = asyncio.ensure_future(asker.ask(Relay(("w",))))
        await settle()
        assert not second.done()
        gate.set()
        assert await first == 2
        assert await second == 2


# --- a stopped system, and calls from elsewhere ------------------------------------------------


async def test_a_stopped_system_refuses_new_work_with_a_typed_error() -> None:
    system = ActorSystem()
    async with system:
        counter = await system.start(Counter, name="c")
        session = system.virtual(Counter, "kept")
        await session.tell(Add(1))
        running = system.stopped
    assert not running
    assert system.stopped
    with pytest.raises(SystemStoppedError, match="stopped"):
        await system.start(Counter)
    with pytest.raises(SystemStoppedError):
        system.virtual(Counter, "new")
    with pytest.raises(SystemStoppedError):
        await session.ask(Get())  # a virtual ref made before: no activation now
    with pytest.raises(SystemStoppedError):
        await system.resolve("c")
    with pytest.raises(SystemStoppedError):
        async with system:
            pass
    with pytest.raises(ActorDeadError):
        await counter.ask(Get())  # its actors are stopped, as before
    assert isinstance(SystemStoppedError("x"), RuntimeError)


async def test_a_system_called_from_another_thread_and_loop_gets_a_typed_error() -> None:
    async def elsewhere(system: ActorSystem) -> None:
        with pytest.raises(WrongLoopError, match="another event loop"):
            await system.start(Counter)
        with pytest.raises(WrongLoopError):
            await system.resolve("c")
        with pytest.raises(WrongLoopError):
            async with system:
                pass

    async with ActorSystem() as system:
        counter = await system.start(Counter, name="c")
        await asyncio.to_thread(asyncio.run, elsewhere(system))
        assert await counter.ask(Get()) == 0  # untouched


# --- nothing hangs by default: ask timeouts and the drain deadline ------------------------------


async def test_an_ask_times_out_by_default_and_none_waits_without_limit() -> None:
    assert Timeouts() == Timeouts(ask=30.0, drain=5.0)
    async with ActorSystem(timeouts=Timeouts(ask=0.05)) as system:
        assert system.timeouts.ask == 0.05
        ref = await system.start(Hanging)
        with pytest.raises(TimeoutError, match=r"got no reply within 0\.05 s"):
            await asyncio.wait_for(ref.ask(Get()), 2.0)  # the guard would say TimeoutError()
        # timeout=None is an explicit choice: it outlasts the system's 0.05 s.
        waiting = asyncio.ensure_future(ref.ask(Get(), timeout=None))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiting), 0.2)
        assert not waiting.done()
        instance = cast(Hanging, ref._cell.actor)
        instance.gate.set()
        assert await waiting == "released"


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), "1", True])
async def test_bad_timeouts_are_refused(timeout: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="must be"):
        Timeouts(ask=timeout)
    with pytest.raises(InvalidArgumentError, match="must be"):
        Timeouts(drain=timeout)
    with pytest.raises(InvalidArgumentError, match="timeouts must be a Timeouts"):
        ActorSystem(timeouts=30.0)  # type: ignore[arg-type]
    async with ActorSystem() as system:
        ref = await system.start(Counter)
        with pytest.raises(InvalidArgumentError, match="timeout must be"):
            await ref.ask(Get(), timeout=timeout)


async def test_an_ask_timeout_covers_the_wait_for_room_in_a_full_mailbox() -> None:
    class Held(Hanging, mailbox_size=1):
        pass

    async with ActorSystem() as system:
        ref = await system.start(Held)
        busy = asyncio.ensure_future(ref.ask(Get(), timeout=None))
        await cast(Held, ref._cell.actor).entered.wait()
        await ref.tell(Get())  # the mailbox (1) is full
        with pytest.raises(TimeoutError, match=r"found the mailbox full for 0\.05 s"):
            await asyncio.wait_for(ref.ask(Get(), timeout=0.05), 2.0)
        assert ref.stats().pending == 1, "nothing was sent"
        cast(Held, ref._cell.actor).gate.set()
        assert await busy == "released"


async def test_leaving_the_system_cancels_handlers_still_running_at_the_drain_deadline() -> None:
    system = ActorSystem(timeouts=Timeouts(drain=0.1))
    with capture_logs() as logs:
        async with system:
            ref = await system.start(Hanging, name="stuck")
            asking = asyncio.ensure_future(ref.ask(Get(), timeout=None))
            await cast(Hanging, ref._cell.actor).entered.wait()
            instance = cast(Hanging, ref._cell.actor)
        # The block was left: within the deadline, not never.
    assert instance.cancelled
    with pytest.raises(ActorDeadError):
        await asking
    cancelled = [e for e in logs if e["event"] == "actor.handler_cancelled"]
    assert len(cancelled) == 1
    assert cancelled[0]["actor"] == "/stuck"
    assert cancelled[0]["handler"] == "Hanging.wait"
    assert cancelled[0]["log_level"] == "error"
    journal = system.journal
    assert isinstance(journal, MemoryJournal)
    stopped = [
        e.event.payload
        for e in journal.entries()
        if e.event.agent_id == "/stuck"
        and isinstance(e.event.payload, SystemSignal)
        and e.event.payload.kind is SignalKind.STOPPED
    ]
    assert len(stopped) == 1
    assert "cancelled its handler Hanging.wait in progress" in stopped[0].detail


async def test_a_drain_within_the_deadline_cancels_nothing() -> None:
    async with ActorSystem(timeouts=Timeouts(drain=5.0)) as system:
        ref = await system.start(Hanging)
        asking = asyncio.ensure_future(ref.ask(Get()))
        instance = cast(Hanging, ref._cell.actor)
        await instance.entered.wait()
        system.clock.call_later(0.0, instance.gate.set)  # released while the system drains
    assert await asking == "released"
    assert not instance.cancelled


@dataclass
class RelayTo:
    to: ActorRef[Any]


class Mirror(Actor):
    @handler
    async def mirror(self, msg: int) -> int:
        return msg


class Relayer(Actor):
    @handler
    async def relay(self, msg: RelayTo) -> int:
        return int(await msg.to.ask(7)) + 1


async def test_the_inline_checkpoint_inside_a_handler_run_inline() -> None:
    """A handler run inline asks another idle actor inline, and that ask is the checkpoint.

    The checkpoint suspends the outer handler, which then goes on in the actor's own task (in
    another context): the inner ask must not be holding its sender token across it (once in
    128 nested inline asks this failed with "ValueError: <Token ...> was created in a
    different Context").
    """
    from swarm_actors._core import _ref

    async with ActorSystem() as system:
        mirror, relayer = await system.start(Mirror), await system.start(Relayer)
        dispatcher = relayer._cell.dispatcher
        dispatcher.inline_left = 1  # the next inline ask is the checkpoint
        assert await relayer.ask(RelayTo(mirror)) == 8
        assert dispatcher.inline_left == _ref.INLINE_CHECKPOINT  # it was taken, and re-armed
        assert relayer.stats().failures == 0
        assert await relayer.ask(RelayTo(mirror)) == 8  # and the actor serves on


class SlowHooks(Actor):
    """An actor whose on_start and on_stop suspend."""

    async def on_start(self) -> None:
        await asyncio.sleep(0)

    async def on_stop(self) -> None:
        await asyncio.sleep(0)


class Starter(Actor):
    @handler
    async def add(self, msg: Add) -> str:
        child = await self.system.start(SlowHooks)  # on_start suspends this handler, run inline
        await child.stop()  # so does on_stop
        return "done"


async def test_a_handler_run_inline_may_start_and_stop_actors_whose_hooks_suspend() -> None:
    async with ActorSystem() as system:
        starter = await system.start(Starter)
        # The ask runs the handler inline; it suspends in the child's on_start and goes on in
        # its own task: "Token was created in a different Context" before.
        assert await asyncio.wait_for(starter.ask(Add(1)), 2.0) == "done"
        assert await asyncio.wait_for(starter.ask(Add(1)), 2.0) == "done"
        assert starter.stats().failures == 0
        session = system.virtual(SlowHooks, "v")

        class Toucher(Actor):
            @handler
            async def add(self, msg: Add) -> str:
                await session.tell(Add(1))  # activates it: its on_start suspends
                return "touched"

        toucher = await system.start(Toucher)
        assert await asyncio.wait_for(toucher.ask(Add(1)), 2.0) == "touched"
