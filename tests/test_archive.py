"""The SQL archive (issue 17): a real demo run archived into chDB, the shipped queries checked
against the run's own journal, exactly once across a crash, dead letters for bad input.

chDB hosts one engine per process, on one path: every in-process test here shares the module's
store (tests that need a table of their own use another database in it). The kill test runs
the archiver as the command, in subprocesses, on a data directory of its own.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import swarm_actors
from helpers import until
from swarm_actors._nats._jetstream import JetStreamJournal
from swarm_actors._runjournal import open_run_journal
from swarm_actors._runs import RunPaths, new_run, run_dir
from swarm_actors.archive import (
    COLUMNS,
    QUERIES,
    Archiver,
    ArchiveStore,
    archive_events,
    parse_window,
    run_query,
)
from swarm_actors.errors import ArchiveError, InvalidArgumentError
from swarm_actors.events import (
    AgentDecision,
    JournalEntry,
    ModelCall,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    encode_event,
    new_event,
)
from swarm_actors.testing import NatsServer

pytestmark = pytest.mark.timeout(400)  # a real demo run, then subprocesses that load chDB

PACKAGE = Path(swarm_actors.__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(PACKAGE)}
CLI = [sys.executable, "-m", "swarm_actors._cli"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunPaths]:
    """A real demo run (the deterministic brain), made once for the module."""
    data = tmp_path_factory.mktemp("archive-data")
    done = subprocess.run(
        [*CLI, "demo", "-q", "--json", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return data, run_dir(None, data)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveStore]:
    """The module's chDB archive (one engine per process: every test here shares it)."""
    with ArchiveStore.open(path=tmp_path_factory.mktemp("archive") / "chdb") as opened:
        yield opened


@pytest.fixture(scope="module")
def entries(demo: tuple[Path, RunPaths], store: ArchiveStore) -> list[JournalEntry]:
    """The demo run archived; its journal's entries (what the archive must hold)."""

    async def go() -> list[JournalEntry]:
        stats = await archive_events(store, run=demo[1], batch_interval=0.2)
        async with open_run_journal(demo[1]) as rj:
            loaded = await rj.load()
        assert stats.archived == len(loaded)
        assert stats.dead_letters == 0
        return loaded

    return asyncio.run(go())


def _rows(store: ArchiveStore, sql: str) -> list[tuple[Any, ...]]:
    return store.query(sql).rows


def test_the_written_columns_are_the_tables(store: ArchiveStore) -> None:
    described = [r[0] for r in _rows(store, "DESCRIBE TABLE events")]
    assert [c for c in described if c != "archived_at"] == [name for name, _ in COLUMNS]
    assert store.schema_version == swarm_actors.events.SCHEMA_VERSION
    engine = _rows(store, "SELECT engine, sorting_key FROM system.tables WHERE name = 'events'")
    assert engine[0][0] == "ReplacingMergeTree"
    assert engine[0][1].endswith("event_id")


def test_clickhouse_keeps_no_growing_system_logs(
    store: ArchiveStore, entries: list[JournalEntry]
) -> None:
    # Langfuse's lesson: ClickHouse's own logs grow without bound unless told otherwise.
    settings = dict(_rows(store, "SELECT name, value FROM system.settings WHERE name LIKE 'log_%'"))
    for name in ("log_queries", "log_query_threads", "log_query_views", "log_processors_profiles"):
        assert settings[name] == "0", name
    logs = [r[0] for r in _rows(store, "SELECT name FROM system.tables WHERE name LIKE '%_log'")]
    for name in logs:  # chDB keeps at most a user query log, and nothing is written there
        assert _rows(store, f"SELECT count() FROM system.{name}") == [(0,)], name


def test_a_demo_run_is_archived_once(
    demo: tuple[Path, RunPaths], store: ArchiveStore, entries: list[JournalEntry]
) -> None:
    run_id = demo[1].run_id
    assert len(entries) > 50
    count = f"SELECT count(), uniqExact(event_id) FROM events WHERE run_id = '{run_id}'"
    assert _rows(store, count) == [(len(entries), len(entries))]
    again = asyncio.run(archive_events(store, run=demo[1], batch_interval=0.2))
    assert again.archived == 0  # the durable consumer's position is kept in the run's store
    assert _rows(store, count) == [(len(entries), len(entries))]
    kinds = collections.Counter(type(e.event.payload).__name__ for e in entries)
    got = dict(_rows(store, "SELECT kind, count() FROM events GROUP BY kind"))
    assert got["decision"] == kinds["AgentDecision"]
    assert got["state_change"] == kinds["StateChange"]
    assert got["tool_run"] == kinds["ToolRun"]


