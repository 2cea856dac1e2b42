"""Hostile input on a node's subjects: a bad message costs itself, never the node (issue 11).

Anyone connected to the NATS server can publish on the subjects a node listens on. Whatever
they send (bytes that are no frame, nesting deeper than any recursive decoder goes, reply
subjects that are not UTF-8 or that the server would refuse, huge headers, messages forged
into the inboxes of the node's KV watches), the node keeps reading, keeps its connection and
its leases, answers every ask it can answer, and dead-letters (counted, published on
``swarm.deadletter.<node>``) every tell and unanswerable ask it cannot deliver.

:class:`RawClient` speaks the NATS protocol by hand, because nats-py refuses to send some of
what a hostile client can (a reply subject that is not UTF-8).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import tracemalloc
from collections import Counter as Tally
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlparse

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from helpers import Add, Get, unique, until
from log_capture import capture_logs
from nats_sync import observe
from swarm_actors import ActorSystem
from swarm_actors._events._schema import encode_event
from swarm_actors._nats._compat import message_failures
from swarm_actors._nats._conn import connect
from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors._nats._transport import Transport, live_subject
from swarm_actors._nats._wire import (
    AskOut,
    Failure,
    Reply,
    TellOut,
    decode_frame,
    frame,
    type_name,
)
from swarm_actors.cluster import Cluster, NatsOptions, RemoteRef
from swarm_actors.errors import EventDecodeError
from swarm_actors.events import AgentDecision, JournalEntry, new_event
from swarm_actors.testing import NatsServer
from transport_peer import Counter
from transport_peer import Tally as Placed

pytestmark = pytest.mark.asyncio

DEEP = b"\x91" * 1000 + b"\xc0"
"""A 1 KB msgpack value nested 1,000 deep: the reliability probe's input."""

ENCODER = msgspec.msgpack.Encoder()


