"""The dashboard's server without a browser: rows, details, the event stream, the guard."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient

from dashboard_events import RUN_ID, synthetic_events
from swarm_actors._dashboard import CSP, TOKEN_COOKIE, Feed, create_app, is_loopback, safe_path
from swarm_actors._dashboard._app import _sse
from swarm_actors._dashboard._rows import row_of
from swarm_actors.events import JournalEntry, MemoryJournal

ROOT = Path(__file__).resolve().parent.parent


def _entries(items: int) -> list[JournalEntry]:
    journal = MemoryJournal()
    for event in synthetic_events(items, coders=2):
        journal.append_nowait(event)
    return journal.entries()


def _feed(items: int = 6) -> Feed:
    feed = Feed(run_id=RUN_ID)
    for entry in _entries(items):
        feed.add(entry)
    feed.set_status("done")
    return feed


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(_feed()), base_url="http://127.0.0.1:8765") as c:
        yield c


def _by_kind(feed: Feed, kind: str) -> list[JournalEntry]:
    return [e for e in feed.entries if row_of(e)["k"] == kind]


def test_rows_carry_only_explicit_links() -> None:
    feed = _feed(3)
    rows = [json.loads(r) for r in feed.rows]
    by_seq = {r["s"]: r for r in rows}
    verdicts = [r for r in rows if r["k"] == "decision" and r["r"] == "reviewer"]
    assert len(verdicts) == 3
    for verdict in verdicts:
        cause = by_seq[verdict["c"]]  # the change it judges, by journal sequence
        assert cause["k"] == "state_change"
        assert by_seq[verdict["m"][0]]["k"] == "tool_run"  # the test run it cites
    signal = rows[0]
    assert signal["sig"] == "started"
    assert "c" not in signal  # nothing caused it: no edge may be drawn to it
    assert "c" not in row_of(feed.entries[-1])  # without a way to resolve ids, no link
    call = next(r for r in rows if r["k"] == "model_call")
    assert call["x"][0] >= 200
    assert call["x"][3] == 1
    change = next(r for r in rows if r["k"] == "state_change")
    assert change["res"] == "pkg/module_0.py"
    assert change["sum"] == "create pkg/module_0.py"


def test_a_cause_stored_after_its_effect_still_links() -> None:
    entries = _entries(1)
    change = next(e for e in entries if row_of(e)["k"] == "state_change")
    verdict = entries[-1]
    feed = Feed()
    feed.add(verdict)  # the effect first: its cause is unknown yet
    assert "c" not in json.loads(feed.rows[0])
    feed.add(change)
    assert json.loads(feed.rows[1])["e"] == [[verdict.sequence, "cause"]]


def test_a_change_shows_its_diff_hashes_and_verdict(client: TestClient) -> None:
    feed = _feed()
    rejected = _by_kind(feed, "state_change")[2]  # item 2: rejected
    body = client.get(f"/api/event/{rejected.sequence}").json()
    fc = body["file_change"]
    assert fc["path"] == "pkg/module_2.py"
    assert fc["op"] == "create"
    assert len(fc["after_sha256"]) == 64
    assert fc["before_sha256"] == ""
    assert "+value_2 = 2" in fc["diff"]
    assert [v["choice"] for v in body["verdicts"]] == ["reject item 2"]
    assert body["verdicts"][0]["rationale"] == "a test fails"
    assert body["trace_id"]
    assert len(body["trace_id"]) == 32
    assert client.get("/api/event/99999").status_code == 404
    assert client.get("/api/event/x").status_code == 400


def test_every_response_has_the_strict_csp(client: TestClient) -> None:
    for path in ("/", "/static/app.js", "/api/info", "/api/event/1", "/nowhere"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in CSP
    assert "'unsafe-inline'" not in CSP
    page = client.get("/").text
    assert '<script type="module" src="/static/app.js">' in page
    assert "http" not in page.replace("http-equiv", "")  # nothing from elsewhere
    for name in ("app.js", "log.js", "graph.js", "detail.js", "store.js", "replay.js"):
        js = client.get(f"/static/{name}")
        assert js.status_code == 200
        assert js.headers["content-type"].startswith("text/javascript")
        assert "http://" not in js.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in js.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/../_app.py",
        "/static/..%2f_app.py",
        "/static/%2e%2e/%2e%2e/__init__.py",
        "/static/..%2F..%2F..%2Fetc%2Fpasswd",
        "/static//etc/passwd",
        "/static/_app.py",
        "/api/file?path=../../../etc/passwd",
        "/api/file?path=/etc/passwd",
        "/api/workspace?at=1&path=..%2f..%2fsummary.json",
        "/../../etc/passwd",
        "/api/event/..%2f..%2fetc%2fpasswd",
    ],
)
def test_nothing_outside_is_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (400, 404), (path, response.status_code)
    assert "root:" not in response.text
    assert "import" not in response.text


def test_safe_path() -> None:
    assert safe_path("pkg/a.py") == "pkg/a.py"
    for bad in ("", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\..\\b", "c:x", "a\x00"):
        with pytest.raises(ValueError, match="path"):
            safe_path(bad)


def test_loopback_only_answers_loopback_host_names() -> None:
    app = create_app(_feed())
    with TestClient(app, base_url="http://evil.example:8765") as c:
        assert c.get("/api/info").status_code == 403  # DNS rebinding: a foreign name
    for host in ("127.0.0.1", "localhost", "[::1]"):
        with TestClient(app, base_url=f"http://{host}:8765") as c:
            assert c.get("/api/info").status_code == 200, host
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.2")


def test_a_token_is_required_when_set() -> None:
    app = create_app(_feed(), token="s3cret", loopback=False)
    with TestClient(app, base_url="http://10.1.2.3:8765") as c:
        for path in ("/", "/static/app.js", "/api/info", "/api/event/1"):
            assert c.get(path).status_code == 403, path
        assert c.get("/api/info?token=wrong").status_code == 403
        assert c.get("/api/info", headers={"authorization": "Bearer s3cret"}).status_code == 200
        first = c.get("/?token=s3cret")
        assert first.status_code == 200
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}=s3cret")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert c.get("/api/info").status_code == 200  # the cookie carries it now


def test_the_stream_sends_history_then_status_and_new_rows() -> None:
    async def main() -> None:
        feed = _feed(2)
        feed.set_status("live")
        stream = _sse(feed, 3)  # after journal sequence 3
        status = await anext(stream)
        assert status.startswith(b"event: status\n")
        rows = await anext(stream)
        head, _, data = rows.partition(b"data: ")
        body = json.loads(data)
        assert [r["s"] for r in body["rows"]] == [e.sequence for e in feed.entries[3:]]
        assert body["n"] == len(feed)
        assert head.startswith(b"id: %d\n" % feed.entries[-1].sequence)
        more = _entries(3)[len(feed) :]
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        assert not waiting.done()
        for entry in more:
            feed.add(entry)
        body = json.loads((await waiting).partition(b"data: ")[2])
        assert [r["s"] for r in body["rows"]] == [e.sequence for e in more]
        await stream.aclose()

    asyncio.run(main())


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_actors._cli", "dashboard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    result = _cli("--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "no run yet" in result.stderr
    assert "swarm-actors demo" in result.stderr
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    result = _cli("--data-dir", str(tmp_path), "--run", "r1")
    assert result.returncode == 2
    assert "no journal" in result.stderr
    result = _cli("--data-dir", str(tmp_path), "--run", "r1", "--jaeger", "javascript:x")
    assert result.returncode == 2


def test_cli_off_loopback_makes_a_token(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    (run / "journal" / "jetstream").mkdir(parents=True)
    argv = ["--data-dir", str(tmp_path), "--run", "r1", "--host", "0.0.0.0", "--port", "0"]
    with subprocess.Popen(
        [sys.executable, "-m", "swarm_actors._cli", "dashboard", *argv, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = json.loads(proc.stdout.readline())
            assert line["run_id"] == "r1"
            assert "?token=" in line["url"]
            assert len(line["url"].rpartition("=")[2]) >= 24
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_the_workspace_follows_the_journal_sequence() -> None:
    from swarm_actors._dashboard import replay_api

    feed = _feed(6)
    changes = _by_kind(feed, "state_change")
    app = create_app(feed, replay=replay_api(None, feed))
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        start = c.get("/api/workspace?at=0").json()
        assert start["files"] == []
        assert start["change"] is None
        first = c.get(f"/api/workspace?at={changes[0].sequence}").json()
        assert [f["path"] for f in first["files"]] == ["pkg/module_0.py"]
        assert first["files"][0]["changed"] is True
        assert first["change"]["path"] == "pkg/module_0.py"
        assert "+value_0 = 0" in first["change"]["diff"]
        later = c.get(f"/api/workspace?at={changes[3].sequence + 1}").json()
        assert len(later["files"]) == 4
        assert later["change"]["sequence"] == changes[3].sequence  # the last change so far
        one = c.get(f"/api/file?at={changes[2].sequence}&path=pkg/module_2.py").json()
        assert "+value_2 = 2" in one["diff_from_start"]
        assert c.get("/api/file?at=1&path=pkg/nothing.py").status_code == 404
        assert c.get("/api/workspace?at=x").status_code == 400
        assert c.get("/api/elsewhere").status_code == 404


@pytest.mark.asyncio
async def test_follow_run_reads_a_run_on_a_nats_server(tmp_path: Path) -> None:
    # dashboard --nats URL: the run's events on a server of the user's, others' skipped.
    from helpers import until
    from swarm_actors._dashboard import follow_run
    from swarm_actors._runs import RunPaths
    from swarm_actors.events import JetStreamJournal
    from swarm_actors.testing import NatsServer

    async with NatsServer() as server:
        journal = await JetStreamJournal.connect(server.client_options())
        try:
            await journal.append_many(list(synthetic_events(2, coders=1, run_id="elsewhere")))
            ours = list(synthetic_events(2, coders=1))  # 3 started signals, 5 events an item
            await journal.append_many(ours)
            feed = Feed(run_id=RUN_ID)
            fill = asyncio.ensure_future(
                follow_run(RunPaths(RUN_ID, tmp_path), nats=server.url)(feed)
            )
            await until(lambda: len(feed) == len(ours) or feed.status == "failed", what="history")
            assert feed.status == "live", feed.error
            assert feed.status == "live"
            more = list(synthetic_events(1, coders=1))  # while the dashboard follows
            await journal.append_many(more)
            await until(lambda: len(feed) == len(ours) + len(more), what="the new events")
            assert {e.event.run_id for e in feed.entries} == {RUN_ID}
            fill.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fill
        finally:
            await journal.close()


def test_signals_name_the_agent_state() -> None:
    from swarm_actors.events import HealthStatus, SignalKind, SystemSignal, new_event

    def row(payload: SystemSignal) -> dict[str, object]:
        event = new_event(payload, agent_role="coder", agent_id="/c", sequence=1)
        return row_of(JournalEntry(1, "swarm.events.coder.system_signal", event, 0))

    assert row(SystemSignal(kind=SignalKind.CRASHED, detail="boom"))["sig"] == "crashed"
    health = row(SystemSignal(kind=SignalKind.HEALTH, health=HealthStatus.DEGRADED))
    assert health["sig"] == "health_degraded"
    assert health["sum"] == "health_degraded"
