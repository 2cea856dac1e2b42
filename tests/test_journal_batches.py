"""How the JetStream journal publishes: frames it builds itself, and atomic batches.

``append_nowait``'s chunks go as atomic batches (one acknowledgement per batch) where the
server and the stream allow them, and one message per event otherwise; both keep each event's
``Nats-Msg-Id``. What goes wrong with a batch is published again one by one: nothing stored
twice, nothing reported stored that is not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from helpers import own_journal_server, until
from swarm_actors._nats._batch import BatchSender, Prepared, server_batches
from swarm_actors._nats._compat import send_frames, server_info
from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors.errors import JournalFullError
from swarm_actors.events import AgentDecision, JournalEntry, SwarmEvent, new_event
from swarm_actors.testing import NatsCluster, NatsServer


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    """This module's own JetStream server (``nats_client`` connects to it)."""
    yield from own_journal_server("swarm-test-batches")


def decision(role: str, i: int) -> SwarmEvent:
    return new_event(AgentDecision(choice=f"c{i}"), agent_role=role, agent_id="a", sequence=i)


async def collect(entries: AsyncIterator[JournalEntry]) -> list[JournalEntry]:
    return [entry async for entry in entries]


def journal_for(client: Client, name: str, **kwargs: Any) -> JetStreamJournal:
    return JetStreamJournal(client, stream=name, subjects=f"swarm.events.{name}.>", **kwargs)


def record_batches(journal: JetStreamJournal) -> list[list[int] | None]:
    """What each batch attempt of ``journal`` answered (``None``: it fell back)."""
    answers: list[list[int] | None] = []
    store = journal._batches.store

    async def recording(prepared: Any, timeout: float) -> list[int] | None:
        seqs = await store(prepared, timeout)
        answers.append(seqs)
        return seqs

    journal._batches.store = recording  # type: ignore[method-assign]
    return answers


# --- frames ----------------------------------------------------------------------------------


@pytest.mark.parametrize("event_id", ["0193f0a1-b2c3-7d4e-85f6-a7b8c9d0e1f2", "  a\r\nb\nc  "])
@pytest.mark.asyncio
async def test_a_prepared_frame_is_what_nats_py_would_send(
    nats_client: Client, unique_name: str, event_id: str
) -> None:
    subject, reply, payload = f"{unique_name}.frames", f"{unique_name}.reply.7", b"\x00pay\r\nload"
    # nats-py's publish only appends to its buffer (the flusher writes later): take it from there.
    await nats_client.publish(subject, payload, reply=reply, headers={"Nats-Msg-Id": event_id})
    expected = b"".join(nats_client._pending)
    item = Prepared(f"HPUB {subject} ".encode(), subject, payload, event_id)
    assert item.head + reply.encode() + item.tail == expected


@pytest.mark.asyncio
async def test_batch_frames_are_what_nats_py_would_send(
    nats_client: Client, unique_name: str
) -> None:
    subject = f"{unique_name}.frames"
    sender = BatchSender(nats_client, enabled=True)
    await sender.start()
    await nats_client.flush()  # (its SUB: nothing else in nats-py's buffer)
    try:
        items = [
            Prepared(f"HPUB {subject} ".encode(), subject, b"p" * i, f"id-{i}") for i in range(12)
        ]
        numbers: list[int] = []
        frames = sender._frames(items, numbers)
        assert frames is not None
        data, messages, payloads = frames
        assert (messages, payloads) == (12, sum(range(12)))
        batch = f"{sender._id}{numbers[0]}"
        for i, item in enumerate(items, 1):
            headers = {"Nats-Msg-Id": item.msg_id, "Nats-Batch-Id": batch}
            headers["Nats-Batch-Sequence"] = str(i)
            reply = ""
            if i == len(items):
                headers["Nats-Batch-Commit"] = "1"
                reply = f"{sender._prefix}{numbers[0]}"
            await nats_client.publish(subject, item.payload, reply=reply, headers=headers)
        assert data == b"".join(nats_client._pending)
    finally:
        await sender.stop()


@pytest.mark.asyncio
async def test_send_frames_delivers_them_and_counts_them_like_publish(
    nats_client: Client, unique_name: str
) -> None:
    subject = f"{unique_name}.frames"
    sub = await nats_client.subscribe(subject)
    items = [
        Prepared(f"HPUB {subject} ".encode(), subject, b"m%d" % i, f"id-{i}") for i in range(3)
    ]
    before = dict(nats_client.stats)
    frames = b"".join(
        item.head + b"r." + str(i).encode() + item.tail for i, item in enumerate(items)
    )
    await send_frames(nats_client, frames, 3, 6)
    got = [await sub.next_msg(timeout=5) for _ in items]
    assert [(m.data, m.reply, m.headers) for m in got] == [
        (b"m%d" % i, f"r.{i}", {"Nats-Msg-Id": f"id-{i}"}) for i in range(3)
    ]
    assert nats_client.stats["out_msgs"] - before["out_msgs"] == 3
    assert nats_client.stats["out_bytes"] - before["out_bytes"] == 6
    await sub.unsubscribe()


