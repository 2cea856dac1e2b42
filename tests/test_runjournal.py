"""Reading a run's journal while it goes on and after it ended; a worker joining the demo's
embedded run with nothing but its data directory (``swarm-actors worker --data-dir``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from helpers import until_async
from swarm_actors._cli import main
from swarm_actors._nats._server import free_ports
from swarm_actors._runjournal import (
    LIVE_FILE,
    follow_run_entries,
    live_options,
    open_run_journal,
)
from swarm_actors._runs import latest_run, new_run, run_dir
from swarm_actors.errors import RunNotFoundError
from swarm_actors.events import JournalEntry

pytestmark = pytest.mark.timeout(240)


async def _cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarm_actors._cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.asyncio
async def test_a_worker_joins_the_demo_run_and_readers_follow_it_live(tmp_path: Path) -> None:
    data = tmp_path / "data"
    demo = await _cli("demo", "--data-dir", str(data), "--coders", "1", "--json", "-q")
    try:

        async def live() -> bool:
            rid = latest_run(data)
            return rid is not None and (data / "runs" / rid / LIVE_FILE).exists()

        await until_async(live, timeout=60, what="the demo's live.json")
        run = run_dir(None, data)
        assert (run.root / LIVE_FILE).stat().st_mode & 0o077 == 0  # holds the server's seed
        seen: list[JournalEntry] = []
        async with open_run_journal(run) as reader:
            assert reader.live

            async def some_events() -> bool:
                seen[:] = await reader.load()
                return bool(seen)

            await until_async(some_events, timeout=60, what="events of the live run")
        assert all(e.event.run_id == run.run_id for e in seen)
        followed: list[JournalEntry] = []

        async def follow() -> None:  # ends by itself when the run ends
            async for entry in follow_run_entries(run, poll=0.1):
                followed.append(entry)

        follower = asyncio.create_task(follow())
        worker = await _cli("worker", "--role", "coder", "--data-dir", str(data), "-q")
        _, worker_err = await asyncio.wait_for(worker.communicate(), 180)
        assert worker.returncode == 0, worker_err.decode()
        out, err = await asyncio.wait_for(demo.communicate(), 180)
        await asyncio.wait_for(follower, 60)
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    summary = json.loads(out)
    assert summary["ok"], err.decode()
    assert not (run.root / LIVE_FILE).exists()  # the run ended: readers open its store
    async with open_run_journal(run) as finished:
        assert not finished.live
        entries = await finished.load()
    assert len(entries) >= summary["events"]  # and the signals of its stopping
    assert [e.sequence for e in entries[: len(seen)]] == [e.sequence for e in seen]
    assert [e.sequence for e in followed] == [e.sequence for e in entries]  # each once, all
    coders = {e.event.agent_id for e in entries if e.event.agent_role == "coder"}
    assert any(c.startswith("/worker-") for c in coders), coders  # the worker did items


@pytest.mark.asyncio
async def test_a_live_file_left_by_a_killed_run_falls_back_to_the_store(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    (port,) = free_ports(1)
    (run.root / LIVE_FILE).write_text(json.dumps({"url": f"nats://127.0.0.1:{port}"}))
    assert live_options(run.root) is not None
    with pytest.raises(RunNotFoundError, match="has no journal"):
        async with open_run_journal(run):
            pass


def test_live_options_ignore_what_is_not_a_record(tmp_path: Path) -> None:
    for text in ("", "{", "[]", '{"url": 5}', '{"url": "http://x"}'):
        (tmp_path / LIVE_FILE).write_text(text)
        assert live_options(tmp_path) is None, text
    os.remove(tmp_path / LIVE_FILE)
    assert live_options(tmp_path) is None


def test_a_worker_without_a_live_run_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--role", "coder", "--data-dir", str(tmp_path)]) == 2
    assert "no run yet" in capsys.readouterr().err
    new_run(tmp_path)
    assert main(["worker", "--role", "coder", "--data-dir", str(tmp_path)]) == 2
    assert "is not going on" in capsys.readouterr().err
