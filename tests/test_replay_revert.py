"""Reverting a real run's changes: new events, the files byte for byte as before, the chain whole.

One run of the swarm on the tiny sample project (embedded NATS, its journal on disk) is shared
by the module; each test reverts on it and checks from the journal and the files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarm_actors._runjournal import clear_live_url, open_run_journal, write_live_url
from swarm_actors._runs import RunPaths, new_run
from swarm_actors.cluster import Cluster
from swarm_actors.errors import (
    InvalidArgumentError,
    IrreversibleChangeError,
    PatchError,
    ReplayError,
)
from swarm_actors.events import SwarmEvent, verify_chain
from swarm_actors.replay import (
    OPERATOR_ID,
    Recorded,
    apply_diff,
    dependents,
    file_changes,
    fork_workspace,
    invert_diff,
    load_run,
    revert,
    run_workspace,
    verify_run,
)
from swarm_actors.replay._revert import operator_lock
from swarm_actors.swarm import SwarmConfig, run_swarm
from swarm_actors.tools import JournalRecorder, Workspace
from swarm_sample import FILES, SELECT, write_sample

pytestmark = [pytest.mark.timeout(180)]
async_test = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    data: Path
    paths: RunPaths


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    data = tmp_path_factory.mktemp("replay-data")
    paths = new_run(data)
    write_sample(paths.workspace)
    config = SwarmConfig(
        workspace=paths.workspace,
        run_dir=paths.root,
        run_id=paths.run_id,
        select=SELECT,
        coders=2,
        journal_dir=paths.journal,
    )
    summary = asyncio.run(run_swarm(config))
    assert summary.approved >= 1
    return Run(data, paths)


async def _events(paths: RunPaths) -> list[tuple[int, SwarmEvent]]:
    async with open_run_journal(paths) as rj:
        return [(e.sequence, e.event) async for e in rj.entries()]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _first_change(events: list[tuple[int, SwarmEvent]], path: str) -> Recorded:
    return next(r for r in file_changes(events) if r.change.path == path)


def _changed_path(events: list[tuple[int, SwarmEvent]]) -> str:
    """A sample file the coders changed, whose content the sample defines."""
    return next(r.change.path for r in file_changes(events) if r.change.path in FILES)


@async_test
async def test_revert_appends_events_and_restores_the_file_byte_for_byte(demo_run: Run) -> None:
    events = await _events(demo_run.paths)
    path = _changed_path(events)
    first = _first_change(events, path)
    later = [r.sequence for r in file_changes(events) if r.change.path == path]
    file = run_workspace(demo_run.paths) / path
    before_revert = file.read_bytes()

    plan = await revert(first.sequence, run=demo_run.paths, dry_run=True)  # writes nothing
    assert plan.dry_run
    assert list(plan.undone) == later
    assert (plan.decision, plan.changes) == (0, ())
    assert file.read_bytes() == before_revert
    assert await _events(demo_run.paths) == events

    result = await revert(first.sequence, run=demo_run.paths.run_id, data_dir=demo_run.data)

    # The change and every later change to the file were undone; the file is the original.
    assert list(result.undone) == later
    assert file.read_bytes() == FILES[path].encode()
    assert result.files == {path: _sha(FILES[path].encode())}
    # History was appended to, never rewritten: the old events are all there, as they were.
    after = await _events(demo_run.paths)
    assert after[: len(events)] == events
    new = dict(after[len(events) :])
    assert result.decision in new
    assert set(result.changes) <= new.keys()
    assert all(e.agent_id == OPERATOR_ID for e in new.values())
    decision = new[result.decision].payload
    assert first.event.event_id in decision.memory_ids  # type: ignore[union-attr]
    assert all(new[s].causation_id == new[result.decision].event_id for s in result.changes)
    (change,) = file_changes([(s, new[s]) for s in result.changes])
    assert change.change.path == path
    assert change.change.after_sha256 == _sha(FILES[path].encode())
    verify_chain(e for _, e in after)

    # Rebuilt from the events alone (the starting snapshot, then every change), the workspace
    # is the file on disk: the revert's events are real file changes.
    replay = await load_run(demo_run.paths)
    assert replay.files_at()[path] == file.read_bytes()
    report = verify_run(replay)  # every chain, every change applied: the revert's too
    assert report.ok, report.broken
    assert report.file_changes == len(file_changes(after))

    # A revert of the revert gives the file back as it was before the revert.
    again = await revert(result.changes[0], run=demo_run.paths, data_dir=demo_run.data)
    assert file.read_bytes() == before_revert
    assert again.undone == (result.changes[0],)
    assert verify_run(await load_run(demo_run.paths)).ok


@pytest.fixture
def run_copy(demo_run: Run, tmp_path: Path) -> Run:
    """A copy of the demo run (its journal's store too) under another data directory."""
    paths = RunPaths(demo_run.paths.run_id, tmp_path / "runs" / demo_run.paths.run_id)
    shutil.copytree(demo_run.paths.root, paths.root, symlinks=True)
    return Run(tmp_path, paths)


@async_test
async def test_a_change_marked_irreversible_stops_the_revert(run_copy: Run) -> None:
    # On a copy: the irreversible change stays in the run for good.
    demo_run = run_copy
    async with open_run_journal(demo_run.paths) as rj:
        recorder = JournalRecorder(
            rj.journal, role="tools", agent_id="/test/binary", run_id=demo_run.paths.run_id
        )
        # No blob store: the workspace cannot keep the old content of a binary change, and
        # marks the second write irreversible (the creation is undone by deleting).
        with Workspace(run_workspace(demo_run.paths), recorder=recorder) as ws:
            await ws.write("data.bin", b"\x00one")
            await ws.write("data.bin", b"\x00two")
        await rj.journal.flush()
    events = await _events(demo_run.paths)
    created, rewritten = [r for r in file_changes(events) if r.change.path == "data.bin"]
    assert created.reversible
    assert not rewritten.reversible

    with pytest.raises(IrreversibleChangeError, match=f"change {rewritten.sequence}") as info:
        await revert(created.sequence, run=demo_run.paths)
    assert info.value.sequence == rewritten.sequence
    assert info.value.path == "data.bin"
    # Nothing was written: no event, the file as it was.
    assert await _events(demo_run.paths) == events
    assert (run_workspace(demo_run.paths) / "data.bin").read_bytes() == b"\x00two"


@async_test
async def test_a_file_edited_outside_the_journal_is_not_overwritten(demo_run: Run) -> None:
    events = await _events(demo_run.paths)
    path = _changed_path(events)
    file = run_workspace(demo_run.paths) / path
    kept = file.read_bytes()
    file.write_bytes(kept + b"# edited by hand\n")
    try:
        with pytest.raises(ReplayError, match="not the"):
            await revert(_first_change(events, path).sequence, run=demo_run.paths)
        assert await _events(demo_run.paths) == events
    finally:
        file.write_bytes(kept)


@async_test
async def test_a_revert_of_what_is_not_a_file_change_says_what_to_pick(demo_run: Run) -> None:
    events = await _events(demo_run.paths)
    decision = next(s for s, e in events if type(e.payload).__name__ == "AgentDecision")
    with pytest.raises(InvalidArgumentError, match="AgentDecision, not a workspace file change"):
        await revert(decision, run=demo_run.paths)
    snapshot = next(
        s
        for s, e in events
        if type(e.payload).__name__ == "StateChange"
        and s not in {r.sequence for r in file_changes(events)}
    )
    with pytest.raises(InvalidArgumentError, match="snapshot"):
        await revert(snapshot, run=demo_run.paths)
    with pytest.raises(InvalidArgumentError, match="replay list"):
        await revert(events[-1][0] + 1000, run=demo_run.paths)


@async_test
async def test_revert_on_a_live_run_writes_through_its_server(demo_run: Run) -> None:
    # The run's store served by a running node, named in live.json as run_swarm names it.
    from swarm_actors import ActorSystem

    paths = demo_run.paths
    events = await _events(paths)
    path = _changed_path(events)
    file = run_workspace(paths) / path
    kept = file.read_bytes()
    cluster = Cluster(data_dir=str(paths.journal))
    async with ActorSystem(nats="embedded", cluster=cluster, run_id=paths.run_id) as system:
        assert system.nats_url is not None
        write_live_url(paths.root, system.nats_url)
        try:
            async with open_run_journal(paths) as rj:
                assert rj.live
            result = await revert(_first_change(events, path).sequence, run=paths)
            assert file.read_bytes() == FILES[path].encode()
            await revert(result.changes[0], run=paths)
            assert file.read_bytes() == kept
        finally:
            clear_live_url(paths.root)
    verify_chain(e for _, e in await _events(paths))


def test_the_cli_reverts_and_reports_json(demo_run: Run) -> None:
    events = asyncio.run(_events(demo_run.paths))
    path = _changed_path(events)
    file = run_workspace(demo_run.paths) / path
    kept = file.read_bytes()
    base = [sys.executable, "-m", "swarm_actors._cli", "replay", "revert"]
    where = ["--data-dir", str(demo_run.data), "--run", demo_run.paths.run_id]
    first = _first_change(events, path).sequence
    done = subprocess.run(
        [*base, str(first), *where, "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sequence"] == first
    assert report["files"] == {path: _sha(FILES[path].encode())}
    assert file.read_bytes() == FILES[path].encode()
    back = subprocess.run(
        [*base, str(report["changes"][0]), *where, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert back.returncode == 0, back.stderr
    assert file.read_bytes() == kept
    bad = subprocess.run([*base, "999999", *where], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "replay list" in bad.stderr
    assert not bad.stdout


def test_dependents_follow_a_file_through_its_moves() -> None:
    from swarm_actors.events import ChangeForm, StateChange, new_event
    from swarm_actors.tools import FILE_CHANGE_TYPE, FileChange
    from swarm_actors.tools._record import encode_file_change

    def change(seq: int, op: str, path: str, to: str = "") -> tuple[int, SwarmEvent]:
        data = encode_file_change(FileChange(op=op, path=path, to_path=to))  # type: ignore[arg-type]
        payload = StateChange(form=ChangeForm.DELTA, content_type=FILE_CHANGE_TYPE, data=data)
        return seq, new_event(payload, agent_role="t", agent_id="t", sequence=seq)

    changes = file_changes(
        [
            change(1, "write", "a"),
            change(2, "write", "b"),
            change(3, "move", "a", "c"),
            change(4, "write", "c"),
            change(5, "write", "b"),
            change(6, "write", "a"),
        ]
    )
    assert [r.sequence for r in dependents(changes, 1)] == [1, 3, 4, 6]
    assert [r.sequence for r in dependents(changes, 2)] == [2, 5]


def test_an_inverted_diff_undoes_exactly() -> None:
    from swarm_actors.tools._diff import unified_diff

    cases = [
        ("a\nb\nc\n", "a\nB\nc\nd"),
        ("", "x\n"),
        ("x", ""),
        ("one\rtwo\x0cthree", "one\rTWO\x0cthree\n"),
        ("-- a\n++ b\n", "++ b\n-- c\n"),  # content lines that read like headers in a diff
        ("\n".join(map(str, range(50))) + "\n", "\n".join(map(str, range(1, 52, 2))) + "\n"),
    ]
    for old, new in cases:
        diff = unified_diff(old.splitlines(True), new.splitlines(True), "f")
        assert apply_diff(old.encode(), diff) == new.encode()
        assert apply_diff(new.encode(), invert_diff(diff)) == old.encode()
    with pytest.raises(PatchError):
        apply_diff(b"z\nz\nz\n", invert_diff(unified_diff(["a\n"], ["b\n"], "f")))


@async_test
async def test_a_fork_undoing_later_changes_is_the_workspace_rebuilt_from_events(
    demo_run: Run, tmp_path: Path
) -> None:
    # Two independent ways to the workspace at an event: backwards from the files now (the
    # fork of a run without a snapshot) and forwards from the starting snapshot (checkout).
    from swarm_actors.events import BlobStore

    replay = await load_run(demo_run.paths)
    changes = file_changes([(e.sequence, e.event) for e in replay.entries])
    for n, seq in enumerate({0, changes[0].sequence, changes[len(changes) // 2].sequence}):
        dest = tmp_path / f"fork-{n}"
        fork_workspace(
            run_workspace(demo_run.paths), dest, changes, seq, BlobStore(demo_run.paths.blobs)
        )
        want = replay.files_at(seq)
        for r in changes:
            for path in r.paths:
                got = (dest / path).read_bytes() if (dest / path).is_file() else None
                assert got == want.get(path), (seq, path)


@async_test
async def test_revert_while_the_run_goes_on(tmp_path: Path) -> None:
    # The run is held in its first review (the tests' run waits on a gate), a coder's change
    # in the workspace: the revert goes through the run's own server, then the run ends.
    from swarm_actors.swarm import Toolkit
    from swarm_actors.tools import CheckResult, Checks

    reached, release = asyncio.Event(), asyncio.Event()

    class Held(Toolkit):
        calls = 0

        async def test(self, checks: Checks) -> CheckResult:
            Held.calls += 1
            if Held.calls == 2:  # the first review (the first call is the baseline)
                reached.set()
                await release.wait()
            return await super().test(checks)

    paths = new_run(tmp_path)
    write_sample(paths.workspace)
    config = SwarmConfig(
        workspace=paths.workspace,
        run_dir=paths.root,
        run_id=paths.run_id,
        select=SELECT,
        coders=1,
        journal_dir=paths.journal,
    )
    run = asyncio.create_task(run_swarm(config, toolkit=Held(select=SELECT)))
    try:
        await asyncio.wait_for(reached.wait(), 60)
        async with open_run_journal(paths) as rj:
            assert rj.live
            events = [(e.sequence, e.event) async for e in rj.entries()]
        (change,) = file_changes(events)  # the coder's change under review
        result = await revert(change.sequence, run=paths)
        path = change.change.path
        assert (paths.workspace / path).read_bytes() == FILES[path].encode()
    finally:
        release.set()
        summary = await asyncio.wait_for(run, 120)
    assert summary.tests_after == summary.tests_before
    replay = await load_run(paths)
    assert verify_run(replay).ok  # the run's changes and the revert's, interleaved
    assert result.decision in {e.sequence for e in replay.entries}


@async_test
async def test_two_reverts_at_once_on_a_live_run_take_turns(run_copy: Run) -> None:
    # Both continue the operator's chain: without the run's operator lock they would both
    # continue it from the same event (a fork verify reports). Two files, one revert each.
    from swarm_actors import ActorSystem

    paths = run_copy.paths
    events = await _events(paths)
    firsts: dict[str, Recorded] = {}
    for recorded in file_changes(events):
        if recorded.change.path in FILES:
            firsts.setdefault(recorded.change.path, recorded)
    assert len(firsts) >= 2, "the demo run changed fewer than two sample files"
    (a, first_a), (b, first_b) = list(firsts.items())[:2]
    cluster = Cluster(data_dir=str(paths.journal))
    async with ActorSystem(nats="embedded", cluster=cluster, run_id=paths.run_id) as system:
        assert system.nats_url is not None
        write_live_url(paths.root, system.nats_url)
        try:
            results = await asyncio.gather(
                revert(first_a.sequence, run=paths), revert(first_b.sequence, run=paths)
            )
        finally:
            clear_live_url(paths.root)
    assert all(r.decision for r in results)
    workspace = run_workspace(paths)
    assert (workspace / a).read_bytes() == FILES[a].encode()
    assert (workspace / b).read_bytes() == FILES[b].encode()
    after = await _events(paths)
    operator = [e for _, e in after if e.agent_id == OPERATOR_ID]
    earlier = sum(e.agent_id == OPERATOR_ID for _, e in events)  # other tests' reverts
    assert len(operator) - earlier == sum(1 + len(r.changes) for r in results)
    verify_chain(operator)  # one chain, not two branches of it
    assert verify_run(await load_run(paths)).ok


@async_test
async def test_a_revert_waits_for_the_operator_lock_and_gives_up_with_timeout_error(
    run_copy: Run,
) -> None:
    paths = run_copy.paths
    path = _changed_path(await _events(paths))
    kept = (run_workspace(paths) / path).read_bytes()
    async with operator_lock(paths):
        with pytest.raises(TimeoutError, match=r"another revert of run .* held .*operator\.lock"):
            await revert(
                _first_change(await _events(paths), path).sequence, run=paths, lock_timeout=0.2
            )
    assert (run_workspace(paths) / path).read_bytes() == kept  # nothing was reverted