def test_server_versions_that_take_deduplicated_batches() -> None:
    for version in ("2.12.1", "2.15.1", "3.0.0", "2.14.0-RC.1"):
        assert server_batches(version), version
    for other in ("2.12.0", "2.11.9", None, "nonsense", "2"):
        assert not server_batches(other), other


# --- batches ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_append_nowait_stores_its_chunks_as_atomic_batches(
    nats_client: Client, unique_name: str
) -> None:
    journal = journal_for(nats_client, unique_name, linger=0.05)
    answers = record_batches(journal)
    try:
        await journal.start()
        if not server_batches(server_info(nats_client).get("version")):
            pytest.skip("this nats-server takes no deduplicated atomic batches")
        info = await nats_client.jetstream().stream_info(unique_name)
        assert info.config.allow_atomic
        journal._batches.max_size = 7  # several batches in one chunk
        events = [decision(unique_name, i) for i in range(30)]
        for event in events:
            journal.append_nowait(event)
        await journal.flush()
        assert answers == [list(range(1, 31))]  # one chunk, committed in 5 batches, in order
        assert [(e.sequence, e.event) for e in await collect(journal.read())] == list(
            enumerate(events, 1)
        )
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


@pytest.mark.asyncio
async def test_a_batch_holding_a_stored_event_is_stored_one_by_one_without_duplicates(
    nats_client: Client, unique_name: str
) -> None:
    journal = journal_for(nats_client, unique_name)
    answers = record_batches(journal)
    try:
        events = [decision(unique_name, i) for i in range(10)]
        assert await journal.append_many(events[3:5]) == [1, 2]  # stored before
        for event in events:
            journal.append_nowait(event)
        await journal.flush()
        if journal._batches.enabled:
            assert answers == [None]  # the server refused the batch: a duplicate id in it
        stored = [e.event for e in await collect(journal.read())]
        assert stored == events[3:5] + events[:3] + events[5:]  # each one once
        # Still on for the next chunks (where the server takes batches at all).
        assert journal._batches.enabled == server_batches(server_info(nats_client).get("version"))
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


@pytest.mark.asyncio
async def test_an_existing_stream_keeps_its_settings_when_it_is_given_batches(
    nats_client: Client, unique_name: str
) -> None:
    js = nats_client.jetstream()
    await js.add_stream(
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
            max_msg_size=4000,
        )
    )
    journal = journal_for(nats_client, unique_name)
    try:
        await journal.start()
        config = (await js.stream_info(unique_name)).config
        assert config.max_msg_size == 4000
        assert config.allow_atomic == journal._batches.enabled
    finally:
        await journal.close()
        await js.delete_stream(unique_name)


@pytest.mark.asyncio
async def test_a_stream_used_as_it_is_without_batches_gets_one_message_per_event(
    nats_client: Client, unique_name: str
) -> None:
    js = nats_client.jetstream()
    await js.add_stream(
        StreamConfig(
            name=unique_name,
            subjects=[f"swarm.events.{unique_name}.>"],
            storage=StorageType.FILE,
            duplicate_window=120.0,
        )
    )
    journal = journal_for(nats_client, unique_name, configure=False)
    answers = record_batches(journal)
    try:
        await journal.start()
        assert not journal._batches.enabled
        events = [decision(unique_name, i) for i in range(20)]
        for event in events:
            journal.append_nowait(event)
        await journal.flush()
        assert answers == []  # the batch sender is not asked
        assert [e.event for e in await collect(journal.read())] == events
        assert not (await js.stream_info(unique_name)).config.allow_atomic
    finally:
        await journal.close()
        await js.delete_stream(unique_name)


@pytest.mark.asyncio
async def test_a_paused_server_times_a_batch_out_and_a_retry_stores_each_event_once(
    unique_name: str,
) -> None:
    from swarm_actors._nats._conn import connect
    from swarm_actors.cluster import NatsOptions
    from swarm_actors.errors import JournalTimeoutError
    from swarm_actors.testing import NatsServer

    async with NatsServer(jetstream=True) as server:
        client = await connect(NatsOptions(servers=server.url))
        journal = journal_for(client, unique_name, timeout=1.0, ack_timeout=0.3)
        answers = record_batches(journal)
        try:
            await journal.start()
            events = [decision(unique_name, i) for i in range(50)]
            server.pause()  # the batch is received, not answered
            try:
                for event in events:
                    journal.append_nowait(event)
                with pytest.raises(JournalTimeoutError):
                    await journal.flush()
            finally:
                server.resume()
            if journal._batches.enabled:
                assert answers[0] is None  # no answer in time: published one by one, in vain
            retry = journal_for(client, unique_name)
            try:
                for event in events:  # the application hands them over again
                    retry.append_nowait(event)
                await retry.flush()
                stored = [e.event for e in await collect(retry.read())]
                assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in events)
                assert await retry.last_sequence() == len(events)
            finally:
                await retry.close()
        finally:
            await journal.close()
            await client.close()


