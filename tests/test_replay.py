"""``swarm_actors.replay`` on a real run of the demo: the timeline, ``show``, the workspace at
every event (checkout), ``diff``; then the pieces on their own (applying a change, filters).

One demo run (the CLI, in a subprocess, on a copy of the shipped sample, whose traps the
reviewer rejects and reverts, plus a binary file the swarm never touches) serves the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from swarm_actors._cli import main
from swarm_actors._cli._demo import copy_tree, sample_project
from swarm_actors._runs import run_dir
from swarm_actors.errors import (
    EventDecodeError,
    InvalidArgumentError,
    JournalGapError,
    PatchError,
    ReplayError,
)
from swarm_actors.events import (
    BlobStore,
    JournalEntry,
    MemoryJournal,
    StateChange,
    decode_event,
    encode_event,
)
from swarm_actors.replay import (
    JournalProblem,
    RunReplay,
    apply_diff,
    apply_file_change,
    checkout_run,
    filter_rows,
    load_run,
    read_index,
    read_run_entries,
    store_snapshots,
    verify_run,
)
from swarm_actors.tools import (
    SNAPSHOT_TYPE,
    FileChange,
    JournalRecorder,
    Workspace,
    load_snapshot,
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
    big = next(s.seq for s in replay.steps() if s.change and s.change.path == "big.txt")
    shown = replay.show(big)
    assert shown.change is not None
    assert not shown.change.diff  # over the inline limit: in the blob store...
    assert shown.diff.startswith("diff --git a/big.txt b/big.txt\n")  # ...and shown as a diff
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


# --- verify -----------------------------------------------------------------------------------


def test_the_demo_run_verifies(replay: RunReplay) -> None:
    report = verify_run(replay)
    assert report.ok, report.problems
    assert report.broken is None
    assert report.events == len(replay.entries)
    assert report.state_changes >= report.file_changes >= 3
    assert report.agents >= 5


def _state_changes(replay: RunReplay) -> list[JournalEntry]:
    return [
        e
        for e in replay.entries
        if type(e.event.payload) is StateChange and e.event.agent_role == "coder"
    ]


@pytest.mark.parametrize("where", ["change", "decision"])
def test_a_flipped_byte_in_the_store_fails_verify_at_that_event(
    replay: RunReplay, demo_run: dict[str, str], tmp_path: Path, where: str
) -> None:
    # A copy of the run, one byte flipped inside a coder's change (a link of its chain) or a
    # reviewer's decision (no chain covers it: the store's own checksum must) as stored.
    run_id = demo_run["run_id"]
    copy = tmp_path / "runs" / run_id
    shutil.copytree(demo_run["run_dir"], copy, ignore=shutil.ignore_patterns("workspace"))
    if where == "change":
        target = _state_changes(replay)[1]
    else:
        target = replay.entry(replay.timeline(role="reviewer", kind="decision")[1].seq)
    raw = encode_event(target.event)
    (block,) = (copy / "journal").glob("jetstream/*/streams/SWARM_EVENTS/msgs/*.blk")
    data = bytearray(block.read_bytes())
    at = data.find(raw)
    assert at >= 0
    # A digit of the diff's hunk header, or a byte in the middle of the decision.
    data[at + (raw.find(b"@@ ") + 4 if where == "change" else len(raw) // 2)] ^= 0x01
    block.write_bytes(bytes(data))
    damaged = asyncio.run(load_run(str(copy)))
    report = verify_run(damaged)
    assert not report.ok
    broken = report.broken
    assert broken is not None
    # The server drops a message whose checksum fails (a gap), or hands it back altered.
    assert broken.seq == target.sequence, report.problems
    assert broken.kind in ("missing", "altered", "undecodable")
    assert broken.agent_id == target.event.agent_id
    assert broken.agent_seq == target.event.sequence
    assert f"{target.event.agent_id} event {target.event.sequence}" in broken.message
    # The CLI says the same and exits 1.
    code, out, _ = _cli(["verify", "--run", str(copy)])
    assert code == 1
    assert f"BROKEN at sequence {target.sequence}" in out


def test_every_flipped_byte_of_a_change_handed_back_is_found_at_that_event(
    replay: RunReplay,
) -> None:
    target = _state_changes(replay)[0]
    index = replay.entries.index(target)
    raw = encode_event(target.event)
    for position in range(len(raw)):
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        entries = list(replay.entries)
        problems = []
        try:
            event = decode_event(bytes(flipped))
        except EventDecodeError as exc:
            del entries[index]  # the read could not deliver it: the journal reports it
            problems.append(
                JournalProblem(
                    kind="undecodable",
                    first=target.sequence,
                    last=target.sequence,
                    message=str(exc),
                )
            )
        else:
            entries[index] = JournalEntry(target.sequence, target.subject, event, target.stored_ns)
        damaged = RunReplay(entries, replay.blobs, run_id=replay.run_id, problems=problems)
        report = verify_run(damaged)
        assert report.broken is not None, f"byte {position} flipped went unnoticed"
        assert report.broken.seq == target.sequence, (position, report.broken)


# --- the command line -------------------------------------------------------------------------


def _cli(args: list[str], data_dir: str | None = None) -> tuple[int, str, str]:
    """``swarm-actors replay ARGS`` in process: (exit status, stdout, stderr)."""
    argv = ["replay", *args, *(["--data-dir", data_dir] if data_dir is not None else [])]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse refuses
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_cli_list_json_has_the_fields_and_filters(
    replay: RunReplay, demo_run: dict[str, str]
) -> None:
    code, out, err = _cli(["list", "--json"], demo_run["data_dir"])
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(replay.entries)
    for field in ("seq", "time", "agent_role", "agent_id", "kind", "resource", "summary"):
        assert all(field in line for line in lines), field
    assert [line["seq"] for line in lines] == [e.sequence for e in replay.entries]
    code, out, _ = _cli(
        ["list", "--json", "--role", "reviewer", "--kind", "state_change"], demo_run["data_dir"]
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows
    assert all(r["agent_role"] == "reviewer" and r["kind"] == "state_change" for r in rows)
    first = lines[len(lines) // 2]["time"]
    code, out, _ = _cli(["list", "--json", "--since", first], demo_run["data_dir"])
    assert all(json.loads(line)["time"] >= first for line in out.splitlines())


def test_cli_show_checkout_diff_verify(
    replay: RunReplay, demo_run: dict[str, str], tmp_path: Path
) -> None:
    data = demo_run["data_dir"]
    change = _state_changes(replay)[0]
    code, out, err = _cli(["show", str(change.sequence)], data)
    assert code == 0, err
    assert "--- a/" in out
    code, out, err = _cli(["show", str(change.sequence), "--json"], data)
    assert json.loads(out)["change"]["after_sha256"]
    code, out, err = _cli(["checkout", str(change.sequence), "--to", str(tmp_path / "w")], data)
    assert code == 0, err
    assert _workspace_files(tmp_path / "w") == replay.files_at(change.sequence)
    code, out, _ = _cli(["diff", str(change.sequence - 1), str(change.sequence)], data)
    assert out == replay.diff(change.sequence - 1, change.sequence) != ""
    code, out, err = _cli(["verify"], data)
    assert code == 0, err
    assert ": ok: " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "99999"], "no event at sequence 99999"),
        (["checkout", "99999", "--to", "{tmp}/x"], "past the end"),
        (["diff", "0", "99999"], "past the end"),
        (["list", "--run", "no-such-run"], "no run 'no-such-run'"),
        (["show", "-3"], "a sequence is >= 0"),
    ],
)
def test_cli_bad_input_exits_2_with_the_fix(
    demo_run: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = _cli(args, demo_run["data_dir"])
    assert code == 2
    assert message in err
    assert out == ""


# --- periodic snapshots -----------------------------------------------------------------------


def test_checkout_from_a_stored_snapshot_and_the_tail(
    replay: RunReplay, demo_run: dict[str, str], tmp_path: Path
) -> None:
    run = run_dir(demo_run["run_id"], demo_run["data_dir"])
    stored = store_snapshots(replay, run, every=4)
    steps = replay.steps()
    assert [s.seq for s in stored] == [steps[i - 1].seq for i in range(4, len(steps) + 1, 4)]
    assert read_index(run) == stored
    for snap in stored:  # each holds the files right after its event
        listing = load_snapshot(replay.blobs, snap.manifest)  # type: ignore[arg-type]
        assert {p: replay.blobs.get(f.sha256) for p, f in listing.files.items()} == (  # type: ignore[union-attr]
            replay.files_at(snap.seq)
        )
    targets = [stored[0].seq, stored[0].seq + 1, stored[-1].seq, replay.last_seq]
    for n, seq in enumerate(targets):
        out = asyncio.run(checkout_run(run, seq, tmp_path / f"out{n}"))
        assert _workspace_files(out) == replay.files_at(seq), seq
    # The checkout reads the snapshot, not the history before it: one whose list were
    # another's would be what it writes (that is why its event's id and blobs are checked).
    index = run.root / "snapshots.json"
    saved = index.read_bytes()
    try:
        if len(stored) > 1 and replay.files_at(stored[0].seq) != replay.files_at(stored[-1].seq):
            lying = [*stored[:-1], msgspec.structs.replace(stored[-1], manifest=stored[0].manifest)]
            index.write_bytes(msgspec.json.encode(lying))
            out = asyncio.run(checkout_run(run, stored[-1].seq, tmp_path / "lie", store=False))
            assert _workspace_files(out) == replay.files_at(stored[0].seq)
        # A snapshot whose event is not the journal's any more is not trusted: the start is.
        forged = [msgspec.structs.replace(s, event_id="forged") for s in stored]
        index.write_bytes(msgspec.json.encode(forged))
        out = asyncio.run(checkout_run(run, replay.last_seq, tmp_path / "again", store=False))
        assert _workspace_files(out) == replay.files_at(replay.last_seq)
    finally:
        index.write_bytes(saved)


class _DamagedJournal:
    """A journal read as JetStream reads a damaged store: a gap, then a message no event."""

    def __init__(self, entries: list[JournalEntry], gap: int, garbled: int) -> None:
        self.entries, self.gap, self.garbled = entries, gap, garbled

    async def read(self, *, start_sequence: int | None = None) -> AsyncIterator[JournalEntry]:
        for entry in self.entries:
            seq = entry.sequence
            if seq < (start_sequence or 1):
                continue
            if seq == self.gap:
                raise JournalGapError(f"sequence {seq} missing", first=seq, last=seq, missing=1)
            if seq == self.garbled:
                raise EventDecodeError(f"journal sequence {seq} is not an event")
            yield entry


def test_reading_goes_on_past_a_gap_and_a_garbled_message(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "start.txt").write_text("hello\n")
    entries = asyncio.run(_record_run(root, BlobStore(tmp_path / "blobs")))
    journal = _DamagedJournal(entries, gap=3, garbled=5)
    read, problems = asyncio.run(read_run_entries(journal, "r"))  # type: ignore[arg-type]
    assert [e.sequence for e in read] == [e.sequence for e in entries if e.sequence not in (3, 5)]
    assert [(p.kind, p.first, p.last) for p in problems] == [("gap", 3, 3), ("undecodable", 5, 5)]
    report = verify_run(
        RunReplay(read, BlobStore(tmp_path / "blobs"), run_id="r", problems=problems)
    )
    assert report.broken is not None
    assert (report.broken.seq, report.broken.kind) == (3, "missing")
    assert report.broken.agent_id == "/c"
    assert report.broken.agent_seq == entries[2].event.sequence  # the event the gap held
    assert f"it held /c event {entries[2].event.sequence}" in report.broken.message
    assert any(link.kind == "undecodable" and link.seq == 5 for link in report.problems)


def test_a_snapshot_keeps_the_files_and_leaves_caches_and_links(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    (root / "link").symlink_to(root / "run.sh")
    blobs = BlobStore()
    snapshot = take_snapshot(root, blobs)
    assert sorted(snapshot.files) == ["pkg/mod.py", "run.sh"]
    assert snapshot.files["run.sh"].executable
    assert not snapshot.files["pkg/mod.py"].executable
    assert blobs.get(snapshot.files["pkg/mod.py"].sha256) == b"x = 1\n"
