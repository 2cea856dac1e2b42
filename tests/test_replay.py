"""``swarm_actors.replay`` on a real run of the demo: the timeline, ``show``, the workspace at
every event (checkout), ``diff``; then the pieces on their own (applying a change, filters).

One demo run (the CLI, in a subprocess, on a copy of the shipped sample, whose traps the
reviewer rejects and reverts, plus a binary file the swarm never touches) serves the module.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm_actors._cli._demo import copy_tree, sample_project
from swarm_actors.errors import InvalidArgumentError, PatchError, ReplayError
from swarm_actors.events import BlobStore, JournalEntry, MemoryJournal, StateChange
from swarm_actors.replay import (
    RunReplay,
    apply_diff,
    apply_file_change,
    filter_rows,
    load_run,
)
from swarm_actors.tools import (
    SNAPSHOT_TYPE,
    FileChange,
    JournalRecorder,
    Workspace,
    snapshot_change,
    store_snapshot,
    take_snapshot,
)

BINARY = bytes(range(256)) * 3
"""A file the swarm never changes: its bytes must come back from the starting snapshot."""


def _workspace_files(root: Path) -> dict[str, bytes]:
    """The files a snapshot keeps (no caches), as bytes."""
    from swarm_actors.tools import SNAPSHOT_SKIP

    found = {}
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if any(p in SNAPSHOT_SKIP for p in parts) or path.suffix in (".pyc", ".pyo"):
            continue
        if path.is_file() and not path.is_symlink():
            found["/".join(parts)] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One real demo run: its summary (``--json``), with ``data_dir`` and ``project``."""
    tmp = tmp_path_factory.mktemp("replay")
    project = tmp / "project"
    copy_tree(sample_project(), project)
    (project / "assets").mkdir()
    (project / "assets" / "blob.bin").write_bytes(BINARY)
    data = tmp / "data"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm_actors._cli",
            "demo",
            str(project),
            "--data-dir",
            str(data),
            "--json",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    summary: dict[str, str] = json.loads(proc.stdout)
    summary["data_dir"] = str(data)
    summary["project"] = str(project)
    return summary


@pytest.fixture(scope="module")
def replay(demo_run: dict[str, str]) -> RunReplay:
    return asyncio.run(load_run(data_dir=demo_run["data_dir"]))


