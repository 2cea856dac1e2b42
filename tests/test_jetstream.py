"""The JetStream journal against real nats-server processes: acks, dedup, replay, durability."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from helpers import Set, own_journal_server, until, until_async
from log_capture import capture_logs
from swarm_actors import Actor, ActorSystem, InvalidArgumentError, handler
from swarm_actors._nats._conn import connect
from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors.cluster import NatsOptions
from swarm_actors.errors import (
    EventDecodeError,
    JournalClosedError,
    JournalFullError,
    JournalTimeoutError,
    JournalWriteError,
    MessageTooLargeError,
    SubjectError,
)
from swarm_actors.events import (
    AgentDecision,
    DurableConsumer,
    Journal,
    JournalEntry,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    new_event,
    verify_chain,
)
from swarm_actors.testing import NatsCluster, NatsServer

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    """This module's own JetStream server (``nats_client`` connects to it)."""
    yield from own_journal_server("swarm-test-journal")


def decision(role: str, i: int, text: str = "") -> SwarmEvent:
    payload = AgentDecision(choice=f"choice-{i}", rationale=text)
    return new_event(payload, agent_role=role, agent_id="a", sequence=i)


def signal_event(role: str, i: int) -> SwarmEvent:
    return new_event(
        SystemSignal(kind=SignalKind.STARTED), agent_role=role, agent_id="a", sequence=i
    )


async def collect(entries: AsyncIterator[JournalEntry]) -> list[JournalEntry]:
    return [entry async for entry in entries]


async def stored_count(client: Client, stream: str) -> int:
    return int((await client.jetstream().stream_info(stream)).state.messages)


@pytest_asyncio.fixture
async def journal(nats_client: Client, unique_name: str) -> AsyncIterator[JetStreamJournal]:
    """A journal on its own stream, for events of role ``unique_name`` only."""
    j = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>", timeout=10
    )
    await j.start()
    try:
        yield j
    finally:
        await j.close()
        await nats_client.jetstream().delete_stream(unique_name)


def as_journal(journal: JetStreamJournal) -> Journal:
    return journal  # mypy checks that JetStreamJournal implements the Journal protocol


async def test_jetstream_journal_has_the_journal_api(journal: JetStreamJournal) -> None:
    api = {name for name in vars(Journal) if not name.startswith("_")}
    assert api <= set(dir(as_journal(journal)))


# --- writing --------------------------------------------------------------------------------


async def test_append_answers_after_the_ack_and_deduplicates(
    journal: JetStreamJournal, nats_client: Client, unique_name: str
) -> None:
    first = decision(unique_name, 1)
    assert await journal.append(first) == 1
    assert await journal.append(first) == 1  # same event id: stored once, original sequence
    assert await journal.append(decision(unique_name, 2)) == 2
    assert await stored_count(nats_client, unique_name) == 2
    assert await journal.last_sequence() == 2


async def test_append_many_stores_in_order_and_reads_back_equal(
    journal: JetStreamJournal, unique_name: str
) -> None:
    events = [decision(unique_name, i, "x" * (i % 50)) for i in range(500)]
    seqs = await journal.append_many(events)
    assert seqs == list(range(1, 501))
    assert await journal.append_many(events[:10]) == list(range(1, 11))  # duplicates
    assert await journal.append_many([]) == []
    entries = await collect(journal.read())
    assert [e.sequence for e in entries] == seqs
    assert [e.event for e in entries] == events
    assert {e.subject for e in entries} == {f"swarm.events.{unique_name}.decision"}
    times = [e.stored_ns for e in entries]
    assert times == sorted(times)
    assert abs(times[0] - time.time_ns()) < 60 * 10**9