class RawClient:
    """A NATS client that writes protocol lines itself: it sends what nats-py would refuse."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def pub(self, subject: str, reply: bytes, payload: bytes) -> None:
        """``PUB``; ``reply`` raw bytes (``b""``: none)."""
        line = b"PUB " + subject.encode() + (b" " + reply if reply else b"")
        self.writer.write(line + b" %d\r\n" % len(payload) + payload + b"\r\n")

    def hpub(self, subject: str, reply: bytes, headers: bytes, payload: bytes) -> None:
        """``HPUB`` with a raw header block (``NATS/1.0\\r\\n...\\r\\n\\r\\n``)."""
        line = b"HPUB " + subject.encode() + (b" " + reply if reply else b"")
        sizes = b" %d %d\r\n" % (len(headers), len(headers) + len(payload))
        self.writer.write(line + sizes + headers + payload + b"\r\n")

    async def ping(self) -> None:
        """Return once the server has processed everything sent so far (its ``PONG``)."""
        self.writer.write(b"PING\r\n")
        await self.writer.drain()
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, "the server closed the raw connection"
            assert not line.startswith(b"-ERR"), line
            if line.startswith(b"PING"):
                self.writer.write(b"PONG\r\n")
            elif line.startswith(b"PONG"):
                return


@asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[RawClient]:
    where = urlparse(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        info = await reader.readline()
        assert info.startswith(b"INFO"), info
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n')
        client = RawClient(reader, writer)
        await client.ping()
        yield client
    finally:
        writer.close()


def transport(system: ActorSystem) -> Transport:
    assert system._transport is not None
    return system._transport


def watch_inboxes(system: ActorSystem) -> list[str]:
    """The deliver subjects of the node's KV watches (names, shard leases).

    A client subscribed to ``>`` sees them go by; the test reads them from the node instead.
    nats-py, not the fast path, processes their messages: ``_process_msg`` decodes the reply
    subject and parses JetStream metadata before any callback of the node runs.
    """
    node = transport(system)
    assert node.cluster is not None
    subs = [node.registry._watch_sub, node.cluster.leases._watch_sub]
    return [sub.subject for sub in subs if sub is not None]


def request_inbox(system: ActorSystem) -> str:
    """The prefix of nats-py's request inbox on the node's connection (KV calls use it)."""
    prefix = transport(system).client._resp_sub_prefix
    assert prefix is not None
    return bytes(prefix).decode()


@asynccontextmanager
async def pair(url: str) -> AsyncIterator[tuple[ActorSystem, ActorSystem]]:
    """A peer node and the victim node, on ``url``."""
    async with (
        ActorSystem(nats=url, cluster=Cluster(node=unique("peer"))) as peer,
        ActorSystem(nats=url, cluster=Cluster(node=unique("victim"))) as victim,
    ):
        yield peer, victim


async def remote(system: ActorSystem, name: str) -> RemoteRef[Any]:
    ref = await system.resolve(name, timeout=5.0)
    assert isinstance(ref, RemoteRef)
    return ref


# --- item 1: one message must not silence the node --------------------------------------------


async def test_reply_subjects_that_are_not_utf8_cost_one_message_not_the_connection(
    nats_server: NatsServer,
) -> None:
    async with pair(nats_server.url) as (peer, victim):
        name = unique()
        await victim.start(Counter, name=name)
        ref = await remote(peer, name)
        node = transport(victim)
        subject = node.subject
        good = frame([TellOut(name, type_name(Add), Add(1), "", "")], ENCODER)
        before = victim.dead_letters
        async with raw_client(nats_server.url) as raw:
            # The probe's single publish: it stopped nats-py's read loop for ~1 minute.
            raw.pub(live_subject(victim.node or ""), b"\xff", b"")
            raw.pub(subject, b"\xff", b"\x00garbage")  # a dead letter, and no refusal to send
            raw.pub(subject, b"\xfe\xff", good)  # delivered; its reply subject is not needed
            raw.pub(watch_inboxes(victim)[0], b"\xff", b"")  # nats-py's own processing raises
            await raw.ping()
        # Asked through the peer: answered only if the victim still reads its connection.
        assert await ref.ask(Get(), timeout=10) == 1
        await until(lambda: node.probes_refused == 1, 10, "the bad probe to be counted")
        assert message_failures(node.client) == 1  # the watch inbox's: logged, counted
        assert victim.dead_letters == before + 1
        assert await transport(peer).probe(victim.node or "") == node.incarnation
        assert node.client.is_connected


async def test_an_ask_whose_reply_subject_is_unusable_is_a_dead_letter(
    nats_server: NatsServer, nats_client: Client
) -> None:
    async with pair(nats_server.url) as (peer, victim):
        name = unique()
        await victim.start(Counter, name=name)
        letters = await observe(nats_client, f"swarm.deadletter.{victim.node}")
        inbox = nats_client.new_inbox()
        answers = await observe(nats_client, inbox)
        # A 5 KB reply subject made the node's PUB line exceed the server's control line: the
        # server, then nats-py, closed the node's connection for good.
        bad = ["x" * 5000, "", "a..b", "foo.>", "a b", "caf\u00e9"]
        asks = [AskOut(name, type_name(Get), Get(), "", "/asker", i, r) for i, r in enumerate(bad)]
        before = victim.dead_letters
        await nats_client.publish(f"swarm.node.{victim.node}", frame(asks, ENCODER))
        for _ in bad:
            letter = await asyncio.wait_for(letters.get(), 10)
            assert "unusable reply subject" in (letter.headers or {})["Swarm-Reason"]
        assert victim.dead_letters == before + len(bad)
        good = AskOut(name, type_name(Get), Get(), "", "", 99, inbox)
        await nats_client.publish(f"swarm.node.{victim.node}", frame([good], ENCODER))
        answer = decode_frame((await asyncio.wait_for(answers.get(), 10)).data)[0]
        assert isinstance(answer, Reply)
        assert answer.corr == 99
        assert transport(victim).client.is_connected
        assert await (await remote(peer, name)).ask(Get(), timeout=10) == 0


# --- item 4: the journal skips what it cannot read ------------------------------------------


async def test_the_journal_skips_deep_nesting_and_unknown_fields_or_raises_typed() -> None:
    role = unique("r").replace("-", "_")
    subject = f"swarm.events.{role}.decision"

    def decision(i: int) -> Any:
        return new_event(AgentDecision(choice=f"c{i}"), agent_role=role, agent_id="a", sequence=i)

    # Its own server: on the shared one, this stream would overlap the systems' default one.
    async with NatsServer() as server:
        client = await connect(NatsOptions(servers=server.url))
        journal = JetStreamJournal(client, stream=role, subjects=f"swarm.events.{role}.>")
        try:
            await journal.append(decision(1))
            js = client.jetstream()
            await js.publish(subject, DEEP)  # 2: the probe's 1 KB message
            # A field past the last one its version defines (run_id, set so it is not left out).
            with_run = new_event(
                AgentDecision(choice="c3"), agent_role=role, agent_id="a", sequence=3, run_id="r"
            )
            fields = msgspec.msgpack.decode(encode_event(with_run))
            await js.publish(subject, msgspec.msgpack.encode([*fields, "unknown"]))  # 3
            await js.publish(subject, b"\x9a" + b"\xa1x" * 9 + b"\x91" * 100_000 + b"\xc0")  # 4
            await journal.append(decision(5))
            with pytest.raises(EventDecodeError, match="sequence 2"):
                await collect(journal.read())
            with capture_logs() as logs:
                entries = await collect(journal.read(errors="skip"))
            assert [e.sequence for e in entries] == [1, 5]
            skipped = [e["sequence"] for e in logs if e["event"] == "journal.undecodable"]
            assert skipped == [2, 3, 4]
            consumer = journal.durable("reader")
            deliveries = await consumer.fetch(10, timeout=5)
            assert [d.entry.sequence for d in deliveries] == [1, 5]
        finally:
            await journal.close()
            await client.close()


async def collect(entries: AsyncIterator[JournalEntry]) -> list[JournalEntry]:
    return [entry async for entry in entries]


# --- item 9: a forward that fails is a dead letter --------------------------------------------


@contextmanager
def unraised_task_errors() -> Iterator[list[dict[str, Any]]]:
    """Exceptions the loop reports on its own ("Task exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield seen
    finally:
        gc.collect()  # a finished task's unretrieved exception is reported when it is freed
        loop.set_exception_handler(previous)


async def test_tells_forwarded_to_a_shard_without_owner_become_dead_letters(
    nats_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        NatsServer() as server,
        ActorSystem(nats=server.url, cluster=Cluster(node=unique("solo"))) as system,
    ):
        cluster = transport(system).cluster
        assert cluster is not None
        await until(lambda: len(cluster.leases.held) == 64, 20, "the node to take every shard")
        target = system.placed(Placed, unique("k"))
        shard = target.shard
        valid, owner = cluster.leases.valid, cluster.leases.owner
        # This node no longer holds the shard and hears of no other owner: a tell that arrives
        # for it waits for one, and gives up after handover_timeout.
        monkeypatch.setattr(cluster.leases, "valid", lambda s: s != shard and valid(s))
        monkeypatch.setattr(cluster.leases, "owner", lambda s: None if s == shard else owner(s))
        cluster.handover_timeout = 0.2
        client = await connect(NatsOptions(servers=server.url))
        try:
            letters = await observe(client, f"swarm.deadletter.{system.node}")
            tells = [TellOut(target._target, type_name(Add), Add(i), "", "/far") for i in range(5)]
            with unraised_task_errors() as unraised:
                await client.publish(f"swarm.node.{system.node}", frame(tells, ENCODER))
                for _ in tells:
                    letter = await asyncio.wait_for(letters.get(), 10)
                    headers = letter.headers or {}
                    assert "could not be forwarded" in headers["Swarm-Reason"]
                    assert "no owner" in headers["Swarm-Reason"]
                    assert headers["Swarm-Target"] == target._target
                    assert headers["Swarm-Sender"] == "/far"
                assert system.dead_letters == len(tells)
            assert unraised == []
        finally:
            await client.close()


# --- the spray: every framework subject, every kind of bad input -----------------------------


class _Count(logging.Handler):
    """Counts the library's log events by name; keeps nothing else (memory is measured)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: Tally[str] = Tally()

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict):
            self.events[str(record.msg.get("event"))] += 1


@contextmanager
def counted_logs() -> Iterator[Tally[str]]:
    """The library's log events, counted, and kept from pytest's capture (which stores them)."""
    logger = logging.getLogger("swarm_actors")
    handler = _Count()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler.events
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class Spray:
    """One round of hostile messages at a node, and what each should cost it."""

    def __init__(self, victim: ActorSystem, name: str, inbox: str) -> None:
        self.victim = victim
        self.name = name
        self.inbox = inbox
        self.dead_letters = 0  # expected: frames, tells and asks that cannot be delivered
        self.adds = 0  # good tells of Add(1) among the bad: the counter must see each
        self.bad_probes = 0
        self.failures = 0  # messages nats-py itself cannot process: lost, counted
        self.asks: dict[int, type] = {}  # corr -> the answer expected (Reply or Failure)
        self.corr = 0
        self.published = 0  # dead letters seen on swarm.deadletter.<node> so far

    def ask(self, body_type: str, body: Any, answer: type) -> AskOut:
        self.corr += 1
        self.asks[self.corr] = answer
        return AskOut(self.name, body_type, body, "", "", self.corr, self.inbox)

    async def round(self, raw: RawClient) -> None:
        node = transport(self.victim)
        subject = node.subject
        name = self.name
        add = TellOut(name, type_name(Add), Add(1), "", "")
        good = frame([add], ENCODER)
        deep = msgspec.Raw(DEEP)

        def bad_frame(payload: bytes, reply: bytes = b"", to: str = subject) -> None:
            raw.pub(to, reply, payload)
            self.dead_letters += 1

        # Frames that are no frames: each is one dead letter.
        bad_frame(b"")
        bad_frame(b"\x00garbage\xff")
        bad_frame(good[:-3])  # truncated
        bad_frame(DEEP)  # [[[...]]]: an array whose one envelope is nested 1,000 deep
        bad_frame(b"\xdd\x00\x00\x00\x01" + b"\x91" * 100_000 + b"\xc0")
        bad_frame(b"\xc1" * 500_000)  # half a megabyte of garbage
        bad_frame(b"\x00garbage", reply=b"\xff")  # and a reply subject that is not UTF-8
        bad_frame(b"\x00garbage", reply=b"x" * 300)  # or too long to answer on
        # One frame mixing good and bad messages: each costs only itself.
        mixed = [
            self.ask("", deep, Failure),  # a body nested deeper than the stack
            self.ask(type_name(Get), Get(), Reply),
            TellOut(name, "", deep, "", ""),  # dead letter
            add,
            TellOut("nobody-" + name, type_name(Add), Add(1), "", ""),  # dead letter
            AskOut(name, type_name(Get), Get(), "", "", 0, "x" * 5000),  # dead letter
            AskOut(name, type_name(Get), Get(), "", "", 0, "a..b"),  # dead letter
            self.ask("nowhere:Nothing", 1, Failure),
            add,
        ]
        raw.pub(subject, b"", frame(mixed, ENCODER))
        self.dead_letters += 4
        self.adds += 2
        # A thousand undeliverable tells in one frame: a thousand dead letters.
        lost = [TellOut(f"nobody-{i}", type_name(Add), Add(1), "", "") for i in range(1000)]
        raw.pub(subject, b"", frame(lost, ENCODER))
        self.dead_letters += len(lost)
        # Huge headers: 200 KB of them on a good frame (delivered) and on garbage.
        junk = b"NATS/1.0\r\nX-Junk: " + b"j" * 200_000 + b"\r\n\r\n"
        raw.hpub(subject, b"", junk, good)
        self.adds += 1
        raw.hpub(subject, b"", junk, b"\x00garbage")
        self.dead_letters += 1
        raw.hpub(subject, b"", b"not a header block\r\n\r\n", good)
        self.adds += 1
        # A forged "no responders" where the node's answers arrive (a random prefix, and in
        # secure mode only the named node may publish there): no ask waits on "someone".
        raw.hpub(f"{node.reply_prefix}.someone", b"", b"NATS/1.0 503\r\n\r\n", b"")
        # Liveness probes: unusable reply subjects are refused, counted.
        live = live_subject(self.victim.node or "")
        for reply in (b"\xff", b"x" * 300, b"a..b", b"foo.>"):
            raw.pub(live, reply, b"")
            self.bad_probes += 1
        raw.pub(live, b"", b"\x00garbage")  # no reply subject: nothing to answer
        raw.hpub(live, b"", junk, b"")
        # The registry's and the shard leases' buckets: garbage entries for keys no node uses.
        for bucket in ("swarm_names", "swarm_shards"):
            for key in ("zz-unused", "=ZZ", "s999999"):
                raw.pub(f"$KV.{bucket}.{key}", b"", b"\xc1garbage")
        # Messages forged into the KV watches' and nats-py's request inboxes.
        for inbox in (*watch_inboxes(self.victim), request_inbox(self.victim) + "forged"):
            raw.pub(inbox, b"", b"\xc1garbage")
            raw.pub(inbox, b"\xff", b"")  # nats-py cannot decode the reply subject
            self.failures += 1
        raw.pub(watch_inboxes(self.victim)[0], b"not.a.js.ack", b"x")  # metadata unparsable
        self.failures += 1
        await raw.ping()


async def test_a_node_sprayed_with_hostile_input_keeps_serving_in_bounded_memory() -> None:
    async with NatsServer() as server, pair(server.url) as (peer, victim):
        name = unique()
        await victim.start(Counter, name=name)
        ref = await remote(peer, name)
        node = transport(victim)
        cluster = node.cluster
        assert cluster is not None
        await until(lambda: len(cluster.leases.held) >= 1, 20, "the victim to hold a shard")
        client = await connect(NatsOptions(servers=server.url, name="attacker"))
        try:
            letters: asyncio.Queue[Msg] = await observe(client, f"swarm.deadletter.{victim.node}")
            inbox = client.new_inbox()
            answers = await observe(client, inbox)
            spray = Spray(victim, name, inbox)
            async with raw_client(server.url) as raw:
                with counted_logs() as logs:
                    await spray.round(raw)  # warm-up: caches, buffers, decoders
                    await settle(spray, victim, letters, answers)
                    gc.collect()
                    tracemalloc.start()
                    heap = tracemalloc.get_traced_memory()[0]
                    rss = resident()
                    rounds = 5
                    for _ in range(rounds):
                        await spray.round(raw)
                        await settle(spray, victim, letters, answers)
                    gc.collect()
                    heap_growth = tracemalloc.get_traced_memory()[0] - heap
                    tracemalloc.stop()
                    rss_growth = resident() - rss
            # The bounds: each round sends about 1.2 MB. A node that kept a fraction of what
            # it was sent would exceed them; what it keeps is its logs' and caches' noise.
            assert heap_growth < 2 * 2**20, f"the heap grew {heap_growth / 2**20:.1f} MB"
            assert rss_growth < 32 * 2**20, f"RSS grew {rss_growth / 2**20:.1f} MB"
            # Every dead letter was counted and published; nothing failed unseen.
            assert victim.dead_letters == spray.dead_letters
            assert node.probes_refused == spray.bad_probes
            assert message_failures(node.client) == spray.failures
            assert logs["nats.message_failed"] == spray.failures
            for unexpected in ("transport.receive_failed", "transport.deliver_failed"):
                assert logs[unexpected] == 0, unexpected
            # It still serves: named actors through its peer, placed ones, probes, its leases.
            assert await ref.ask(Get(), timeout=10) == spray.adds
            assert await transport(peer).probe(victim.node or "") == node.incarnation
            placed = peer.placed(Placed, unique("k"))
            assert await placed.ask(Add(2), timeout=10) == 2
            assert node.client.is_connected
            assert all(cluster.leases.valid(s) for s in cluster.leases.held)
        finally:
            await client.close()


async def settle(
    spray: Spray, victim: ActorSystem, letters: asyncio.Queue[Msg], answers: asyncio.Queue[Msg]
) -> None:
    """Wait for every dead letter and answer the round so far should have produced."""
    await until(
        lambda: victim.dead_letters >= spray.dead_letters,
        30,
        f"{spray.dead_letters} dead letters (counted: {victim.dead_letters})",
    )
    assert victim.dead_letters == spray.dead_letters
    while spray.published < spray.dead_letters:  # each was published, too
        await asyncio.wait_for(letters.get(), 30)
        spray.published += 1
    while spray.asks:
        for answer in decode_frame((await asyncio.wait_for(answers.get(), 30)).data):
            assert isinstance(answer, Reply | Failure), answer
            assert isinstance(answer, spray.asks.pop(answer.corr)), answer


def resident() -> int:
    """This process's resident memory in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
