"""The JetStream journal when its store fails: damaged or deleted entries, a SIGKILLed server.

Each test runs its own ``nats-server`` on a store directory of its own, so that it can stop the
server, damage the files, or kill it, and start it again on the same store.

A damaged entry is one whose stored bytes no longer match their checksum (one byte flipped in
the message block while the server is stopped): after a clean stop the server trusts its
index, still counts the entry, and cannot deliver it. A deleted entry is one removed through
the JetStream API (``$JS.API.STREAM.MSG.DELETE``), which is how an operator (or an attacker
with access to the API) takes one out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client

from helpers import until
from log_capture import capture_logs
from swarm_actors._nats._conn import connect
from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors.cluster import NatsOptions
from swarm_actors.errors import JournalGapError, JournalWriteError
from swarm_actors.events import AgentDecision, JournalEntry, SwarmEvent, new_event
from swarm_actors.testing import NatsServer
from swarm_actors.testing.pytest_plugin import NATS_TEST_FILE_STORE, NATS_TEST_MEMORY_STORE

pytestmark = pytest.mark.asyncio

STREAM = "FAULTS"
SUBJECTS = "swarm.events.faults.>"
READ_LIMIT = 30.0  # a read that has not ended by then hangs (each one here takes < 1 s)


def decision(i: int, role: str = "faults") -> SwarmEvent:
    """A decision whose stored bytes hold ``marker-<i>`` (to find it in the store's files)."""
    payload = AgentDecision(choice=f"choice-{i}", rationale=f"marker-{i:05d}")
    return new_event(payload, agent_role=role, agent_id="a", sequence=i)


def damage(store: Path, i: int) -> None:
    """Flip one byte of the stored record of ``decision(i)``: its checksum no longer matches."""
    marker = f"marker-{i:05d}".encode()
    for block in store.rglob("msgs/*.blk"):
        data = bytearray(block.read_bytes())
        at = data.find(marker)
        if at >= 0:
            data[at] ^= 0xFF
            block.write_bytes(bytes(data))
            return
    raise AssertionError(f"no stored record holds {marker!r}")


async def delete(client: Client, sequence: int) -> None:
    """Remove one entry through the JetStream API."""
    answer = await client.request(
        f"$JS.API.STREAM.MSG.DELETE.{STREAM}", json.dumps({"seq": sequence}).encode(), timeout=5
    )
    assert json.loads(answer.data).get("success"), answer.data


async def read_all(entries: AsyncIterator[JournalEntry]) -> list[JournalEntry]:
    """What a read yields, failing (not hanging) if it does not end in time."""
    seen: list[JournalEntry] = []

    async def drain() -> None:
        async for entry in entries:
            seen.append(entry)

    try:
        await asyncio.wait_for(drain(), READ_LIMIT)
    except TimeoutError:
        pytest.fail(f"the read hung after sequences {[e.sequence for e in seen]}")
    return seen


async def sequences(entries: AsyncIterator[JournalEntry]) -> list[int]:
    """The sequences a read yields (see ``read_all``)."""
    return [entry.sequence for entry in await read_all(entries)]


async def gap_after(entries: AsyncIterator[JournalEntry]) -> tuple[list[int], JournalGapError]:
    """The sequences a read yields before it raises ``JournalGapError``, and the error."""
    seen: list[int] = []

    async def drain() -> None:
        async for entry in entries:
            seen.append(entry.sequence)

    try:
        await asyncio.wait_for(drain(), READ_LIMIT)
    except JournalGapError as gap:
        return seen, gap
    except TimeoutError:
        pytest.fail(f"the read hung after sequences {seen}")
    pytest.fail(f"the read ended after sequences {seen} without reporting a gap")


def gaps_logged(logs: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(e["first"], e["last"], e["missing"]) for e in logs if e["event"] == "journal.gap"]


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A server on a store directory of this test's own (kept across stop/start)."""
    server = NatsServer(
        store_dir=tmp_path,
        max_file_store=NATS_TEST_FILE_STORE,
        max_memory_store=NATS_TEST_MEMORY_STORE,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def open_journal(server: NatsServer) -> tuple[Client, JetStreamJournal]:
    client = await connect(NatsOptions(servers=server.url, reconnect_wait=0.05))
    journal = JetStreamJournal(client, stream=STREAM, subjects=SUBJECTS, timeout=15.0)
    await journal.start()
    return client, journal


async def store_damaged(server: NatsServer, count: int, damaged: list[int]) -> None:
    """Store ``count`` decisions (sequences 1..count), stop, damage ``damaged``, start again."""
    client, journal = await open_journal(server)
    try:
        assert await journal.append_many([decision(i) for i in range(1, count + 1)]) == list(
            range(1, count + 1)
        )
    finally:
        await journal.close()
        await client.close()
    store = server.store_dir
    await server.stop()
    for i in damaged:
        damage(store, i)
    await server.start()


# --- gaps -----------------------------------------------------------------------------------


async def test_a_read_ends_at_a_damaged_last_entry_and_names_it(server: NatsServer) -> None:
    await store_damaged(server, 10, damaged=[10])
    client, journal = await open_journal(server)
    try:
        # The stream still reports 10 as its last sequence: a read used to wait for it forever.
        assert await journal.last_sequence() == 10
        seen, gap = await gap_after(journal.read())
        assert seen == list(range(1, 10))
        assert (gap.first, gap.last, gap.missing) == (10, 10, 1)
        assert "sequence 10" in str(gap)
        # A read with a subject filter cannot see sequences, but the server still counts the
        # lost entry among those matching it: the gap is reported over the span read.
        seen, gap = await gap_after(journal.read(subject="swarm.events.faults.decision"))
        assert seen == list(range(1, 10))
        assert (gap.first, gap.last, gap.missing) == (1, 10, 1)
        with capture_logs() as logs:
            assert await sequences(journal.read(errors="skip")) == list(range(1, 10))
        assert gaps_logged(logs) == [(10, 10, 1)]
    finally:
        await journal.close()
        await client.close()


async def test_a_read_names_every_damaged_entry_it_crosses(server: NatsServer) -> None:
    await store_damaged(server, 12, damaged=[4, 5, 9])
    client, journal = await open_journal(server)
    try:
        # Each gap is raised once everything before it was yielded; reading on from after it
        # goes on to the next one.
        seen, gap = await gap_after(journal.read())
        assert seen == [1, 2, 3]
        assert (gap.first, gap.last, gap.missing) == (4, 5, 2)
        seen, gap = await gap_after(journal.read(start_sequence=gap.last + 1))
        assert seen == [6, 7, 8]
        assert (gap.first, gap.last, gap.missing) == (9, 9, 1)
        assert await sequences(journal.read(start_sequence=gap.last + 1)) == [10, 11, 12]
        # A read that starts inside a gap reports it too.
        _, gap = await gap_after(journal.read(start_sequence=5))
        assert (gap.first, gap.last) == (5, 5)
        with capture_logs() as logs:
            assert await sequences(journal.read(errors="skip")) == [1, 2, 3, 6, 7, 8, 10, 11, 12]
        assert gaps_logged(logs) == [(4, 5, 2), (9, 9, 1)]
        # A filtered read learns from the server's count that 3 of its entries are missing.
        seen, gap = await gap_after(journal.read(subject="swarm.events.faults.decision"))
        assert seen == [1, 2, 3, 6, 7, 8, 10, 11, 12]
        assert (gap.first, gap.last, gap.missing) == (1, 12, 3)
        assert "3 entries matching the read's filter missing from sequences 1-12" in str(gap)
        # The tail crosses them the same way.
        tail = journal.tail(start_sequence=1)
        seen, gap = await gap_after(tail)
        assert (seen, gap.first, gap.last) == ([1, 2, 3], 4, 5)
    finally:
        await journal.close()
        await client.close()


async def test_deleted_entries_are_gaps_and_what_retention_removed_is_not(
    server: NatsServer,
) -> None:
    client, journal = await open_journal(server)
    try:
        await journal.append_many([decision(i) for i in range(1, 11)])
        await delete(client, 3)
        await delete(client, 10)  # the last: the stream still reports 10 as its last sequence
        seen, gap = await gap_after(journal.read())
        assert (seen, gap.first, gap.last) == ([1, 2], 3, 3)
        seen, gap = await gap_after(journal.read(start_sequence=4))
        assert (seen, gap.first, gap.last) == ([4, 5, 6, 7, 8, 9], 10, 10)
        _, gap = await gap_after(journal.read(start_sequence=10))  # nothing at all left to read
        assert (gap.first, gap.last) == (10, 10)
        with capture_logs() as logs:
            assert await sequences(journal.read(errors="skip")) == [1, 2, 4, 5, 6, 7, 8, 9]
        assert gaps_logged(logs) == [(3, 3, 1), (10, 10, 1)]
        # Retention removes the oldest entries (here a purge keeping the newest 3, as max_age
        # or max_bytes would): reading from before them starts at the oldest left, no gap.
        await journal.append_many([decision(i) for i in range(11, 16)])
        await client.jetstream().purge_stream(STREAM, keep=3)
        assert await sequences(journal.read(start_sequence=1)) == [13, 14, 15]
        assert await sequences(journal.read()) == [13, 14, 15]
    finally:
        await journal.close()
        await client.close()


# --- SIGKILL of the server ------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_acknowledged_events_survive_sigkill_of_the_server(server: NatsServer) -> None:
    """Append in a loop, SIGKILL the server twice mid-append, restart it on the same store.

    Every event the journal acknowledged must be stored exactly once, at the sequence it was
    acknowledged with, in the order it was appended; unacknowledged ones may or may not be.
    (The server writes a message to its block file before acknowledging it: SIGKILL loses
    no acknowledged write; an OS crash could, within the server's ``sync_interval``.)
    """
    client, journal = await open_journal(server)
    appended: list[str] = []  # event ids, in the order they were handed to append_many
    acked: dict[str, int] = {}
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            batch = [decision(i + k) for k in range(50)]
            i += 50
            appended.extend(event.event_id for event in batch)
            try:
                seqs = await journal.append_many(batch)
            except JournalWriteError as e:  # counts only what was confirmed
                seqs = list(e.sequences)  # type: ignore[arg-type]
            for event, seq in zip(batch, seqs, strict=True):
                if seq is not None:
                    acked[event.event_id] = seq

    def appended_more(count: int) -> Callable[[], bool]:
        target = len(acked) + count
        return lambda: len(acked) >= target

    try:
        with capture_logs() as logs:
            task = asyncio.ensure_future(writer())
            try:
                for _ in range(2):
                    await until(appended_more(2000), 20, "appending is under way")
                    await server.kill()  # SIGKILL, with appends in flight
                    assert not task.done()
                    await server.start()  # same ports, same store
                await until(appended_more(2000), 30, "appends go on after the restart")
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
        # The kills came with appends in flight: their acknowledgements were lost, retried.
        assert any(entry["event"] == "journal.append_retry" for entry in logs)
        entries = await read_all(journal.read())  # a gap would raise JournalGapError
    finally:
        await journal.close()
        await client.close()

    stored: dict[str, list[int]] = {}
    for entry in entries:
        stored.setdefault(entry.event.event_id, []).append(entry.sequence)
    lost = [event_id for event_id in acked if event_id not in stored]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged events lost"
    twice = {event_id: seqs for event_id, seqs in stored.items() if len(seqs) > 1}
    assert not twice, f"stored more than once: {twice}"
    assert all(stored[event_id] == [seq] for event_id, seq in acked.items())
    in_order = [acked[event_id] for event_id in appended if event_id in acked]
    assert in_order == sorted(in_order)
    print(
        f"\n{len(acked)} events acknowledged across 2 SIGKILLs, all stored once in order; "
        f"{len(entries) - len(acked)} unacknowledged ones stored too, "
        f"{len(appended) - len(entries)} not stored"
    )


async def test_events_handed_to_append_nowait_survive_sigkill_of_the_server(
    server: NatsServer,
) -> None:
    """The same through ``append_nowait`` (atomic batches, then one by one when one fails).

    The journal's timeout (15 s) outlasts the restarts, so nothing fails: once ``flush``
    returns, every event handed over is stored exactly once, and those handed over before the
    first kill (answered by then, or retried) in the order they were handed over.
    """
    client, journal = await open_journal(server)
    handed: list[SwarmEvent] = []
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            for _ in range(20):
                event = decision(i)
                i += 1
                journal.append_nowait(event)
                handed.append(event)
            await asyncio.sleep(0.001)

    def handed_more(count: int) -> Callable[[], bool]:
        target = len(handed) + count
        return lambda: len(handed) >= target

    try:
        with capture_logs() as logs:
            task = asyncio.ensure_future(writer())
            try:
                for _ in range(2):
                    await until(handed_more(2000), 20, "appending is under way")
                    await server.kill()  # SIGKILL, with a batch in flight most likely
                    await server.start()
                await until(handed_more(2000), 30, "appends go on after the restart")
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
            await asyncio.wait_for(journal.flush(), 60)
        assert not [e for e in logs if e["event"] == "journal.append_failed"]
        # Whether a kill cut a batch off (then published again one by one) depends on timing:
        # not asserted here. The retry path is made certain by a paused server in
        # test_journal_batches.py; this test holds the outcome: every event once, in order.
        entries = await read_all(journal.read())
    finally:
        await journal.close()
        await client.close()
    stored: dict[str, list[int]] = {}
    for entry in entries:
        stored.setdefault(entry.event.event_id, []).append(entry.sequence)
    assert [e.event_id for e in handed if e.event_id not in stored] == []
    assert {k: v for k, v in stored.items() if len(v) > 1} == {}
    assert len(entries) == len(handed)