async def test_concurrent_appends_share_a_small_window_without_stalling(
    nats_client: Client, unique_name: str
) -> None:
    journal = JetStreamJournal(
        nats_client,
        stream=unique_name,
        subjects=f"swarm.events.{unique_name}.>",
        max_pending=16,
        ack_timeout=5.0,
    )
    try:
        batches = [[decision(unique_name, 1000 * b + i) for i in range(200)] for b in range(4)]
        with capture_logs() as logs:
            started = time.monotonic()
            results = await asyncio.gather(*(journal.append_many(b) for b in batches))
            elapsed = time.monotonic() - started
        assert not [entry for entry in logs if entry["event"] == "journal.append_retry"]
        assert elapsed < 4.0  # a sender left waiting for room would stall ack_timeout (5 s)
        assert sorted(seq for seqs in results for seq in seqs) == list(range(1, 801))
        for seqs in results:
            assert seqs == sorted(seqs)
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_bad_events_are_refused_before_anything_is_published(
    journal: JetStreamJournal, nats_client: Client, unique_name: str
) -> None:
    good = decision(unique_name, 1)
    with pytest.raises(SubjectError, match="outside the journal's subjects"):
        await journal.append_many([good, decision("someone-else", 2)])
    with pytest.raises(InvalidArgumentError, match="SwarmEvent"):
        await journal.append("not an event")  # type: ignore[arg-type]
    huge = decision(unique_name, 3, "x" * (nats_client.max_payload + 1))
    with pytest.raises(MessageTooLargeError) as info:
        await journal.append_many([good, huge])
    assert info.value.limit == nats_client.max_payload
    assert info.value.size > nats_client.max_payload
    assert await stored_count(nats_client, unique_name) == 0


async def test_a_refused_event_is_never_reported_stored(
    nats_client: Client, unique_name: str
) -> None:
    # The stream exists already with a per-message size limit the journal leaves alone.
    await nats_client.jetstream().add_stream(
        StreamConfig(
            name=unique_name,
            subjects=[f"swarm.events.{unique_name}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=0,
            max_bytes=-1,
            num_replicas=1,
            duplicate_window=120.0,
            max_msg_size=400,
        )
    )
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>"
    )
    try:
        events = [decision(unique_name, 0), decision(unique_name, 1, "y" * 1000)]
        events.append(decision(unique_name, 2))
        with pytest.raises(JournalWriteError, match="1 of 3 events not stored") as info:
            await journal.append_many(events)
        assert not isinstance(info.value, TimeoutError)
        assert info.value.sequences == (1, None, 2)
        assert info.value.unconfirmed == (1,)
        stored = await collect(journal.read())
        assert [e.event for e in stored] == [events[0], events[2]]
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_no_ack_means_no_success_and_a_retry_is_deduplicated(unique_name: str) -> None:
    async with NatsServer(jetstream=True) as server:
        client = await connect(NatsOptions(servers=server.url))
        journal = JetStreamJournal(client, timeout=1.0, ack_timeout=0.3)
        try:
            await journal.start()
            event = decision(unique_name, 1)
            server.pause()  # the server stops answering: nothing can be confirmed
            try:
                started = time.monotonic()
                with pytest.raises(JournalTimeoutError) as info:
                    await journal.append(event)
                assert time.monotonic() - started < 3
                assert isinstance(info.value, TimeoutError)
                assert info.value.sequences == (None,)
                # Enough to fill the socket buffers: publishing itself blocks, yet the
                # deadline holds.
                many = [decision(unique_name, i, "z" * 200) for i in range(2, 20_002)]
                started = time.monotonic()
                with pytest.raises(JournalTimeoutError) as info:
                    await journal.append_many(many)
                assert time.monotonic() - started < 3
                assert set(info.value.sequences) == {None}
            finally:
                server.resume()
            # The application appends again, through a journal with the usual deadlines. (The
            # 1 s one above keeps the paused part short; retrying through it made this part a
            # race too: a few MB of backlog for the server, then 20,001 events to store and
            # acknowledge within 1 s, which took 0.4-1.1 s on a loaded 2-core machine.)
            retry = JetStreamJournal(client)
            try:
                # The paused server got the publish (it was in its socket): it is a duplicate.
                assert await retry.append(event) == 1
                seqs = await retry.append_many([event, *many])
                assert seqs[0] == 1
                assert sorted(seqs[1:]) == list(range(2, 20_002))
                assert await retry.last_sequence() == 20_001
            finally:
                await retry.close()
            # The journal whose appends timed out serves on (the server is idle again).
            assert await journal.append(decision(unique_name, 20_002)) == 20_002
        finally:
            await journal.close()
            await client.close()


