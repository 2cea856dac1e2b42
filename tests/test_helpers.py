"""The shared test helpers: a wait that returned without its condition would void every test
that leans on it, so they are checked here against conditions that hold and that never do."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from helpers import Get, count_turns, unique, until, until_async, until_dead, until_sync
from swarm_actors import ActorDeadError


@pytest.mark.asyncio
async def test_until_waits_for_the_condition_and_fails_when_it_never_holds() -> None:
    done: list[int] = []
    asyncio.get_running_loop().call_later(0.05, done.append, 1)
    await until(lambda: bool(done), 5, "the callback")
    assert done == [1]
    with pytest.raises(AssertionError, match=r"^not within 0\.05 s: never$"):
        await until(lambda: False, 0.05, "never")


@pytest.mark.asyncio
async def test_until_with_poll_0_returns_on_the_first_turn_it_holds() -> None:
    async with count_turns() as turns:
        await until(lambda: turns.count >= 3, 5, "three turns", poll=0)
        assert turns.count == 3  # not a poll interval later


@pytest.mark.asyncio
async def test_count_turns_counts_the_turns_the_block_yields() -> None:
    async with count_turns() as turns:
        assert turns.count == 0
        for _ in range(5):
            await asyncio.sleep(0)
        assert turns.count == 5
    after = turns.count
    await asyncio.sleep(0)
    assert turns.count == after  # stopped with the block


@pytest.mark.asyncio
async def test_until_async_counts_errors_as_not_yet_and_reports_the_last() -> None:
    answers: list[bool | Exception] = [RuntimeError("no leader"), False, True]

    async def condition() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    await until_async(condition, 5, "an answer", poll=0)
    assert answers == []

    async def failing() -> bool:
        raise RuntimeError("still down")

    async def state() -> str:
        return "3 nodes, no leader"

    with pytest.raises(AssertionError, match=r"still down.*then: 3 nodes, no leader"):
        await until_async(failing, 0.05, "a leader", state=state)


def test_until_sync_waits_for_another_thread_and_fails_when_nothing_happens() -> None:
    done = threading.Event()
    threading.Timer(0.05, done.set).start()
    until_sync(done.is_set, 5, "the timer")
    with pytest.raises(AssertionError, match=r"^not within 0\.05 s: never$"):
        until_sync(lambda: False, 0.05, "never")


@pytest.mark.asyncio
async def test_until_dead_retries_timeouts_and_returns_the_actor_dead_error() -> None:
    class Gone:
        def __init__(self, timeouts: int) -> None:
            self.timeouts = timeouts
            self.asked: list[Any] = []

        async def ask(self, message: Any, *, timeout: float = 5.0) -> Any:
            self.asked.append(message)
            if self.timeouts:
                self.timeouts -= 1
                raise TimeoutError
            raise ActorDeadError("no responders")

    gone = Gone(timeouts=2)
    error = await until_dead(gone)
    assert str(error) == "no responders"
    assert gone.asked == [Get(), Get(), Get()]

    class Alive:
        async def ask(self, message: Any, *, timeout: float = 5.0) -> Any:
            return 0

    with pytest.raises(AssertionError, match="answered"):
        await until_dead(Alive())


def test_unique_names_differ_and_keep_their_prefix() -> None:
    names = {unique("n") for _ in range(1000)}
    assert len(names) == 1000
    assert all(name.startswith("n") and name[1:].isalnum() for name in names)
