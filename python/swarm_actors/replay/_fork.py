"""New runs from an old one: ``rerun`` (brains called again) and ``replay_run`` (no model).

``rerun`` forks at an event and calls the brains again; ``replay_run`` re-executes the run
from its start with the recorded answers: no model call.

Both start from the old run's workspace as it was right after an event, in a new run under
the same data directory: ``RunReplay.checkout`` (the run's starting snapshot and its changes)
when the run recorded a snapshot, else ``fork_workspace`` (a copy of its workspace now, every
later change undone and checked by content hash). The new run's ``summary.json`` says where
it came from (``forked_from``: run and sequence; ``replay_of``: the run replayed).

A replay compares its outcome with the recording: the last content hash the journal recorded
for each file, in the old run and in the new one (``ReplayOutcome.identical``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._runs import RunPaths, new_run, resolve_data_dir, run_dir
from swarm_actors.brains import Brain
from swarm_actors.events import BlobStore, JournalEntry, ToolRun
from swarm_actors.replay._load import load_run
from swarm_actors.replay._replay import RunReplay
from swarm_actors.replay._replaybrain import RunReplayBrain
from swarm_actors.replay._revert import OPERATOR_ROLE, run_workspace
from swarm_actors.replay._undo import Recorded, file_changes, rewind
from swarm_actors.swarm import Progress, SwarmConfig, SwarmSummary, run_swarm
from swarm_actors.tools import sha256_hex

__all__ = [
    "ReplayOutcome",
    "final_hashes",
    "fork_workspace",
    "recorded_tools",
    "replay_run",
    "rerun",
]

_SKIP = shutil.ignore_patterns(
    ".git", "__pycache__", "*.py[co]", ".pytest_cache", ".ruff_cache", ".mypy_cache", "*.swarm-tmp"
)


def final_hashes(changes: Sequence[Recorded]) -> dict[str, str]:
    """Each file the changes touched, to the SHA-256 hex the last of them left (``""``: none)."""
    found: dict[str, str] = {}
    for r in changes:
        c = r.change
        if c.op == "move":
            found[c.path] = ""
            found[c.to_path] = c.after_sha256
        else:
            found[c.path] = c.after_sha256
    return found


def _read(root: Path, path: str) -> bytes | None:
    target = root / path
    return target.read_bytes() if target.is_file() and not target.is_symlink() else None


def fork_workspace(
    source: Path, dest: Path, changes: Sequence[Recorded], sequence: int, blobs: BlobStore
) -> dict[str, bytes | None]:
    """Copy the workspace ``source`` to the new ``dest`` as it was right after ``sequence``.

    The copy leaves out version control and caches; every change after ``sequence`` is undone
    in it (``ReplayError`` if a file is not what the journal recorded last). The files set.
    """
    shutil.copytree(source, dest, ignore=_SKIP, symlinks=True)
    later = [r for r in changes if r.sequence > sequence]
    state = rewind(later, lambda p: _read(dest, p), blobs)
    for path, content in state.items():
        target = dest / path
        if content is None:
            if target.is_file() or target.is_symlink():
                target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return state


async def _load(run: RunPaths, nats: str | None) -> RunReplay:
    return await load_run(run, nats=nats)


def recorded_tools(
    entries: Sequence[JournalEntry],
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """How the run ran its tools, from its ``ToolRun`` events: the test command and the rules.

    The test command is the first ``tests`` run's ``argv`` (``None`` if its program is not
    here: the replay detects one); the rules, the ``--select`` of the first whole-workspace
    ``ruff`` run (``None``: the project's own configuration).
    """
    test_cmd: tuple[str, ...] | None = None
    select: tuple[str, ...] | None = None
    seen_tests = seen_ruff = False
    for entry in entries:
        run = entry.event.payload
        if not isinstance(run, ToolRun):
            continue
        if run.tool == "tests" and not seen_tests:
            seen_tests = True
            program = run.argv[0] if run.argv else ""
            if program and (shutil.which(program) or Path(program).is_file()):
                test_cmd = tuple(run.argv)
        elif run.tool == "ruff" and not seen_ruff and run.argv and run.argv[-1] == ".":
            seen_ruff = True
            argv = list(run.argv)
            if "--select" in argv[:-1]:
                select = tuple(argv[argv.index("--select") + 1].split(","))
    return test_cmd, select


def _coders(entries: Sequence[JournalEntry]) -> int:
    return max(len({e.event.agent_id for e in entries if e.event.agent_role == "coder"}), 1)


def _write_summary(run: RunPaths, summary: SwarmSummary, data_dir: Path, **extra: object) -> None:
    report = summary.to_json()
    report.update(
        run_dir=str(run.root), workspace=str(run.workspace), data_dir=str(data_dir), **extra
    )
    run.summary.write_text(json.dumps(report, indent=2) + "\n")


async def _fork_run(
    source: RunPaths,
    replay: RunReplay,
    sequence: int,
    data_dir: Path,
    run_id: str | None,
) -> tuple[RunPaths, list[Recorded]]:
    """A new run whose workspace is ``source``'s right after ``sequence``; and its changes.

    Rebuilt from the events alone when the run recorded its starting workspace (a snapshot),
    else from the run's workspace now, the later changes undone.
    """
    last = replay.last_seq
    if not 0 <= sequence <= last:
        raise InvalidArgumentError(
            f"run {source.run_id} has events 1..{last}: fork at one of them (0: its start)"
        )
    changes = file_changes([(e.sequence, e.event) for e in replay.entries])
    new = new_run(data_dir, run_id)
    steps = replay.steps()
    if steps and steps[0].snapshot:
        replay.checkout(sequence, new.workspace)
    else:
        blobs = BlobStore(source.blobs)
        fork_workspace(run_workspace(source), new.workspace, changes, sequence, blobs)
    return new, changes


async def rerun(
    sequence: int,
    *,
    run: str | RunPaths | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    nats: str | None = None,
    brain: Brain | None = None,
    coders: int | None = None,
    test_cmd: Sequence[str] | None = None,
    select: Sequence[str] | None = None,
    new_run_id: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[RunPaths, SwarmSummary]:
    """Fork a new run from ``run``'s workspace right after event ``sequence`` and run the swarm.

    Unlike a replay, the brains are called again: ``brain`` (``None``: the deterministic
    rules). ``coders`` defaults to the old run's, ``test_cmd`` and ``select`` to how it ran its
    tools (``recorded_tools``). The new run is under the same data
    directory (``latest`` points at it); its ``summary.json`` holds ``forked_from``.
    """
    data = resolve_data_dir(data_dir)
    source = run if isinstance(run, RunPaths) else run_dir(run, data)
    replay = await _load(source, nats)
    new, _ = await _fork_run(source, replay, sequence, data, new_run_id)
    run_tests, run_rules = recorded_tools(replay.entries)
    config = SwarmConfig(
        workspace=new.workspace,
        run_dir=new.root,
        run_id=new.run_id,
        coders=coders or _coders(replay.entries),
        brain=brain,
        test_cmd=test_cmd if test_cmd is not None else run_tests,
        select=select if select is not None else run_rules,
        journal_dir=new.journal,
    )
    summary = await run_swarm(config, on_progress=on_progress)
    forked = {"run": source.run_id, "sequence": sequence}
    _write_summary(new, summary, data, source="fork", forked_from=forked)
    return new, summary


@dataclass(frozen=True)
class ReplayOutcome:
    """A replayed run, and how its outcome compares with the recording."""

    run: RunPaths
    """The new run (the replay)."""
    summary: SwarmSummary
    """How it ended."""
    replay_of: str
    """The run replayed."""
    answers: int
    """Model answers served from the recording (none from a model)."""
    identical: bool
    """Every file's last recorded content hash is the same in both runs, and on disk."""
    differences: tuple[str, ...]
    """The files whose outcome differs."""
    seconds: float
    """Wall time of the replay."""


async def replay_run(
    *,
    run: str | RunPaths | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    nats: str | None = None,
    test_cmd: Sequence[str] | None = None,
    select: Sequence[str] | None = None,
    new_run_id: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> ReplayOutcome:
    """Re-execute ``run``'s swarm from its start with its recorded model answers.

    The brain is a ``RunReplayBrain`` over the run's ``ModelCall`` events and blobs (a run of
    the deterministic rules recorded none: they run again, also without a model). The tools
    (linter, tests) run again, as the run ran them (``recorded_tools``) unless ``test_cmd`` /
    ``select`` say otherwise. The replay is a new run under the same data directory; its
    ``summary.json`` holds ``replay_of``.
    """
    started = time.perf_counter()
    data = resolve_data_dir(data_dir)
    source = run if isinstance(run, RunPaths) else run_dir(run, data)
    replay = await _load(source, nats)
    brain = RunReplayBrain.from_events((e.event for e in replay.entries), BlobStore(source.blobs))
    run_tests, run_rules = recorded_tools(replay.entries)
    new, changes = await _fork_run(source, replay, 0, data, new_run_id)
    config = SwarmConfig(
        workspace=new.workspace,
        run_dir=new.root,
        run_id=new.run_id,
        coders=_coders(replay.entries),
        brain=brain if brain.recorded else None,
        test_cmd=test_cmd if test_cmd is not None else run_tests,
        select=select if select is not None else run_rules,
        journal_dir=new.journal,
    )
    summary = await run_swarm(config, on_progress=on_progress)
    # The swarm's outcome, not a later revert's: the operator's changes are left out.
    swarm_changes = [r for r in changes if r.event.agent_role != OPERATOR_ROLE]
    expected = final_hashes(swarm_changes)
    replayed = await _load(new, None)
    got = final_hashes(file_changes([(e.sequence, e.event) for e in replayed.entries]))
    # A file the replay changed and the run did not must be as the run started.
    steps = replay.steps()
    start = replay.files_at(0) if steps and steps[0].snapshot else None
    source_root = run_workspace(source)
    differences = []
    for path in sorted(expected.keys() | got.keys()):
        if path in expected:
            want = expected[path]
        else:
            want = sha256_hex(start.get(path) if start is not None else _read(source_root, path))
        have = sha256_hex(_read(new.workspace, path))
        if have != want or got.get(path, have) != have:
            differences.append(path)
    _write_summary(new, summary, data, source="replay", replay_of=source.run_id)
    return ReplayOutcome(
        run=new,
        summary=summary,
        replay_of=source.run_id,
        answers=brain.calls,
        identical=not differences,
        differences=tuple(differences),
        seconds=time.perf_counter() - started,
    )
