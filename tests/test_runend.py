"""A reader of a live run notices when the run ends: it reads the rest from the run's store.

The run is a stand-in in another OS process (``live_run_peer.py``: a nats-server on the run's
store, ``live.json``, events; it ends as a run does, storing the events of its stopping after
``live.json`` is gone, or it is killed). A real demo run is followed the same way in
``test_runjournal.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import swarm_actors
from helpers import until
from live_run_peer import FIRST, STOPPING
from swarm_actors._runjournal import (
    LIVE_FILE,
    follow_run_entries,
    open_run_journal,
    run_is_live,
    wait_run_ended,
)
from swarm_actors._runs import RunPaths, new_run
from swarm_actors.events import JournalEntry

pytestmark = pytest.mark.timeout(180)

PEER = Path(__file__).with_name("live_run_peer.py")
PACKAGE = Path(swarm_actors.__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE), str(PEER.parent)])}
CLI = [sys.executable, "-m", "swarm_actors._cli"]


class Peer:
    """The live run's process: commands on its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def more(self, count: int) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"more {count}\n".encode())
        assert await asyncio.wait_for(self.proc.stdout.readline(), 60) == b"ok\n"

    async def end(self) -> None:
        """Remove ``live.json`` (the run's server stays up, as a run's does a while)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(b"end\n")
        assert await asyncio.wait_for(self.proc.stdout.readline(), 60) == b"ended\n"

    async def stop(self) -> None:
        """Store the events of the run's stopping, then stop its server and exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        assert await asyncio.wait_for(self.proc.wait(), 60) == 0


@asynccontextmanager
async def live_run(data: Path) -> AsyncIterator[tuple[RunPaths, Peer]]:
    run = new_run(data)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PEER),
        str(run.root),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
        assert run_is_live(run)
        yield run, Peer(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _stored(run: RunPaths) -> list[JournalEntry]:
    async with open_run_journal(run) as rj:
        assert not rj.live
        return await rj.load()


def _sequences(entries: list[JournalEntry]) -> list[int]:
    return [e.sequence for e in entries]


@pytest.mark.asyncio
async def test_a_follower_of_a_live_run_ends_with_it_and_has_every_entry_once(
    tmp_path: Path,
) -> None:
    async with live_run(tmp_path) as (run, peer):
        followed: list[JournalEntry] = []
        tailed: list[JournalEntry] = []
        went_live: list[bool] = []

        saw_end = asyncio.Event()

        async def follow() -> None:
            async for entry in follow_run_entries(
                run, poll=0.05, on_live=lambda: went_live.append(True), on_end=saw_end.set
            ):
                followed.append(entry)

        async def tail() -> None:
            async with open_run_journal(run) as rj:
                assert rj.live
                async for entry in rj.entries(follow=True, poll=0.05):
                    tailed.append(entry)

        tasks = [asyncio.create_task(follow()), asyncio.create_task(tail())]
        await until(lambda: len(followed) == len(tailed) == FIRST, 60, "the first entries")
        await peer.more(10)
        await until(lambda: len(followed) == FIRST + 10, 60, "the new entries, live")
        assert went_live == [True]
        await peer.end()
        # Both see the end by themselves (the timeouts bound a hang); then the run stores the
        # events of its stopping: the follower reads them from the store.
        await asyncio.wait_for(saw_end.wait(), 60)
        await asyncio.wait_for(tasks[1], 60)
        await peer.stop()
        await asyncio.wait_for(tasks[0], 60)
    stored = await _stored(run)
    assert len(stored) == FIRST + 10 + STOPPING
    assert all(e.event.run_id == run.run_id for e in followed)
    assert _sequences(followed) == _sequences(stored)  # each once, in order, the last ones too
    assert _sequences(tailed) == _sequences(stored)[: FIRST + 10]  # live only
    rest = [e async for e in follow_run_entries(run, start_sequence=followed[-3].sequence)]
    assert _sequences(rest) == _sequences(followed[-3:])  # a finished run: from where asked


@pytest.mark.asyncio
async def test_a_killed_live_run_is_followed_to_the_end_of_its_store(tmp_path: Path) -> None:
    async with live_run(tmp_path) as (run, peer):
        followed: list[JournalEntry] = []

        async def follow() -> None:
            async for entry in follow_run_entries(run, poll=0.05):
                followed.append(entry)

        task = asyncio.create_task(follow())
        await until(lambda: len(followed) == FIRST, 60, "the first entries")
        await peer.more(10)
        peer.proc.send_signal(signal.SIGKILL)
        await peer.proc.wait()
        await asyncio.wait_for(task, 60)  # its server died with it: the follower ends
    assert (run.root / LIVE_FILE).exists()  # left behind by the killed run
    assert not run_is_live(run)
    await asyncio.wait_for(wait_run_ended(run), 10)
    stored = await _stored(run)
    assert len(stored) == FIRST + 10
    assert _sequences(followed) == _sequences(stored)
    # The stale live.json: a new follower reads the store straight away.
    again = [e async for e in follow_run_entries(run)]
    assert _sequences(again) == _sequences(stored)


async def _line(stream: asyncio.StreamReader | None, prefix: bytes) -> None:
    """Read ``stream`` up to a line starting with ``prefix`` (the process must print it)."""
    assert stream is not None
    while not (line := await asyncio.wait_for(stream.readline(), 60)).startswith(prefix):
        assert line, f"the process ended before printing {prefix!r}"


@pytest.mark.asyncio
@pytest.mark.parametrize("ending", ["ends", "is killed"])
async def test_archive_follow_exits_when_the_live_run_ends_with_every_event_once(
    tmp_path: Path, ending: str
) -> None:
    async with live_run(tmp_path) as (run, peer):
        archive = await asyncio.create_subprocess_exec(
            *CLI, "archive", "--data-dir", str(tmp_path), "--run", run.run_id, "--follow",
            "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )  # fmt: skip
        err = b""
        try:
            await _line(archive.stderr, b"archived")  # the first batch, while the run is live
            await peer.more(10)
            total = FIRST + 10
            if ending == "ends":
                await peer.end()
                await _line(archive.stderr, b"the run ended")
                await peer.stop()  # the events of its stopping: archived from the store
                total += STOPPING
            else:
                peer.proc.send_signal(signal.SIGKILL)  # its live.json stays behind
            out, err = await asyncio.wait_for(archive.communicate(), 120)
        finally:
            if archive.returncode is None:
                archive.kill()
                await archive.wait()
    assert archive.returncode == 0, err.decode()[-3000:]
    stats = json.loads(out)
    assert stats["archived"] == total + 1  # the whole stream: the other run's event too
    sql = (
        f"SELECT count() AS n, uniqExact(event_id) AS ids FROM events WHERE run_id = '{run.run_id}'"
    )
    query = await asyncio.create_subprocess_exec(
        *CLI, "sql", "--data-dir", str(tmp_path), "--json", sql,
        stdout=asyncio.subprocess.PIPE, env=ENV,
    )  # fmt: skip
    counts, _ = await asyncio.wait_for(query.communicate(), 120)
    assert json.loads(counts) == {"n": total, "ids": total}