async def test_append_nowait_and_flush(journal: JetStreamJournal, unique_name: str) -> None:
    events = [decision(unique_name, i) for i in range(100)]
    for event in events:
        assert journal.append_nowait(event) is None  # type: ignore[func-returns-value]
    await journal.flush()
    assert [e.event for e in await collect(journal.read())] == events


async def test_flush_returns_under_a_steady_stream_of_events(
    journal: JetStreamJournal, unique_name: str
) -> None:
    # A producer that hands over an event on every loop iteration keeps the background
    # publisher's buffer from ever running dry: a flush must wait for the events handed over
    # before it was called, not for the producer to stop.
    # It produces until the flushes are done (bounded: the session's server is shared, 64 MB
    # of file store; the journal's buffer makes it wait for the server when it is faster).
    cap = 200_000
    handed = 0
    stop = False

    async def produce() -> None:
        nonlocal handed
        while not stop and handed < cap:
            try:
                journal.append_nowait(decision(unique_name, handed))
            except JournalFullError:  # faster than the server: let the buffer drain
                await asyncio.sleep(0.01)
                continue
            handed += 1
            await asyncio.sleep(0)

    producer = asyncio.ensure_future(produce())
    try:
        await until(lambda: handed >= 1000, 10)
        for _ in range(3):
            before = handed
            await asyncio.wait_for(journal.flush(), 10)
            assert not producer.done()  # it returned while events kept coming
            assert await journal.last_sequence() >= before  # a fresh stream: seq == count
    finally:
        stop = True
        await producer
    await journal.flush()
    assert await journal.last_sequence() == handed


@pytest.mark.parametrize(("linger", "first_chunk"), [(0.05, 20), (0.0, 1)])
async def test_append_nowait_lets_events_gather_for_its_linger(
    nats_client: Client, unique_name: str, linger: float, first_chunk: int
) -> None:
    # Events handed over on successive loop iterations go out as one chunk when they arrive
    # within the linger (fewer writes and ack rounds); without a linger the first goes alone.
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>", linger=linger
    )
    chunks: list[int] = []
    store = journal._store

    async def counting(prepared: Any, *, batch: bool = False) -> list[int]:
        chunks.append(len(prepared))
        return await store(prepared, batch=batch)

    journal._store = counting  # type: ignore[method-assign]
    try:
        await journal.start()
        events = [decision(unique_name, i) for i in range(20)]
        for event in events:
            journal.append_nowait(event)
            await asyncio.sleep(0)
        await journal.flush()
        assert chunks[0] == first_chunk
        assert sum(chunks) == 20
        assert [e.event for e in await collect(journal.read())] == events
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_a_linger_outside_0_to_1_s_is_refused(nats_client: Client) -> None:
    for bad in (-0.001, 1.5, float("nan")):
        with pytest.raises(InvalidArgumentError, match="linger"):
            JetStreamJournal(nats_client, linger=bad)


