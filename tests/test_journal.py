"""MemoryJournal: append, read, tail, seeks, subject filters, deduplication, retention, close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import count_turns
from swarm_actors import InvalidArgumentError
from swarm_actors._events._chain import replay_journal
from swarm_actors._events._journal import Journal, JournalEntry, MemoryJournal, subject_matches
from swarm_actors._events._schema import (
    AgentDecision,
    ChangeForm,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    new_event,
)
from swarm_actors.errors import ChainBrokenError, JournalClosedError, SubjectError

pytestmark = pytest.mark.asyncio


def signal(i: int = 0, *, role: str = "worker", ts: int | None = None) -> SwarmEvent:
    return new_event(
        SystemSignal(kind=SignalKind.ACTIVATED),
        agent_role=role,
        agent_id=f"/w{i}",
        sequence=1,
        timestamp_ns=ts,
    )


def decision(role: str = "architect") -> SwarmEvent:
    return new_event(AgentDecision(rationale="r"), agent_role=role, agent_id="a", sequence=1)


async def collect(it: AsyncGenerator[JournalEntry, None]) -> list[JournalEntry]:
    async with aclosing(it) as entries:
        return [e async for e in entries]


def seqs(entries: list[JournalEntry]) -> list[int]:
    return [e.sequence for e in entries]


async def test_append_and_read() -> None:
    journal: Journal = MemoryJournal()  # the protocol is implemented (checked by mypy)
    events = [signal(i) for i in range(3)]
    assert [await journal.append(e) for e in events] == [1, 2, 3]
    assert await journal.last_sequence() == 3
    entries = await collect(journal.read())
    assert seqs(entries) == [1, 2, 3]
    assert [e.event for e in entries] == events
    assert {e.subject for e in entries} == {"swarm.events.worker.system_signal"}
    assert [e.stored_ns for e in entries] == [e.timestamp_ns for e in events]
    assert await journal.append_many([signal(9), decision()]) == [4, 5]
    assert journal.append_nowait(signal(10)) == 6


async def test_an_empty_journal() -> None:
    journal = MemoryJournal()
    assert await journal.last_sequence() == 0
    assert await collect(journal.read()) == []
    assert await collect(journal.read(start_time_ns=0)) == []
    assert (len(journal), journal.first_sequence) == (0, 1)


async def test_read_from_a_sequence() -> None:
    journal = MemoryJournal()
    await journal.append_many([signal(i) for i in range(5)])
    assert seqs(await collect(journal.read(start_sequence=3))) == [3, 4, 5]
    assert seqs(await collect(journal.read(start_sequence=5))) == [5]
    assert await collect(journal.read(start_sequence=6)) == []
    with pytest.raises(InvalidArgumentError):
        journal.read(start_sequence=0)
    with pytest.raises(InvalidArgumentError):
        journal.read(start_sequence=1, start_time_ns=1)


async def test_a_read_stops_at_the_last_sequence_when_it_was_called() -> None:
    journal = MemoryJournal()
    await journal.append_many([signal(i) for i in range(3)])
    got = []
    async with aclosing(journal.read()) as entries:
        async for entry in entries:
            got.append(entry.sequence)
            await journal.append(signal(100 + entry.sequence))
    assert got == [1, 2, 3]
    assert await journal.last_sequence() == 6


async def test_seek_by_time() -> None:
    journal = MemoryJournal()
    for ts in (10, 20, 20, 30):
        await journal.append(signal(ts=ts))
    assert seqs(await collect(journal.read(start_time_ns=20))) == [2, 3, 4]
    assert seqs(await collect(journal.read(start_time_ns=21))) == [4]
    assert seqs(await collect(journal.read(start_time_ns=0))) == [1, 2, 3, 4]
    assert await collect(journal.read(start_time_ns=31)) == []
    # An event stamped earlier than the last entry is stored at the last entry's time.
    await journal.append(signal(ts=5))
    assert journal.entries()[-1].stored_ns == 30
    assert seqs(await collect(journal.read(start_time_ns=30))) == [4, 5]


async def test_subject_filters() -> None:
    journal = MemoryJournal()
    await journal.append_many(
        [signal(role="worker"), decision("architect"), decision("coder"), signal(role="coder")]
    )
    assert seqs(await collect(journal.read(subject="swarm.events.coder.>"))) == [3, 4]
    assert seqs(await collect(journal.read(subject="swarm.events.*.decision"))) == [2, 3]
    assert seqs(await collect(journal.read(subject="swarm.events.worker.system_signal"))) == [1]
    assert seqs(await collect(journal.read(subject=">"))) == [1, 2, 3, 4]
    assert await collect(journal.read(subject="swarm.events.*")) == []
    assert seqs(journal.entries("swarm.events.*.decision")) == [2, 3]
    with pytest.raises(SubjectError):
        journal.read(subject="swarm.events.>.decision")


async def test_a_full_wildcard_matches_one_or_more_tokens_and_a_star_exactly_one() -> None:
    # ``>``: the rest of the subject, at least one token (never none).
    assert not subject_matches("swarm.events.>", "swarm.events")
    assert subject_matches("swarm.events.>", "swarm.events.a")
    assert subject_matches("swarm.events.>", "swarm.events.a.b")
    assert not subject_matches("swarm.events.>", "swarm.other.a")
    assert not subject_matches("swarm.events.>", "swarm")
    assert subject_matches(">", "a")
    assert subject_matches(">", "a.b.c")
    assert not subject_matches("a.*.>", "a.b")
    assert subject_matches("a.*.>", "a.b.c")
    # ``*``: exactly one token, anywhere.
    assert subject_matches("swarm.*", "swarm.a")
    assert not subject_matches("swarm.*", "swarm")
    assert not subject_matches("swarm.*", "swarm.a.b")
    assert subject_matches("*.events", "swarm.events")
    assert subject_matches("swarm.*.decision", "swarm.a.decision")
    assert not subject_matches("swarm.*.decision", "swarm.a.b.decision")
    # No wildcard: the same tokens, as many.
    assert subject_matches("a.b", "a.b")
    assert not subject_matches("a.b", "a.b.c")
    assert not subject_matches("a.b", "a")
    assert not subject_matches("a.b", "a.bc")
    # The same verdicts where reads filter entries (a compiled filter, cached per subject).
    journal = MemoryJournal()
    await journal.append_many([signal(role="worker"), decision("worker"), signal(role="coder")])
    for subject, expected in (
        ("swarm.events.worker.>", [1, 2]),
        ("swarm.events.worker.system_signal.>", []),
        ("*.*.*.*.>", []),
        ("swarm.*.>", [1, 2, 3]),
        ("swarm.events.worker.*", [1, 2]),
        ("swarm.events.*.system_signal", [1, 3]),
        ("swarm.events.*", []),
        ("swarm.events.worker.system_signal", [1]),
    ):
        assert seqs(await collect(journal.read(subject=subject))) == expected, subject
        assert seqs(journal.entries(subject)) == expected, subject


async def test_an_invalid_role_is_not_stored() -> None:
    journal = MemoryJournal()
    bad = msgspec.structs.replace(signal(), agent_role="a.b")
    with pytest.raises(SubjectError):
        await journal.append(bad)
    assert await journal.last_sequence() == 0


async def test_deduplication_by_event_id() -> None:
    journal = MemoryJournal()
    first, second = signal(1), signal(2)
    assert await journal.append(first) == 1
    assert await journal.append(second) == 2
    assert await journal.append(first) == 1
    assert await journal.append(msgspec.structs.replace(second, sequence=7)) == 2  # same id
    assert await journal.append_many([signal(3), first, second]) == [3, 1, 2]
    assert journal.append_nowait(first) == 1
    assert await journal.last_sequence() == 3
    assert journal.duplicates == 5


async def test_the_dedup_window() -> None:
    journal = MemoryJournal(dedup_window=4)
    first = signal()
    await journal.append(first)
    await journal.append_many([signal(i) for i in range(6)])  # 7 ids: first is in the old half
    assert await journal.append(first) == 1
    await journal.append_many([signal(i) for i in range(4)])
    assert await journal.append(first) == 12  # forgotten: stored again
    with pytest.raises(InvalidArgumentError):
        MemoryJournal(dedup_window=0)


async def test_retention() -> None:
    journal = MemoryJournal(max_events=3)
    await journal.append_many([signal(i) for i in range(5)])
    assert (journal.first_sequence, len(journal), journal.dropped) == (3, 3, 2)
    assert seqs(await collect(journal.read())) == [3, 4, 5]
    assert seqs(await collect(journal.read(start_sequence=1))) == [3, 4, 5]
    assert await journal.last_sequence() == 5
    with pytest.raises(InvalidArgumentError):
        MemoryJournal(max_events=0)


async def test_retention_over_many_compactions() -> None:
    journal = MemoryJournal(max_events=10)
    events = [signal(i, ts=i) for i in range(5000)]
    for event in events:
        journal.append_nowait(event)
    entries = await collect(journal.read())
    assert seqs(entries) == list(range(4991, 5001))
    assert [e.event for e in entries] == events[-10:]
    assert seqs(await collect(journal.read(start_time_ns=4995))) == list(range(4996, 5001))
    assert seqs(await collect(journal.read(start_time_ns=0))) == list(range(4991, 5001))


async def test_a_read_overtaken_by_retention_skips_ahead_but_not_past_its_end() -> None:
    journal = MemoryJournal(max_events=3)
    await journal.append_many([signal(i) for i in range(3)])
    got = []
    async with aclosing(journal.read()) as entries:
        async for entry in entries:
            got.append(entry.sequence)
            if entry.sequence == 1:
                await journal.append_many([signal(i) for i in range(10, 13)])  # drops 1 to 3
    assert got == [1]  # everything left is newer than the read's end (3)
    journal2 = MemoryJournal(max_events=3)
    await journal2.append_many([signal(i) for i in range(3)])
    async with aclosing(journal2.read()) as entries:
        got = [(await anext(entries)).sequence]
        await journal2.append(signal(10))  # drops 1: 2 and 3 are still there
        got += [e.sequence async for e in entries]
    assert got == [1, 2, 3]


async def test_tail_follows_new_events() -> None:
    journal = MemoryJournal()
    await journal.append(signal(0))
    received: list[int] = []
    ready = asyncio.Event()

    async def follow() -> None:
        async with aclosing(journal.tail(subject="swarm.events.worker.>")) as entries:
            ready.set()
            async for entry in entries:
                received.append(entry.sequence)

    task = asyncio.create_task(follow())
    await ready.wait()
    await journal.append(signal(1))
    await journal.append(decision())  # filtered out
    journal.append_nowait(signal(2))
    for _ in range(5):
        await asyncio.sleep(0)
    assert received == [2, 4]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await journal.append(signal(3))
    assert received == [2, 4]
    assert journal._tails == 0


async def test_tail_from_a_sequence_replays_then_follows_and_ends_on_close() -> None:
    journal = MemoryJournal()
    await journal.append_many([signal(i) for i in range(3)])

    async def follow() -> list[int]:
        return seqs(await collect(journal.tail(start_sequence=2)))

    task = asyncio.create_task(follow())
    await asyncio.sleep(0)
    await journal.append(signal(3))
    await asyncio.sleep(0)
    await journal.append(signal(4))
    await journal.close()
    assert await asyncio.wait_for(task, 1.0) == [2, 3, 4, 5]


async def test_close() -> None:
    journal = MemoryJournal()
    await journal.append(signal())
    reading = journal.read()
    await journal.close()
    await journal.close()  # idempotent
    for call in (
        lambda: journal.append(signal()),
        lambda: journal.append_many([signal()]),
        journal.last_sequence,
        journal.flush,
    ):
        with pytest.raises(JournalClosedError):
            await call()
    with pytest.raises(JournalClosedError):
        journal.append_nowait(signal())
    with pytest.raises(JournalClosedError):
        journal.read()
    with pytest.raises(JournalClosedError):
        journal.tail()
    with pytest.raises(JournalClosedError, match="during a read"):
        await collect(reading)


async def test_flush_has_nothing_to_wait_for() -> None:
    journal = MemoryJournal()
    journal.append_nowait(signal())
    await journal.flush()
    assert await journal.last_sequence() == 1


async def test_a_long_read_lets_the_loop_run() -> None:
    journal = MemoryJournal()
    for i in range(10_000):
        journal.append_nowait(signal(i))
    async with count_turns() as turns:
        assert len(await collect(journal.read())) == 10_000
    assert turns.count >= 2


async def test_replay_from_a_journal() -> None:
    journal = MemoryJournal()
    head = b""
    for i in range(1, 4):
        for agent in ("a", "b"):
            prev = head if agent == "a" else b""
            data = f"{agent}{i}".encode()
            change = StateChange(prev_hash=prev, data=data, form=ChangeForm.SNAPSHOT)
            event = new_event(change, agent_role="coder", agent_id=agent, sequence=i)
            if agent == "a":
                head = event.payload.hash  # type: ignore[union-attr]
            await journal.append(event)
    replayed = await replay_journal(journal, "a", until_sequence=2)
    assert (replayed.state, replayed.sequence) == (b"a2", 2)
    assert (await replay_journal(journal, "a", agent_role="coder")).state == b"a3"
    with pytest.raises(ChainBrokenError):  # b's changes were not chained
        await replay_journal(journal, "b")


# --- a model: the journal behaves like a list with dedup and retention -------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.integers(0, 3)),
        st.tuples(st.just("again"), st.integers(0, 50)),
        st.tuples(st.just("read"), st.integers(1, 60)),
    ),
    max_size=60,
)


@settings(deadline=None)
@given(ops=ops, max_events=st.one_of(st.none(), st.integers(1, 8)))
async def test_journal_matches_a_model(ops: list[tuple[str, int]], max_events: int | None) -> None:
    journal = MemoryJournal(max_events=max_events)
    roles = ["worker", "coder", "architect", "reviewer"]
    stored: list[SwarmEvent] = []  # model: index + 1 is the sequence
    for op, arg in ops:
        if op == "new" or (op == "again" and not stored):
            event = signal(role=roles[arg % 4], ts=len(stored))
            assert await journal.append(event) == len(stored) + 1
            stored.append(event)
        elif op == "again":
            i = arg % len(stored)
            assert await journal.append(stored[i]) == i + 1
        else:
            first = 1 if max_events is None else max(1, len(stored) - max_events + 1)
            want = list(range(max(arg, first), len(stored) + 1))
            entries = await collect(journal.read(start_sequence=arg))
            assert seqs(entries) == want
            assert [e.event for e in entries] == [stored[s - 1] for s in want]
    assert await journal.last_sequence() == len(stored)