# --- what a batch's answer says ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "accepted", "enabled", "max_size"),
    [
        (b'{"stream":"S","seq":12,"batch":"b1","count":3}', True, True, 1000),
        (b'{"stream":"S","seq":12,"batch":"b1","count":2}', False, False, 1000),
        (b'{"stream":"S","seq":12}', False, False, 1000),  # the headers were ignored
        (
            b'{"error":{"code":400,"err_code":10174,"description":"not enabled"}}',
            False,
            False,
            1000,
        ),
        (b'{"error":{"code":400,"err_code":10199,"description":"too large"}}', False, True, 500),
        (b'{"error":{"code":400,"err_code":10201,"description":"duplicate"}}', False, True, 1000),
        (b"not json", False, True, 1000),
    ],
)
def test_what_a_batch_answer_means(
    answer: bytes, accepted: bool, enabled: bool, max_size: int
) -> None:
    sender = BatchSender(Client(), enabled=True)
    assert sender._accepted(answer, None, 3) is accepted
    assert (sender.enabled, sender.max_size) == (enabled, max_size)


def test_no_responders_is_not_an_accepted_batch() -> None:
    sender = BatchSender(Client(), enabled=True)
    assert not sender._accepted(b"", b"503", 3)
    assert sender.enabled


@pytest.mark.asyncio
async def test_a_frame_over_the_max_payload_is_not_batched() -> None:
    sender = BatchSender(Client(), enabled=True)
    sender._sub = object()  # type: ignore[assignment]  # (started; nothing is sent)
    big = Prepared(b"HPUB s ", "s", b"x" * (Client().max_payload - 100), "id")
    assert await sender.store([big], timeout=1) is None
    assert sender.enabled  # the next chunk may fit


@pytest.mark.asyncio
async def test_a_flush_does_not_wait_out_the_linger(nats_client: Client, unique_name: str) -> None:
    journal = journal_for(nats_client, unique_name, linger=1.0)  # the longest allowed
    try:
        await journal.start()
        events = [decision(unique_name, i) for i in range(5)]
        for event in events:
            journal.append_nowait(event)
        await asyncio.sleep(0)  # the drainer starts lingering
        assert journal._lingering is not None
        await asyncio.wait_for(journal.flush(), 0.9)  # well before the linger ends
        assert [e.event for e in await collect(journal.read())] == events
    finally:
        await journal.close()
        await nats_client.jetstream().delete_stream(unique_name)


@pytest.mark.asyncio
async def test_append_nowait_loses_nothing_when_the_stream_leader_is_killed(
    nats_cluster: NatsCluster,
) -> None:
    """Batches on a replicated stream; its leader SIGKILLed mid-stream (failover: 7-10 s).

    The journal's timeout (30 s) outlasts the failover, so ``flush`` returns without an error,
    and then every event handed over is stored, once.
    """
    from swarm_actors._nats._conn import connect
    from swarm_actors.cluster import NatsOptions

    client = await connect(NatsOptions(servers=nats_cluster.urls, reconnect_wait=0.1))
    journal = JetStreamJournal(client, replicas=3, timeout=30.0, ack_timeout=1.0)
    answers = record_batches(journal)
    handed: list[str] = []
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            try:
                for _ in range(20):
                    event = decision("w", i)
                    journal.append_nowait(event)
                    handed.append(event.event_id)
                    i += 1
            except JournalFullError:  # the leader is gone: the buffer waits for the next one
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.001)

    try:
        await journal.start()
        info = await client.jetstream().stream_info(journal.stream)
        assert info.cluster is not None
        assert info.cluster.leader is not None
        task = asyncio.ensure_future(writer())
        try:
            await until(lambda: len(handed) >= 1000, 20, "appending is under way")
            await nats_cluster.kill(nats_cluster.index_of(info.cluster.leader))
            killed_at = time.monotonic()
            before = len(handed)
            await until(
                lambda: len(handed) >= before + 1000 and time.monotonic() - killed_at > 1, 40
            )
        finally:
            stop.set()
            await task
        await asyncio.wait_for(journal.flush(), 60)
        entries = await collect(journal.read())
        stored = [e.event.event_id for e in entries]
        assert sorted(stored) == sorted(handed)  # all of them, none twice
        if journal._batches.enabled:
            assert any(a is not None for a in answers)  # batches were in use
            assert None in answers  # and the kill cut one off: published again, one by one
    finally:
        await journal.close()
        await client.close()