async def test_append_nowait_refuses_when_its_buffer_is_full(
    nats_client: Client, unique_name: str
) -> None:
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>", buffer_size=2
    )
    try:
        journal.append_nowait(decision(unique_name, 1))
        journal.append_nowait(decision(unique_name, 2))
        with pytest.raises(JournalFullError) as info:  # the drainer has not run yet
            journal.append_nowait(decision(unique_name, 3))
        assert info.value.capacity == 2
        await journal.flush()
        assert await journal.last_sequence() == 2
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_close_lets_appends_in_flight_finish(nats_client: Client, unique_name: str) -> None:
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>", timeout=2.0
    )
    try:
        await journal.start()
        events = [decision(unique_name, i) for i in range(3000)]
        appending = asyncio.ensure_future(journal.append_many(events))
        # Close while it is storing: checked on every turn of the loop (poll=0), so the
        # close comes before 3000 acknowledgements can all be back.
        await until(lambda: journal._storing == 1, 5, "the append is storing", poll=0)
        assert not appending.done()
        await journal.close()
        assert await appending == list(range(1, 3001))
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_closed_journal_refuses_everything(nats_client: Client, unique_name: str) -> None:
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>"
    )
    await journal.append(decision(unique_name, 1))
    await journal.close()
    await journal.close()  # idempotent
    try:
        with pytest.raises(JournalClosedError):
            await journal.append(decision(unique_name, 2))
        with pytest.raises(JournalClosedError):
            journal.append_nowait(decision(unique_name, 2))
        with pytest.raises(JournalClosedError):
            journal.read()
        with pytest.raises(JournalClosedError):
            await journal.last_sequence()
    finally:
        await nats_client.jetstream().delete_stream(unique_name)


async def test_invalid_journal_arguments_are_refused() -> None:
    client = Client()
    for kwargs in [
        {"stream": "a.b"},
        {"stream": ""},
        {"subjects": "swarm..x"},
        {"replicas": 0},
        {"max_age": 0},
        {"max_bytes": 0},
        {"max_age": 60.0},  # shorter than the default duplicate window
        {"timeout": 200.0},  # beyond the duplicate window: retries could duplicate
        {"ack_timeout": 0},
        {"max_pending": 0},
    ]:
        with pytest.raises((InvalidArgumentError, SubjectError)):
            JetStreamJournal(client, **kwargs)  # type: ignore[arg-type]


# --- reading --------------------------------------------------------------------------------


async def test_read_by_sequence_time_and_subject(
    journal: JetStreamJournal, unique_name: str
) -> None:
    assert await collect(journal.read()) == []  # empty journal
    first = [decision(unique_name, i) for i in range(10)]
    await journal.append_many(first)
    await asyncio.sleep(0.01)
    cut = time.time_ns()
    await asyncio.sleep(0.01)
    second = [signal_event(unique_name, i) for i in range(10, 15)]
    await journal.append_many(second)

    assert [e.sequence for e in await collect(journal.read(start_sequence=8))] == list(range(8, 16))
    assert [e.event for e in await collect(journal.read(start_time_ns=cut))] == second
    assert await collect(journal.read(start_sequence=99)) == []
    signals = await collect(journal.read(subject=f"swarm.events.{unique_name}.system_signal"))
    assert [e.event for e in signals] == second
    decisions = await collect(journal.read(subject="swarm.events.*.decision", start_sequence=5))
    assert [e.sequence for e in decisions] == list(range(5, 11))
    # A filter matching nothing at the end of the journal ends at once (no wait for more).
    assert await collect(journal.read(subject="swarm.events.*.state_change")) == []
    with pytest.raises(InvalidArgumentError):
        journal.read(start_sequence=1, start_time_ns=cut)
    with pytest.raises(InvalidArgumentError):
        journal.read(start_sequence=0)
    with pytest.raises(SubjectError):
        journal.read(subject="swarm.>.x")
    with pytest.raises(SubjectError, match="outside stream"):
        await collect(journal.read(subject="elsewhere.>"))


async def test_read_stops_at_the_last_sequence_present_when_called(
    journal: JetStreamJournal, unique_name: str
) -> None:
    await journal.append_many([decision(unique_name, i) for i in range(5)])
    seen = []
    async for entry in journal.read():
        seen.append(entry.sequence)
        if entry.sequence == 2:
            await journal.append_many([decision(unique_name, i) for i in range(5, 10)])
    assert seen == [1, 2, 3, 4, 5]