def test_error_rate_per_agent(store: ArchiveStore, entries: list[JournalEntry]) -> None:
    result = run_query(store, "error-rate", window="3650d")
    per_agent = collections.Counter(e.event.agent_id for e in entries)
    got = {row[0]: row for row in result.rows}
    assert {a: row[2] for a, row in got.items()} == dict(per_agent)
    for _, _, events, errors, rate in got.values():
        assert rate == round(errors / events, 4)
    coders = run_query(store, "error-rate", window="3650d", agent="coder").rows
    assert {r[0] for r in coders} == {a for a in per_agent if a.startswith("/coder")}
    # A window before the run holds nothing.
    assert run_query(store, "error-rate", window="1s", agent="nobody").rows == []


def test_decisions_under_a_confidence_threshold(
    store: ArchiveStore, entries: list[JournalEntry]
) -> None:
    decisions = [e.event for e in entries if isinstance(e.event.payload, AgentDecision)]
    low = sorted(
        d.payload.confidence_score  # type: ignore[union-attr]
        for d in decisions
        if d.payload.confidence_score < 0.7  # type: ignore[union-attr]
    )
    assert low  # the demo's unsafe fixes and give-ups are uncertain
    rows = run_query(store, "low-confidence", threshold=0.7).rows
    assert [r[3] for r in rows] == low


def test_most_changed_resources(store: ArchiveStore, entries: list[JournalEntry]) -> None:
    changes = collections.Counter(
        e.event.payload.target_resource for e in entries if isinstance(e.event.payload, StateChange)
    )
    rows = run_query(store, "most-changed", limit=100).rows
    assert {r[0]: r[2] for r in rows} == dict(changes)
    assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)


def test_p95_handling_latency_per_role(store: ArchiveStore, entries: list[JournalEntry]) -> None:
    by_id = {e.event.event_id: e.event for e in entries}
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    for e in entries:
        cause = by_id.get(e.event.causation_id)
        if cause is not None:
            latencies[e.event.agent_role].append((e.event.timestamp_ns - cause.timestamp_ns) / 1e6)
    rows = {r[0]: r for r in run_query(store, "latency").rows}
    assert set(rows) == set(latencies)
    for role, values in latencies.items():
        _, handled, p50, p95, top = rows[role]
        assert handled == len(values)
        assert top == pytest.approx(max(values), abs=0.1)
        assert min(values) - 0.1 <= p50 <= p95 <= top


def test_rejected_changes_and_their_reasons(
    store: ArchiveStore, entries: list[JournalEntry]
) -> None:
    by_id = {e.event.event_id: e.event for e in entries}
    expected = []
    for e in entries:
        p = e.event.payload
        if isinstance(p, AgentDecision) and p.choice.lower().startswith("reject"):
            cause = by_id.get(e.event.causation_id)
            resource = cause.payload.target_resource if cause else ""  # type: ignore[union-attr]
            expected.append((p.choice, p.rationale, resource))
    assert expected  # the sample's traps are rejected
    rows = run_query(store, "rejections").rows
    assert [(r[3], r[4], r[5]) for r in rows] == expected
    assert all(r[5] for r in rows)  # each names the file its change touched


# --- a stream of our own: model calls, bad input, a crash between insert and ack ---------


def _event(n: int, run_id: str, payload: Any = None) -> SwarmEvent:
    return new_event(
        payload or AgentDecision(choice=f"choice {n}", confidence_score=0.5),
        agent_role="coder",
        agent_id=f"/coder-{n % 3}",
        sequence=n + 1,
        run_id=run_id,
    )


def test_tokens_and_cost_per_agent_and_run_and_dead_letters(
    tmp_path: Path, store: ArchiveStore
) -> None:
    # The deterministic demo calls no model: model calls are published here, beside bytes
    # that are no event and an event of a newer schema version, which must not stop it.
    calls = [
        _event(n, "run-m", ModelCall(model="m", tokens_in=10 * n, tokens_out=n, cost=0.5 * n))
        for n in range(1, 7)
    ]
    future = msgspec.structs.replace(_event(99, "run-m"), schema_version=99)
    sub = ArchiveStore.open(path=store.location, database="models")  # the same engine

    async def go() -> Any:
        async with NatsServer(store_dir=tmp_path, max_file_store=64 << 20) as server:
            journal = await JetStreamJournal.connect(server.client_options())
            try:
                await journal.append_many(calls[:3])
                js = journal.client.jetstream()
                await js.publish("swarm.events.coder.decision", b"\x93garbage")
                await js.publish("swarm.events.coder.decision", encode_event(future))
                await journal.append_many(calls[3:])
            finally:
                await journal.close()
            return await archive_events(sub, nats=server.url, batch_interval=0.2)

    stats = asyncio.run(go())
    assert (stats.archived, stats.dead_letters) == (6, 2)
    dead = sub.query("SELECT stream_sequence, reason, schema_version FROM dead_letters").rows
    assert sorted(r[0] for r in dead) == [4, 5]
    reasons = {r[0]: (r[1], r[2]) for r in dead}
    assert reasons[4][0].startswith("EventDecodeError")
    assert reasons[4][1] is None
    assert reasons[5][0].startswith("SchemaVersionError")
    assert reasons[5][1] == 99
    rows = run_query(sub, "tokens-cost").rows
    per_agent = {r[1]: r for r in rows if r[0] == "run-m"}
    for agent in ("/coder-0", "/coder-1", "/coder-2"):
        mine = [p for c in calls if isinstance(p := c.payload, ModelCall) and c.agent_id == agent]
        _, _, n, tin, tout, cost, _, _ = per_agent[agent]
        assert (n, tin, tout) == (
            len(mine),
            sum(m.tokens_in for m in mine),
            sum(m.tokens_out for m in mine),
        )
        assert cost == pytest.approx(sum(m.cost for m in mine))
    assert per_agent[""][2:6] == (6, 210, 21, pytest.approx(10.5))  # the run's total


