"""Blocking take / read: hand-off, timeouts, cancellation, no lost tuples or wake-ups."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from swarm_actors.errors import CapabilityError
from swarm_actors.space import ANY, TupleSpace
from swarm_actors.testing import settle

pytestmark = pytest.mark.asyncio


async def test_take_returns_immediately_when_a_match_exists() -> None:
    space = TupleSpace()
    space.out(("jobs", 1))
    assert await space.take(("jobs", int)) == ("jobs", 1)
    assert len(space) == 0


async def test_blocked_take_is_woken_by_out_without_storing() -> None:
    space = TupleSpace()
    task = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    assert space.stats().waiters == 1
    space.out(("jobs", 7))
    assert await task == ("jobs", 7)
    stats = space.stats()
    assert (stats.tuples, stats.handoffs, stats.waiters) == (0, 1, 0)


async def test_oldest_matching_taker_is_served_first() -> None:
    space = TupleSpace()
    order: list[tuple[str, Any]] = []

    async def taker(name: str, template: tuple[Any, ...]) -> None:
        order.append((name, await space.take(template)))

    tasks = [
        asyncio.create_task(taker("first-other-lane", ("other", int))),
        asyncio.create_task(taker("second", ("jobs", int))),
        asyncio.create_task(taker("third", ("jobs", ANY))),
    ]
    await settle()
    space.out(("jobs", 1))
    space.out(("jobs", 2))
    space.out(("other", 3))
    await asyncio.gather(*tasks)
    assert order == [
        ("second", ("jobs", 1)),
        ("third", ("jobs", 2)),
        ("first-other-lane", ("other", 3)),
    ]


async def test_every_blocked_reader_sees_the_tuple_and_a_taker_still_gets_it() -> None:
    space = TupleSpace()
    readers = [asyncio.create_task(space.read(("news", str))) for _ in range(3)]
    taker = asyncio.create_task(space.take(("news", str)))
    await settle()
    space.out(("news", "hello"))
    assert await asyncio.gather(*readers) == [("news", "hello")] * 3
    assert await taker == ("news", "hello")
    assert len(space) == 0


async def test_blocked_read_leaves_the_tuple_stored() -> None:
    space = TupleSpace()
    reader = asyncio.create_task(space.read(("cfg", ANY)))
    await settle()
    space.out(("cfg", 1))
    assert await reader == ("cfg", 1)
    assert space.read_nowait(("cfg", ANY)) == ("cfg", 1)


async def test_timeout_raises_builtin_timeout_error_and_consumes_nothing() -> None:
    space = TupleSpace()
    with pytest.raises(TimeoutError, match="within"):
        await space.take(("late", int), timeout=0.01)
    assert space.stats().waiters == 0
    space.out(("late", 1))
    assert space.read_nowait(("late", int)) == ("late", 1)


async def test_zero_timeout_only_checks() -> None:
    space = TupleSpace()
    with pytest.raises(TimeoutError):
        await space.read(("x", int), timeout=0)
    space.out(("x", 1))
    assert await space.take(("x", int), timeout=0) == ("x", 1)
    with pytest.raises(ValueError, match="NaN"):
        await space.take(("x", int), timeout=float("nan"))


async def test_cancelled_waiter_never_consumes_a_tuple() -> None:
    space = TupleSpace()
    cancelled = asyncio.create_task(space.take(("jobs", int)))
    survivor = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    cancelled.cancel()
    # out() runs before the cancelled task has resumed: its future is already cancelled,
    # so the tuple must go to the next waiter instead.
    space.out(("jobs", 1))
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await survivor == ("jobs", 1)
    assert space.stats().waiters == 0


async def test_tuple_delivered_to_a_task_cancelled_before_resuming_is_put_back() -> None:
    space = TupleSpace()
    task = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    space.out(("jobs", 1))  # hands the tuple to the task's future...
    task.cancel()  # ...and the task is cancelled before it can resume
    with pytest.raises(asyncio.CancelledError):
        await task
    assert space.take_nowait(("jobs", int)) == ("jobs", 1)


class Clock:
    """The space's clock, moved by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_tuple_put_back_after_a_cancelled_hand_off_keeps_its_lease() -> None:
    clock = Clock()
    space = TupleSpace(clock=clock)
    task = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    space.out(("jobs", 1), ttl=1.0)  # hands the tuple to the task's future...
    task.cancel()  # ...and the task is cancelled before it can resume: it is put back
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.now = 0.999
    assert space.read_nowait(("jobs", int)) == ("jobs", 1), "put back, lease still running"
    clock.now = 1.0  # the lease it was written with ends: not restarted, not lost
    assert space.read_nowait(("jobs", int)) is None
    assert (len(space), space.stats().expired) == (0, 1)