async def test_a_read_sees_what_append_nowait_was_handed_before_it(
    nats_client: Client, unique_name: str
) -> None:
    # The linger is the longest allowed: without the read's own settling the events would
    # still be waiting in the queue when it asks the stream for its last sequence.
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>", linger=1.0
    )
    try:
        await journal.start()
        events = [decision(unique_name, i) for i in range(3)]
        for event in events:
            journal.append_nowait(event)
        assert [e.event for e in await asyncio.wait_for(collect(journal.read()), 0.9)] == events
        # A failure among them is left for flush to report, not raised by the read.
        store = journal._store

        async def failing(prepared: Any, *, batch: bool = False) -> list[int]:
            raise ConnectionError("lost")

        journal._store = failing  # type: ignore[method-assign]
        journal.append_nowait(decision(unique_name, 3))
        assert len(await collect(journal.read())) == 3
        journal._store = store  # type: ignore[method-assign]
        with pytest.raises(ConnectionError, match="lost"):
            await journal.flush()
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_tail_follows_new_entries_and_ends_when_the_journal_closes(
    nats_client: Client, unique_name: str
) -> None:
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>"
    )
    try:
        await journal.append_many([decision(unique_name, i) for i in range(3)])
        from_start = journal.tail(start_sequence=2)
        new_only = journal.tail()
        got: list[int] = []
        got_new: list[int] = []

        async def follow(tail: AsyncIterator[JournalEntry], into: list[int]) -> None:
            async for entry in tail:
                into.append(entry.sequence)

        tasks = [
            asyncio.ensure_future(follow(from_start, got)),
            asyncio.ensure_future(follow(new_only, got_new)),
        ]
        # Both tails are reading: new_only has fixed its start (the last sequence at the
        # call, 3) and registered its reader; from_start has already read 2 and 3.
        await until(
            lambda: len(journal._readers) == 2 and len(got) == 2, 10, "both tails are reading"
        )
        assert got_new == []
        await journal.append_many([decision(unique_name, i) for i in range(3, 6)])
        await until(lambda: len(got) >= 5 and len(got_new) >= 3, 10, "both tails follow")
        await journal.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks)  # both ended on close
        assert got == [2, 3, 4, 5, 6]
        assert got_new == [4, 5, 6]
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_garbage_in_the_stream_is_a_typed_error_or_skipped(
    journal: JetStreamJournal, nats_client: Client, unique_name: str
) -> None:
    await journal.append(decision(unique_name, 1))
    await nats_client.jetstream().publish(f"swarm.events.{unique_name}.decision", b"\xc1garbage")
    await journal.append(decision(unique_name, 3))
    with pytest.raises(EventDecodeError, match="sequence 2"):
        await collect(journal.read())
    with capture_logs() as logs:
        entries = await collect(journal.read(errors="skip"))
    assert [e.sequence for e in entries] == [1, 3]
    assert [entry["sequence"] for entry in logs if entry["event"] == "journal.undecodable"] == [2]
    consumer = journal.durable("reader")
    with capture_logs() as logs:
        deliveries = await consumer.fetch(10, timeout=2)
    assert [d.entry.sequence for d in deliveries] == [1, 3]
    assert any(entry["event"] == "journal.undecodable" for entry in logs)
    for d in deliveries:
        await d.ack()
    assert await consumer.pending() == 0  # the garbage was terminated, not left to redeliver
    await consumer.delete()


# --- durable consumers ----------------------------------------------------------------------

CRASHING_CONSUMER = """
import asyncio, sys
from swarm_actors.cluster import NatsOptions
from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors._nats._conn import connect

async def main():
    url, stream, subjects = sys.argv[1:4]
    client = await connect(NatsOptions(servers=url))
    journal = JetStreamJournal(client, stream=stream, subjects=subjects)
    consumer = journal.durable("worker", ack_wait=1.0)
    deliveries = await consumer.fetch(6, timeout=5)
    for d in deliveries[:4]:
        await d.ack()
    print(",".join(str(d.entry.sequence) for d in deliveries), flush=True)
    await asyncio.sleep(60)  # killed here, holding two unacknowledged entries

asyncio.run(main())
"""


