"""The SQL archive: events archived per second end to end against chDB's raw insert rate of
the same rows, side by side in one run, and each shipped query's latency at 1,000,000 rows.

1. End to end: ``--events`` events (a mix of the five payload kinds, state changes carrying a
   unified diff) are stored in a JetStream stream on a private nats-server; then the
   ``Archiver`` (durable pull consumer, 1,000-row batches, decode, rows, Arrow, insert, ack)
   archives them all into chDB. Rate = events / time from start to the last ack.
2. Raw: the same events' rows inserted straight into chDB, batches of 1,000 as the archiver
   makes them (rows -> Arrow -> insert), and in one block. The ratio end to end / raw batched
   is the archiver's overhead (NATS pulls and acks, decoding). End to end and raw batched run
   in alternation, ``--rounds`` pairs (the machine is shared: its load drifts), best kept.
3. Queries: ``--rows`` rows (100 runs, 60 agents over 30 days, a quarter of the events caused by
   an earlier one) in a table of their own; each shipped query (defaults, the window 3650 days)
   timed, best of ``--repeats``; correctness (the row count of ``events``) is checked first.

Run: python bench/bench_archive.py [--events 50000] [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import fmt_rate, machine, progress, rss_bytes, table
from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors.archive import QUERIES, Archiver, ArchiveStore, run_query
from swarm_actors.archive._rows import event_row, events_table
from swarm_actors.events import (
    AgentDecision,
    ChangeForm,
    ModelCall,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    ToolRun,
    new_event,
)
from swarm_actors.testing import NatsServer

DIFF = (
    "--- a/ledger/money.py\n+++ b/ledger/money.py\n@@ -1,4 +1,4 @@\n"
    + "-import os\n+import sys\n" * 8
).encode()


def payload(n: int) -> Any:
    kind = n % 10
    if kind < 3:
        return AgentDecision(
            choice=("reject item" if n % 17 == 0 else "approve item") + f" {n}",
            rationale="the tests pass and the findings went down",
            confidence_score=(n % 100) / 100,
            rejected_alternatives=("leave it",),
        )
    if kind < 5:
        return ToolRun(tool="pytest", exit_status=n % 2, duration_ns=n * 1000, passed=20)
    if kind < 7:
        return StateChange(
            target_type="FILE_SYSTEM",
            target_resource=f"pkg/module_{n % 40}.py",
            data=DIFF,
            form=ChangeForm.SNAPSHOT,
            content_type="application/msgpack",
        )
    if kind < 9:
        return ModelCall(
            provider="openai",
            model="m",
            tokens_in=n % 900,
            tokens_out=n % 300,
            cost=(n % 7) / 1000,
            latency_ns=n * 10,
            error_type="Timeout" if n % 97 == 0 else "",
        )
    return SystemSignal(kind=SignalKind.CRASHED if n % 31 == 0 else SignalKind.HEALTH)


def make_events(count: int, run_id: str, start_ns: int, span_ns: int) -> list[SwarmEvent]:
    events: list[SwarmEvent] = []
    for n in range(count):
        cause = events[n - 5].event_id if n >= 5 and n % 3 == 0 else ""
        events.append(
            new_event(
                payload(n),
                agent_role=("architect", "coder", "reviewer")[n % 3],
                agent_id=f"/agent-{n % 60}",
                sequence=n + 1,
                run_id=run_id,
                causation_id=cause,
                timestamp_ns=start_ns + span_ns * n // max(count, 1),
            )
        )
    return events


async def end_to_end(
    stores: list[ArchiveStore], events: list[SwarmEvent], tmp: Path, raw: Any
) -> tuple[float, float]:
    """Best end-to-end and raw-batched rates, measured in alternation (one pair per store)."""
    e2e, batched = 0.0, 0.0
    async with NatsServer(store_dir=tmp / "nats", max_file_store=2 << 30) as server:
        journal = await JetStreamJournal.connect(server.client_options())
        try:
            for i in range(0, len(events), 5000):
                await journal.append_many(events[i : i + 5000])
            progress(f"{len(events)} events in the stream")
            for n, (e2e_store, raw_store) in enumerate(stores_pairs(stores)):
                archiver = Archiver(journal, e2e_store, batch_interval=1.0, name=f"bench-{n}")
                started = time.perf_counter()
                stats = await archiver.run()
                rate = len(events) / (time.perf_counter() - started)
                assert stats.archived == len(events), stats
                e2e = max(e2e, rate)
                batched = max(batched, raw(raw_store))
                progress(f"round {n + 1}: end to end {fmt_rate(rate)}, raw {fmt_rate(batched)}")
        finally:
            await journal.close()
    return e2e, batched


def stores_pairs(stores: list[ArchiveStore]) -> list[tuple[ArchiveStore, ArchiveStore]]:
    return list(zip(stores[::2], stores[1::2], strict=True))


def raw_batched(store: ArchiveStore, rows: list[tuple[Any, ...]]) -> float:
    started = time.perf_counter()
    for i in range(0, len(rows), 1000):
        store.insert_arrow("events", events_table(rows[i : i + 1000]))
    return len(rows) / (time.perf_counter() - started)


def raw_block(store: ArchiveStore, rows: list[tuple[Any, ...]]) -> float:
    started = time.perf_counter()
    store.insert_arrow("events", events_table(rows))
    return len(rows) / (time.perf_counter() - started)


def million(store: ArchiveStore, count: int) -> None:
    """``count`` rows of 100 runs: a pool of events, each row re-keyed (id, run, time)."""
    now = time.time_ns()
    pool = make_events(3000, "pool", now - 30 * 86400 * 10**9, 30 * 86400 * 10**9)
    base = [event_row(e, i + 1, e.timestamp_ns) for i, e in enumerate(pool)]
    rng = random.Random(7)
    chunk: list[tuple[Any, ...]] = []
    for n in range(count):
        row = base[n % len(base)]
        run = f"run-{n // (count // 100 or 1)}"
        ts = now - rng.randrange(30 * 86400 * 10**9)
        cause = f"{n - 5:012d}" if n >= 5 and n % 4 == 0 else ""
        chunk.append((f"{n:012d}", run, ts, *row[3:7], cause, *row[8:12], ts, *row[13:]))
        if len(chunk) == 200_000:
            store.insert_arrow("events", events_table(chunk))
            chunk = []
            progress(f"{n + 1} rows")
    store.insert_arrow("events", events_table(chunk))


def timed(store: ArchiveStore, name: str, repeats: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    params: dict[str, Any] = {"window": "3650d"} if name == "error-rate" else {}
    for _ in range(repeats):
        started = time.perf_counter()
        rows = len(run_query(store, name, **params).rows)
        best = min(best, time.perf_counter() - started)
    return best * 1000, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=2, help="end to end / raw pairs, alternated (best kept)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp_name:
        tmp = Path(tmp_name)
        pairs = [
            ArchiveStore.open(path=tmp / "chdb", database=f"{kind}{n}")
            for n in range(args.rounds)
            for kind in ("e2e", "raw")
        ]
        one_store = ArchiveStore.open(path=tmp / "chdb", database="one")
        progress(f"chDB open, RSS {rss_bytes() >> 20} MB")
        now = time.time_ns()
        events = make_events(args.events, "bench", now - 3600 * 10**9, 3600 * 10**9)
        rows = [event_row(e, i + 1, e.timestamp_ns) for i, e in enumerate(events)]
        e2e, batched = asyncio.run(
            end_to_end(pairs, events, tmp, lambda store: raw_batched(store, rows))
        )
        block = raw_block(one_store, rows)
        progress(f"raw {fmt_rate(batched)} batched, {fmt_rate(block)} one block")
        for s in (*pairs, one_store):
            assert s.query("SELECT count() FROM events").rows == [(args.events,)]

        q_store = ArchiveStore.open(path=tmp / "chdb", database="q")
        started = time.perf_counter()
        million(q_store, args.rows)
        load = time.perf_counter() - started
        assert q_store.query("SELECT count() FROM events").rows == [(args.rows,)]
        latencies = [(name, *timed(q_store, name, args.repeats)) for name in QUERIES]
        rss = rss_bytes() >> 20
        disk = sum(p.stat().st_size for p in (tmp / "chdb").rglob("*") if p.is_file()) >> 20

    print(
        f"## SQL archive (chDB)\n\n{machine()}; {args.events:,} events end to end; best of "
        f"{args.rounds} rounds, end to end and raw batched alternated.\n"
    )
    paths = [
        ("end to end: JetStream -> Archiver -> chDB", e2e),
        ("raw: rows -> Arrow -> chDB, 1,000 a batch", batched),
        ("raw: rows -> Arrow -> chDB, one block", block),
    ]
    rows_out = [[name, fmt_rate(rate), f"{rate / batched:.2f}x"] for name, rate in paths]
    print(table(["path", "events/s", "vs raw batched"], rows_out))
    print(
        f"\nShipped queries at {args.rows:,} rows (loaded in {load:.1f} s, "
        f"best of {args.repeats}; RSS {rss} MB, chDB data {disk} MB):\n"
    )
    print(table(["query", "latency", "rows"], [[n, f"{ms:.0f} ms", r] for n, ms, r in latencies]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