def test_the_timeline_has_every_event_in_order(replay: RunReplay, demo_run: dict[str, str]) -> None:
    rows = replay.rows()
    assert len(rows) == len(replay.entries) > 0
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert not replay.problems
    kinds = {r.kind for r in rows}
    assert {"decision", "state_change", "tool_run", "system_signal"} <= kinds
    first = rows[0]
    assert first.agent_role == "swarm"
    assert first.summary.startswith("workspace snapshot: ")
    changes = replay.timeline(kind="state_change", role="coder")
    assert changes
    assert all(r.summary.startswith(("write ", "create ")) for r in changes)
    assert replay.timeline(resource="ledger/*.py", kind="state_change")
    assert all(r.agent_id == "/coder-1" for r in replay.timeline(agent="coder-1"))
    assert replay.timeline(agent="coder-1") == replay.timeline(agent="/coder-1")
    middle = rows[len(rows) // 2].time_ns
    assert all(r.time_ns >= middle for r in replay.timeline(since_ns=middle))
    assert all(r.time_ns <= middle for r in replay.timeline(until_ns=middle))
    assert all(r.run_id == demo_run["run_id"] for r in (e.event for e in replay.entries))


def test_show_gives_the_change_its_diff_and_the_cause(replay: RunReplay) -> None:
    change_row = replay.timeline(kind="state_change", role="coder")[0]
    detail = replay.show(change_row.seq)
    assert detail.change is not None
    assert detail.change.diff.startswith(f"--- a/{detail.change.path}")
    assert detail.row == change_row
    decisions = [r for r in replay.timeline(kind="decision") if r.causation_id]
    shown = replay.show(decisions[0].seq)
    assert shown.cause is not None
    assert shown.cause.event_id == decisions[0].causation_id
    assert shown.event.payload.rationale  # type: ignore[union-attr]
    data = json.loads(json.dumps(shown.to_builtins()))
    assert data["seq"] == decisions[0].seq
    assert data["cause"]["event_id"] == decisions[0].causation_id


def test_checkout_at_every_event_reproduces_the_recorded_hashes(
    replay: RunReplay, demo_run: dict[str, str], tmp_path: Path
) -> None:
    project = Path(demo_run["project"])
    start = replay.files_at(0)
    assert start == _workspace_files(project)  # the starting workspace, byte for byte
    assert start["assets/blob.bin"] == BINARY
    checked = 0
    for entry in replay.entries:
        seq = entry.sequence
        payload = entry.event.payload
        if type(payload) is not StateChange or payload.content_type == SNAPSHOT_TYPE:
            continue
        change = replay.show(seq).change
        assert change is not None
        before, after = replay.files_at(seq - 1), replay.files_at(seq)
        sha = hashlib.sha256
        assert sha(before[change.path]).hexdigest() == change.before_sha256
        assert sha(after[change.path]).hexdigest() == change.after_sha256
        checked += 1
    assert checked >= 3
    # Every event, also those that change nothing: the last one is the workspace at the end.
    for entry in replay.entries:
        replay.files_at(entry.sequence)
    final = Path(demo_run["workspace"])
    assert replay.files_at(replay.last_seq) == _workspace_files(final)
    out = replay.checkout(replay.last_seq, tmp_path / "out")
    assert _workspace_files(out) == _workspace_files(final)


def test_a_rejected_change_and_its_revert_show_in_diff(replay: RunReplay) -> None:
    reverts = replay.timeline(kind="state_change", role="reviewer")
    assert reverts, "the trap's change is rejected and reverted"
    revert = replay.show(reverts[0].seq).change
    assert revert is not None
    change_seq = next(
        r.seq
        for r in replay.timeline(kind="state_change", role="coder")
        if r.seq < reverts[0].seq
        and replay.show(r.seq).change.after_sha256  # type: ignore[union-attr]
        == revert.before_sha256
    )
    # From just before the change to just after its revert: nothing changed in that file.
    assert revert.path not in replay.diff(change_seq - 1, reverts[0].seq)
    text = replay.diff(change_seq - 1, change_seq)
    assert text.startswith(f"diff --git a/{revert.path} b/{revert.path}\n")
    assert replay.diff(0, 0) == ""


def test_bad_sequences_and_a_busy_directory_are_refused(replay: RunReplay, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="past the end"):
        replay.files_at(replay.last_seq + 1)
    with pytest.raises(InvalidArgumentError, match=">= 0"):
        replay.files_at(-1)
    with pytest.raises(InvalidArgumentError, match="no event at sequence"):
        replay.show(replay.last_seq + 5)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(InvalidArgumentError, match="not an empty directory"):
        replay.checkout(0, tmp_path / "busy")


# --- the pieces on their own ----------------------------------------------------------------


async def _record_run(root: Path, blobs: BlobStore) -> list[JournalEntry]:
    """A small run in memory: a snapshot, then text, binary, move and delete changes."""
    journal = MemoryJournal()
    recorder = JournalRecorder(journal, role="coder", agent_id="/c", run_id="r")
    recorder.record(snapshot_change(store_snapshot(take_snapshot(root, blobs), blobs)))
    with Workspace(root, recorder=recorder, blobs=blobs, inline_limit=64) as ws:
        await ws.write("a.txt", "one\ntwo\nthree")  # no final newline
        await ws.write("a.txt", "one\r\n2\nthree\n\u2028x")
        await ws.write("big.txt", "x\n" * 100)  # over inline_limit: blobs
        await ws.write("b.bin", b"\0\1\2")
        await ws.move("b.bin", "sub/c.bin")
        await ws.delete("start.txt")
        await ws.write("big.txt", "y\n" * 100)
    return [e async for e in journal.read()]


def test_a_fold_reproduces_every_kind_of_change(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "start.txt").write_text("hello\n")
    blobs = BlobStore(tmp_path / "blobs")
    entries = asyncio.run(_record_run(root, blobs))
    replay = RunReplay(entries, blobs, run_id="r")
    assert replay.files_at(0) == {"start.txt": b"hello\n"}
    assert replay.files_at(replay.last_seq) == _workspace_files(root)
    assert replay.files_at(2)["a.txt"] == b"one\ntwo\nthree"
    # Without the blob store the inline diffs still replay, the blobs do not.
    with pytest.raises(ReplayError, match="blob store"):
        RunReplay(entries, None).files_at(replay.last_seq)


def test_a_change_that_does_not_fit_is_refused() -> None:
    change = FileChange(
        op="write",
        path="f",
        before_sha256=hashlib.sha256(b"a\n").hexdigest(),
        after_sha256=hashlib.sha256(b"b\n").hexdigest(),
        diff="--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n",
    )
    files = {"f": b"a\n"}
    apply_file_change(files, change)
    assert files == {"f": b"b\n"}
    with pytest.raises(PatchError, match="not as the change found it"):
        apply_file_change(files, change)
    with pytest.raises(PatchError, match="line 1"):
        apply_diff(b"c\n", change.diff)
    wrong_after = FileChange(
        op="write",
        path="f",
        before_sha256=change.before_sha256,
        after_sha256=change.before_sha256,
        diff=change.diff,
    )
    with pytest.raises(PatchError, match="after hash"):
        apply_file_change({"f": b"a\n"}, wrong_after)


def test_filters_take_shell_patterns(replay: RunReplay) -> None:
    rows = replay.rows()
    assert filter_rows(rows, kind="state_*") == replay.timeline(kind="state_change")
    assert filter_rows(rows, resource="*.py", kind="state_change")
    assert filter_rows(rows, role="nobody") == []