async def test_durable_consumer_resumes_after_a_crash_without_loss(
    nats_server: NatsServer, journal: JetStreamJournal, unique_name: str
) -> None:
    events = [decision(unique_name, i) for i in range(10)]
    await journal.append_many(events)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASHING_CONSUMER,
        nats_server.url,
        unique_name,
        f"swarm.events.{unique_name}.>",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == "1,2,3,4,5,6"
    finally:
        proc.kill()  # SIGKILL: no clean-up, two entries still unacknowledged
        await proc.wait()

    consumer = journal.durable("worker", ack_wait=1.0)
    seen: list[int] = []
    async with asyncio.timeout(15):
        while len(seen) < 6:
            for delivery in await consumer.fetch(10, timeout=2):
                seen.append(delivery.entry.sequence)
                assert delivery.entry.event == events[delivery.entry.sequence - 1]
                await delivery.ack()
    # 1-4 were acknowledged before the crash: never again. 5-6 come back, then the rest.
    assert sorted(seen) == [5, 6, 7, 8, 9, 10]
    assert await consumer.fetch(10, timeout=0.3) == []
    assert await consumer.pending() == 0
    await consumer.delete()


async def test_consume_acks_after_the_handler_and_retries_failures(
    journal: JetStreamJournal, unique_name: str
) -> None:
    await journal.append_many([decision(unique_name, i) for i in range(5)])
    async with journal.durable("handler") as consumer:
        await consume_all(consumer)
    again = journal.durable("handler")  # the position outlives this process's subscription
    assert await again.pending() == 0
    assert await again.fetch(10, timeout=0.2) == []
    await again.delete()


async def consume_all(consumer: DurableConsumer) -> None:
    handled: list[int] = []
    failed_once: set[int] = set()

    async def handler(entry: JournalEntry) -> None:
        if entry.sequence == 3 and 3 not in failed_once:
            failed_once.add(3)
            raise RuntimeError("transient")
        handled.append(entry.sequence)

    task = asyncio.ensure_future(consumer.consume(handler))
    try:
        await until(lambda: len(handled) >= 5, 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sorted(handled) == [1, 2, 3, 4, 5]
    assert failed_once == {3}

    # The last ack is published after the handler returned: the server may count it a moment
    # later (seen under load), so wait for it rather than race it.
    async def acknowledged() -> bool:
        return await consumer.pending() == 0

    await until_async(acknowledged, 10, "the server counts every ack", state=consumer.pending)


async def test_a_cancellation_lost_inside_nats_py_is_raised_again() -> None:
    from swarm_actors._nats._durable import _raise_lost_cancellation

    async def swallows() -> None:
        # As Python 3.11's wait_for can inside nats-py's fetch: the cancellation vanishes.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        _raise_lost_cancellation()

    task = asyncio.ensure_future(swallows())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _raise_lost_cancellation()  # nothing to raise in a task nobody cancelled


async def test_existing_stream_is_updated_to_the_journal_settings(
    nats_client: Client, unique_name: str
) -> None:
    subjects = f"swarm.events.{unique_name}.>"
    first = JetStreamJournal(nats_client, stream=unique_name, subjects=subjects)
    await first.append(decision(unique_name, 1))
    await first.close()
    second = JetStreamJournal(nats_client, stream=unique_name, subjects=subjects, max_age=3600)
    try:
        await second.start()
        info = await nats_client.jetstream().stream_info(unique_name)
        assert info.config.max_age == 3600
        assert info.state.messages == 1  # updated, not recreated
    finally:
        await second.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_configure_false_uses_an_existing_stream_as_it_is(
    nats_client: Client, unique_name: str
) -> None:
    subjects = f"swarm.events.{unique_name}.>"
    first = JetStreamJournal(nats_client, stream=unique_name, subjects=subjects, max_age=3600)
    await first.append(decision(unique_name, 1))
    await first.close()
    second = JetStreamJournal(nats_client, stream=unique_name, subjects=subjects, configure=False)
    wrong = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"{subjects[:-2]}.x.>", configure=False
    )
    try:
        await second.append(decision(unique_name, 2))
        info = await nats_client.jetstream().stream_info(unique_name)
        assert info.config.max_age == 3600  # not brought to second's settings (no limit)
        assert info.state.messages == 2
        with pytest.raises(InvalidArgumentError, match="would not be stored"):
            await wrong.start()  # the stream is not on its subjects
    finally:
        await wrong.close()
        await second.close()
        await nats_client.jetstream().delete_stream(unique_name)