async def test_a_tuple_whose_lease_ran_out_before_it_was_put_back_is_dropped_as_expired() -> None:
    clock = Clock()
    space = TupleSpace(clock=clock)
    task = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    space.out(("jobs", 1), ttl=1.0)
    task.cancel()
    clock.now = 5.0  # the lease ends before the cancelled taker gives the tuple back
    reader = asyncio.create_task(space.read(("jobs", int)))
    await settle()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (len(space), space.stats().expired) == (0, 1)
    assert not reader.done(), "no waiter is served an expired tuple"
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_a_tuple_put_back_past_a_cancelled_taker_keeps_its_lease() -> None:
    clock = Clock()
    space = TupleSpace(clock=clock)
    first = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    second = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    space.out(("jobs", 1), ttl=1.0)  # handed to the first taker
    first.cancel()  # before it resumes
    second.cancel()  # the next taker is gone too: the put-back tuple is stored
    for task in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await task
    clock.now = 0.5
    assert space.read_nowait(("jobs", int)) == ("jobs", 1)
    clock.now = 1.0
    assert (len(space), space.stats().expired) == (0, 1)


async def test_a_tuple_without_a_lease_put_back_keeps_none() -> None:
    clock = Clock()
    space = TupleSpace(clock=clock)
    space.out(("other", 0), ttl=1.0)  # the space reads its clock from now on
    task = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    space.out(("jobs", 1))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.now = 1e9
    assert space.read_nowait(("jobs", int)) == ("jobs", 1)


async def test_put_back_tuple_reaches_the_next_waiter() -> None:
    space = TupleSpace()
    first = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    second = asyncio.create_task(space.take(("jobs", int)))
    await settle()
    space.out(("jobs", 1))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1.0) == ("jobs", 1)


async def test_outer_timeout_cancellation_propagates() -> None:
    space = TupleSpace()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await space.take(("never", int))
    assert space.stats().waiters == 0


async def test_many_producers_and_consumers_lose_nothing() -> None:
    space = TupleSpace()
    n = 2_000
    got: list[int] = []

    async def consumer() -> None:
        while True:
            _, i = await space.take(("work", int))
            if i < 0:
                return
            got.append(i)

    async def producer(start: int) -> None:
        for i in range(start, n, 4):
            space.out(("work", i))
            if i % 50 == 0:
                await asyncio.sleep(0)

    consumers = [asyncio.create_task(consumer()) for _ in range(8)]
    await asyncio.gather(*(producer(k) for k in range(4)))
    for _ in consumers:
        space.out(("work", -1))
    await asyncio.gather(*consumers)
    assert sorted(got) == list(range(n))
    assert len(space) == 0


async def test_restricted_handle_blocks_only_on_granted_lanes() -> None:
    space = TupleSpace()
    jobs = space.restrict(lanes=["jobs"], write=False)
    with pytest.raises(CapabilityError):
        await jobs.take(("secrets", int))
    task = asyncio.create_task(jobs.take(("jobs", int)))
    await settle()
    space.out(("jobs", 5))
    assert await task == ("jobs", 5)