def test_a_batch_inserted_but_never_acknowledged_is_archived_once(
    tmp_path: Path, store: ArchiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = ArchiveStore.open(path=store.location, database="crash")  # the same engine
    events = [_event(n, "run-c") for n in range(40)]
    events.append(_event(40, "run-c", SystemSignal(kind=SignalKind.CRASHED, error_type="E")))

    async def go() -> tuple[Any, Any]:
        from swarm_actors._nats._durable import DurableConsumer

        async with NatsServer(store_dir=tmp_path, max_file_store=64 << 20) as server:
            journal = await JetStreamJournal.connect(server.client_options())
            try:
                await journal.append_many(events)
                real = DurableConsumer.ack_many

                async def die(self: Any, deliveries: Any) -> None:
                    raise RuntimeError("killed between the insert and the acknowledgement")

                monkeypatch.setattr(DurableConsumer, "ack_many", die)
                first = Archiver(journal, sub, batch_interval=0.2, ack_wait=0.5, name="a")
                with pytest.raises(RuntimeError):
                    await first.run()
                monkeypatch.setattr(DurableConsumer, "ack_many", real)
                # The first archiver's subscription is gone; its batch comes again after
                # ack_wait, marked as redelivered, and is found already archived.
                second = Archiver(journal, sub, batch_interval=0.2, ack_wait=0.5, name="a")
                return first.stats, await second.run()
            finally:
                await journal.close()

    first, second = asyncio.run(go())
    assert first.batches == 0
    assert (second.archived, second.duplicates) == (0, len(events))
    assert sub.query("SELECT count(), uniqExact(event_id) FROM events").rows == [(41, 41)]
    rates = run_query(sub, "error-rate", window="1d", run="run-c").rows
    assert sum(r[3] for r in rates) == 1  # the crash signal is the one error


def test_follow_keeps_up_with_new_events_until_cancelled(
    tmp_path: Path, store: ArchiveStore
) -> None:
    live = ArchiveStore.open(path=store.location, database="follow")  # the same engine
    batches: list[int] = []

    async def go() -> None:
        async with NatsServer(store_dir=tmp_path, max_file_store=64 << 20) as server:
            journal = await JetStreamJournal.connect(server.client_options())
            try:
                await journal.append_many([_event(n, "run-f") for n in range(5)])
                task = asyncio.create_task(
                    archive_events(
                        live,
                        nats=server.url,
                        follow=True,
                        batch_interval=0.1,
                        on_batch=lambda stats: batches.append(stats.archived),
                    )
                )
                await until(lambda: batches[-1:] == [5], what="the first events archived")
                await journal.append_many([_event(n, "run-f") for n in range(5, 12)])
                await until(lambda: batches[-1:] == [12], what="the new events archived")
                assert not task.done()  # following: it does not stop when it has caught up
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                await journal.close()

    asyncio.run(go())
    assert live.query("SELECT count(), uniqExact(event_id) FROM events").rows == [(12, 12)]


def test_bad_arguments_are_refused_with_the_fix(store: ArchiveStore) -> None:
    with pytest.raises(InvalidArgumentError, match="known:"):
        run_query(store, "nope")
    with pytest.raises(InvalidArgumentError, match="takes"):
        run_query(store, "latency", window="1d")
    with pytest.raises(InvalidArgumentError, match=r"e\.g\. 30d"):
        parse_window("thirty days")
    assert parse_window("30d") == 30 * 86400
    assert parse_window("12h") == 43200
    with pytest.raises(ArchiveError, match="UNKNOWN_IDENTIFIER"):
        store.query("SELECT nope FROM events")
    with pytest.raises(ArchiveError, match="one engine per process"):
        ArchiveStore.open(path=store.location + "-other")
    assert set(QUERIES) == {
        "error-rate", "low-confidence", "most-changed", "latency", "tokens-cost", "rejections",
    }  # fmt: skip


def test_a_newer_archive_is_refused(store: ArchiveStore) -> None:
    newer = ArchiveStore.open(path=store.location, database="newer")  # the same engine
    newer.command("INSERT INTO newer.schema_versions (version, ddl) VALUES (1000, '')")
    with pytest.raises(ArchiveError, match="upgrade"):
        ArchiveStore.open(path=store.location, database="newer")


# --- the command, killed mid-stream -------------------------------------------------------


def _synthetic_run(data: Path, count: int) -> RunPaths:
    """A finished run whose journal (its own JetStream store) holds ``count`` events."""
    run = new_run(data, "synthetic")

    async def go() -> None:
        async with NatsServer(store_dir=run.journal, max_file_store=256 << 20) as server:
            journal = await JetStreamJournal.connect(server.client_options())
            try:
                await journal.append_many([_event(n, run.run_id) for n in range(count)])
            finally:
                await journal.close()

    asyncio.run(go())
    return run


def test_sigkill_mid_batch_then_restart_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path,
) -> None:
    count = 10_000  # ten batches: the kill lands while the second or a later one is under way
    _synthetic_run(tmp_path, count)
    archive = [*CLI, "archive", "--data-dir", str(tmp_path), "--ack-wait", "2", "--json"]
    proc = subprocess.Popen(archive, stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.stderr is not None
    for line in proc.stderr:  # the first batch is in; the next ones are under way
        if line.startswith("archived"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    done = subprocess.run(archive, capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = subprocess.run(
        [*CLI, "sql", "--data-dir", str(tmp_path), "--json",
         "SELECT count() AS n, uniqExact(event_id) AS ids FROM events"],
        capture_output=True, text=True, timeout=120, env=ENV, check=True,
    )  # fmt: skip
    assert json.loads(counts.stdout) == {"n": count, "ids": count}
    stats = json.loads(done.stdout)
    # The killed archiver's acknowledged batches stay done: the restart archived the rest. (It
    # may count more duplicates than the kill left: a batch waiting past --ack-wait on this
    # busy machine comes again, and is found stored.)
    assert 0 < stats["archived"] < count


# --- the sql command, in this process: its data directory's archive is the module's store -----


@pytest.fixture
def cli_data(tmp_path: Path, store: ArchiveStore) -> Path:
    """A data directory whose ``archive`` is the module's store (one chDB engine per process)."""
    (tmp_path / "archive").symlink_to(store.location)
    return tmp_path


def test_sql_prints_csv_json_and_a_table(
    cli_data: Path,
    entries: list[JournalEntry],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from swarm_actors._cli import main

    base = ["sql", "--data-dir", str(cli_data)]
    assert main([*base, "--query", "most-changed", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "resource,type,changes,agents,last_changed"
    changed = {p.target_resource for e in entries if isinstance(p := e.event.payload, StateChange)}
    assert {line.split(",")[0] for line in lines[1:]} == changed
    assert main([*base, "--json", "SELECT kind, count() AS n FROM events GROUP BY kind"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(r["n"] for r in rows) >= len(entries)
    assert main([*base, "--query", "low-confidence", "--threshold", "0.55"]) == 0
    out = capsys.readouterr().out.splitlines()  # aligned text when not on a terminal
    assert out[0].split() == [
        "timestamp",
        "run_id",
        "agent_id",
        "confidence",
        "choice",
        "rationale",
    ]
    assert len(out) > 1


def test_commands_refuse_bad_input_with_exit_2(
    cli_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from swarm_actors._cli import main

    assert main(["sql", "--data-dir", str(cli_data)]) == 2
    assert "--query NAME" in capsys.readouterr().err
    assert main(["sql", "--data-dir", str(cli_data), "SELECT nope FROM events"]) == 2
    assert "UNKNOWN_IDENTIFIER" in capsys.readouterr().err
    assert main(["sql", "--data-dir", str(cli_data), "--query", "error-rate", "--window", "x"]) == 2
    assert "e.g. 30d" in capsys.readouterr().err
    assert main(["archive", "--data-dir", str(cli_data), "--run", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    # The server path shares everything but the client: one that does not answer is named.
    assert main(["sql", "--clickhouse", "http://127.0.0.1:1", "SELECT 1"]) == 2
    assert "no ClickHouse server answered at http://127.0.0.1:1" in capsys.readouterr().err
    assert main(["sql", "--list"]) == 0
    assert "error-rate:" in capsys.readouterr().out