# --- stream creation while a peer is not yet known online --------------------------------


def refuse_placement(
    monkeypatch: pytest.MonkeyPatch,
    stream: str,
    times: int,
    description: str,
    *,
    err_code: int = 10005,
    server_error: bool = False,
) -> list[float]:
    """Make the server's first ``times`` creations of ``stream`` fail with "no suitable peers".

    What a replicated stream gets from a cluster whose meta leader has not yet heard from a
    peer (seen on CI moments after the cluster formed). Returns the times of the attempts.
    """
    from nats.js.errors import BadRequestError, ServerError
    from nats.js.manager import JetStreamManager

    real = JetStreamManager.add_stream
    attempts: list[float] = []

    async def add_stream(self: JetStreamManager, config: StreamConfig, **params: object) -> object:
        if config.name == stream:
            attempts.append(time.monotonic())
            if len(attempts) <= times:
                if server_error:
                    raise ServerError(code=500, err_code=err_code, description=description)
                raise BadRequestError(code=400, err_code=err_code, description=description)
        return await real(self, config, **params)

    monkeypatch.setattr(JetStreamManager, "add_stream", add_stream)
    return attempts


PEER_OFFLINE = "no suitable peers for placement, peer offline"


async def test_the_journal_waits_out_a_peer_not_yet_known_online(
    nats_client: Client, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = refuse_placement(monkeypatch, unique_name, 3, PEER_OFFLINE)
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>", timeout=10
    )
    try:
        await journal.append(decision(unique_name, 1))
        assert len(attempts) == 4
        assert await stored_count(nats_client, unique_name) == 1
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_the_journal_retries_a_store_the_server_failed_to_create(
    nats_client: Client, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen once in CI: a loaded server answered a brand-new stream with this fixed sentence."""
    attempts = refuse_placement(
        monkeypatch,
        unique_name,
        2,
        "error creating store for stream",
        err_code=10049,
        server_error=True,
    )
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>", timeout=10
    )
    try:
        await journal.append(decision(unique_name, 1))
        assert len(attempts) == 3
        assert await stored_count(nats_client, unique_name) == 1
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


async def test_a_placement_that_waiting_cannot_fix_is_raised_at_once(
    nats_client: Client, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nats.js.errors import BadRequestError

    no_room = "no suitable peers for placement, insufficient storage"
    attempts = refuse_placement(monkeypatch, unique_name, 1, no_room)
    journal = JetStreamJournal(
        nats_client, stream=unique_name, subjects=f"swarm.events.{unique_name}.>", timeout=10
    )
    with pytest.raises(BadRequestError, match="insufficient storage"):
        await journal.start()
    assert len(attempts) == 1
    await journal.close()


async def test_a_bucket_waits_out_a_peer_not_yet_known_online(
    nats_client: Client, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm_actors._nats._registry import open_bucket

    attempts = refuse_placement(monkeypatch, f"KV_{unique_name}", 3, PEER_OFFLINE)
    js = nats_client.jetstream()
    kv = await open_bucket(js, unique_name, memory=True, replicas=1)
    try:
        await kv.put("k", b"v")
        assert len(attempts) == 4
        assert (await kv.get("k")).value == b"v"
    finally:
        await js.delete_key_value(unique_name)


# --- cluster failover -----------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_acknowledged_events_survive_killing_the_stream_leader(
    nats_cluster: NatsCluster,
) -> None:
    client = await connect(NatsOptions(servers=nats_cluster.urls, reconnect_wait=0.1))
    journal = JetStreamJournal(client, replicas=3, timeout=30.0, ack_timeout=1.0)
    try:
        await journal.start()
        info = await client.jetstream().stream_info(journal.stream)
        assert info.cluster is not None
        assert info.cluster.leader is not None
        leader = nats_cluster.index_of(info.cluster.leader)
        acknowledged: dict[str, int] = {}
        stop = asyncio.Event()

        async def writer(name: str) -> None:
            i = 0
            while not stop.is_set():
                batch = [decision(name, i + k) for k in range(20)]
                i += 20
                try:
                    seqs = await journal.append_many(batch)
                except JournalWriteError as e:  # counts only what was confirmed
                    seqs = list(e.sequences)  # type: ignore[arg-type]
                for event, seq in zip(batch, seqs, strict=True):
                    if seq is not None:
                        acknowledged[event.event_id] = seq

        writers = [asyncio.ensure_future(writer(f"w{k}")) for k in range(2)]
        await until(lambda: len(acknowledged) >= 100, 20)  # appending is under way
        before = len(acknowledged)
        await nats_cluster.kill(leader)
        killed_at = time.monotonic()
        # Failover takes 7-10 s here; appends wait it out (retried, deduplicated).
        await until(
            lambda: len(acknowledged) >= before + 400 and time.monotonic() - killed_at > 1, 40
        )
        stop.set()
        await asyncio.gather(*writers)

        entries = await collect(journal.read())
        stored = {e.event.event_id: e.sequence for e in entries}
        missing = set(acknowledged) - set(stored)
        assert not missing, f"{len(missing)} acknowledged events lost"
        assert all(stored[i] == seq for i, seq in acknowledged.items())
        assert len(stored) == len(entries)  # deduplicated: no event stored twice
        new_info = await client.jetstream().stream_info(journal.stream)
        assert new_info.cluster is not None
        assert new_info.cluster.leader != info.cluster.leader
    finally:
        await journal.close()
        await client.close()


# --- the runtime writing into JetStream -----------------------------------------------------


class Register(Actor, role="register"):
    def __init__(self) -> None:
        self.value = 0

    @handler
    async def set(self, msg: Set) -> None:
        why = self.decide(f"set {msg.value}", rationale="asked to")
        self.value = msg.value
        self.record_change({"value": msg.value}, resource="value", cause=why)


async def test_an_actor_system_journals_into_jetstream() -> None:
    # Its own server: a stream on all of swarm.events.> would overlap the other tests' streams.
    async with NatsServer() as server:
        client = await connect(NatsOptions(servers=server.url))
        journal = JetStreamJournal(client)
        try:
            assert isinstance(journal, Journal)
            async with ActorSystem(journal=journal) as system:
                ref = await system.start(Register, name="reg")
                await ref.ask(Set(7), timeout=5)
            entries = await collect(journal.read())  # the system flushed when it stopped
            events = [e.event for e in entries]
            signals = [ev.payload.kind for ev in events if isinstance(ev.payload, SystemSignal)]
            assert SignalKind.STARTED in signals
            assert SignalKind.STOPPED in signals
            mine = [ev for ev in events if ev.agent_role == "register"]
            recorded = [type(ev.payload) for ev in mine if not isinstance(ev.payload, SystemSignal)]
            assert recorded == [AgentDecision, StateChange]
            heads = verify_chain(mine)  # raises ChainBrokenError if the chain was not intact
            assert list(heads) == [mine[0].agent_id]
        finally:
            await journal.close()
            await client.close()
