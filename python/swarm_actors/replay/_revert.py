"""``revert``: undo a workspace change, and every later change that depends on it, as new events.

History is never rewritten: the revert is an ``AgentDecision`` of the ``operator`` agent (what
was reverted and why, citing the undone changes' event ids) followed by one ``StateChange`` per
file it restores, made through ``swarm_actors.tools.Workspace`` so that they are ordinary
``FileChange`` records in the operator's own hash chain. A revert can itself be reverted (its
changes are changes like any other).

What depends on a change: every later change to a file it touched, transitively (a later move
of the file brings its destination in, and the changes to that after the move). Each touched
file is restored to what it was just before the change; changes to other files stay.

A change marked irreversible (``StateChange.is_reversible`` false: the ``Workspace`` marks so a
binary or large change made without a blob store, whose old content it did not keep) stops
the revert before anything is written: ``IrreversibleChangeError`` names it. The workspace's
files must be what the journal last recorded for them (else ``ReplayError`` names the change
whose content is not there): a file edited outside the journal is never overwritten.

The run's journal is opened for writing as ``open_run_journal`` finds it: the live run's own
server while it goes on, else a private server on its store.

Reverts of one run take turns: each continues the operator's chain from its last event, so two
at once would both continue it from the same one (a fork that ``verify`` reports). A revert
holds ``operator.lock`` in the run's directory (``fcntl.flock``) from reading the journal until
its events are stored; another waits for it, up to ``lock_timeout`` seconds. Reverts of one
run made from different machines (a run on a server of your own, ``nats``) do not see each
other's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec

from swarm_actors._exceptions import (
    InvalidArgumentError,
    IrreversibleChangeError,
    NoSuchFileError,
    ReplayError,
)
from swarm_actors._log import get_logger
from swarm_actors._runjournal import open_run_journal
from swarm_actors._runs import RunPaths, run_dir
from swarm_actors.events import (
    AgentDecision,
    BlobStore,
    JournalEntry,
    Payload,
    StateChange,
    SwarmEvent,
)
from swarm_actors.replay._load import read_run_entries
from swarm_actors.replay._undo import Recorded, file_changes, rewind
from swarm_actors.tools import JournalRecorder, Workspace, sha256_hex

__all__ = ["OPERATOR_ID", "OPERATOR_ROLE", "RevertResult", "dependents", "revert", "run_workspace"]

log = get_logger("swarm_actors.replay")

OPERATOR_ROLE = "operator"
"""The role of the agent that records reverts: a person or a tool acting on the run."""
OPERATOR_ID = "/operator"
"""The id of that agent (one hash chain per run, continued by each revert)."""
LOCK_FILE = "operator.lock"
"""In the run's directory: held by the revert continuing the operator's chain."""


@contextlib.asynccontextmanager
async def operator_lock(run: RunPaths, *, timeout: float = 60.0) -> AsyncIterator[None]:
    """Hold ``run``'s operator lock (one revert at a time); ``TimeoutError`` after ``timeout`` s.

    Polled without blocking (every 20 ms) rather than waited for in a thread: a cancelled
    revert must not leave a thread behind that takes the lock later and never lets it go.
    """
    run.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(run.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"another revert of run {run.run_id} held {run.root / LOCK_FILE} for "
                        f"{timeout:g} s: nothing was reverted; try again when it is done"
                    ) from None
                await asyncio.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class RevertResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a revert undid and the events it appended."""

    run_id: str
    """The run."""
    sequence: int
    """The change asked to be reverted (its journal sequence)."""
    undone: tuple[int, ...]
    """The changes undone, in journal order: ``sequence`` and the later ones depending on it."""
    files: dict[str, str]
    """Each file restored, to the SHA-256 hex of its content now (``""``: no file)."""
    decision: int = 0
    """The journal sequence of the operator's decision (0: nothing was written)."""
    changes: tuple[int, ...] = ()
    """The journal sequences of the new state changes, one per file written or deleted."""
    dry_run: bool = False
    """Nothing was written: the revert was only planned."""


def run_workspace(run: RunPaths) -> Path:
    """The directory the run's file changes are relative to.

    ``summary.json``'s ``workspace`` when the run wrote one (a worktree of a subdirectory is
    below the run's ``workspace/``), else ``DATA/runs/<id>/workspace``.
    """
    try:
        recorded = json.loads(run.summary.read_text()).get("workspace")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, str) and Path(recorded).is_dir():
        return Path(recorded)
    return run.workspace


def dependents(changes: Sequence[Recorded], sequence: int) -> list[Recorded]:
    """The change at ``sequence`` and every later change to a file it touched, transitively."""
    found: list[Recorded] = []
    touched: set[str] = set()
    for recorded in changes:
        if recorded.sequence < sequence:
            continue
        if recorded.sequence == sequence or touched.intersection(recorded.paths):
            found.append(recorded)
            touched.update(recorded.paths)
    return found


def _target(entries: Sequence[JournalEntry], changes: Sequence[Recorded], sequence: int) -> None:
    if any(r.sequence == sequence for r in changes):
        return
    for entry in entries:
        if entry.sequence == sequence:
            payload = entry.event.payload
            what = (
                f"a state change of content type {payload.content_type or 'none'} (a snapshot, "
                "an agent's own state)"
                if isinstance(payload, StateChange)
                else f"a {type(payload).__name__}"
            )
            raise InvalidArgumentError(
                f"event {sequence} is {what}, not a workspace file change: revert a file "
                "change (`swarm-actors replay list --kind state_change`)"
            )
    span = f"{entries[0].sequence}..{entries[-1].sequence}" if entries else "none"
    raise InvalidArgumentError(
        f"the run has no event {sequence} (its events: {span}): pick one from "
        "`swarm-actors replay list`"
    )


def _operator_chain(entries: Sequence[JournalEntry]) -> tuple[int, bytes]:
    """Where the operator's chain stands in this run: its last sequence and state hash."""
    sequence, head = 0, b""
    for entry in entries:
        event = entry.event
        if event.agent_id == OPERATOR_ID:
            sequence = event.sequence
            if isinstance(event.payload, StateChange):
                head = event.payload.hash
    return sequence, head


class _Keeping:
    """An ``EventRecorder`` that keeps the events it recorded (to find their sequences)."""

    def __init__(self, inner: JournalRecorder) -> None:
        self.inner = inner
        self.events: list[SwarmEvent] = []

    def record(self, payload: Payload) -> SwarmEvent:
        event = self.inner.record(payload)
        self.events.append(event)
        return event


async def _read(workspace: Workspace, path: str) -> bytes | None:
    try:
        return await workspace.read(path)
    except NoSuchFileError:
        return None


async def revert(
    sequence: int,
    *,
    run: str | RunPaths | None = None,
    data_dir: str | Path | None = None,
    nats: str | None = None,
    reason: str = "",
    dry_run: bool = False,
    lock_timeout: float = 60.0,
) -> RevertResult:
    """Undo the file change at journal ``sequence`` of ``run`` and the changes depending on it.

    ``run``: a ``RunPaths``, or an id / prefix / path / ``None`` (latest) under ``data_dir``;
    ``nats``: the URL of the server holding a run recorded on a server of your own. ``reason``
    goes into the operator's decision. ``dry_run`` plans it and writes nothing.
    ``lock_timeout``: how long to wait for another revert of the run to finish (see the module
    docstring) before ``TimeoutError``.

    Raises ``InvalidArgumentError`` (no such event, or not a file change),
    ``IrreversibleChangeError`` (a change to undo is marked irreversible: nothing is written),
    ``ReplayError`` (a file is not what the journal recorded last, a diff does not undo, or
    the journal lost events). On a live run, a file an agent changes between the revert's
    read and its write is overwritten, the agent's change then undone in the journal too.
    """
    paths = run if isinstance(run, RunPaths) else run_dir(run, data_dir)
    lock = contextlib.nullcontext() if dry_run else operator_lock(paths, timeout=lock_timeout)
    async with lock, open_run_journal(paths, nats=nats) as rj:
        entries, problems = await read_run_entries(rj.journal, paths.run_id)
        if problems:  # a change may be missing: what depends on what cannot be known
            raise ReplayError(
                f"run {paths.run_id}'s journal is damaged ({problems[0].message}): nothing "
                "was reverted (`swarm-actors replay verify` says where)",
                sequence=problems[0].first,
            )
        changes = file_changes([(e.sequence, e.event) for e in entries])
        _target(entries, changes, sequence)
        undo = dependents(changes, sequence)
        blobs = BlobStore(paths.blobs)
        workspace = Workspace(run_workspace(paths), blobs=blobs)
        try:
            touched = {p for r in undo for p in r.paths}
            now = {p: await _read(workspace, p) for p in sorted(touched)}
            try:
                state = rewind(undo, now.__getitem__, blobs)
            except IrreversibleChangeError as exc:
                raise IrreversibleChangeError(
                    f"cannot revert {sequence}: {exc}. Nothing was changed; revert a change "
                    f"after {exc.sequence} instead, or restore the file by hand",
                    sequence=exc.sequence,
                    path=exc.path,
                ) from None
            writes = {p: c for p, c in state.items() if c != now[p]}
            result = RevertResult(
                run_id=paths.run_id,
                sequence=sequence,
                undone=tuple(r.sequence for r in undo),
                files={p: sha256_hex(c) for p, c in state.items()},
                dry_run=dry_run,
            )
            if dry_run or not writes:
                return result
            op_sequence, head = _operator_chain(entries)
            recorder = _Keeping(
                JournalRecorder(
                    rj.journal,
                    role=OPERATOR_ROLE,
                    agent_id=OPERATOR_ID,
                    sequence=op_sequence,
                    head=head,
                    run_id=paths.run_id,
                )
            )
            workspace.recorder = recorder
            undone = ", ".join(str(r.sequence) for r in undo)
            decision = recorder.record(
                AgentDecision(
                    input_trigger=f"revert {sequence}",
                    choice=f"revert {sequence}"
                    + (f" and its {len(undo) - 1} dependent changes" if len(undo) > 1 else ""),
                    rationale=(reason or "asked by the operator")
                    + f"; undoes changes {undone}, restoring {', '.join(sorted(writes))}",
                    memory_ids=tuple(r.event.event_id for r in undo),
                    confidence_score=1.0,
                )
            )
            recorder.inner.causation_id = decision.event_id  # each change follows from it
            for path, content in sorted(writes.items()):
                if content is None:
                    await workspace.delete(path)
                else:
                    await workspace.write(path, content)
        finally:
            workspace.close()
        await rj.journal.flush()
        wanted = {e.event_id for e in recorder.events}
        found = {
            e.event.event_id: e.sequence
            async for e in rj.entries(start_sequence=entries[-1].sequence + 1 if entries else 1)
            if e.event.event_id in wanted
        }
    sequences = [found.get(e.event_id, 0) for e in recorder.events]
    log.info("reverted", run_id=paths.run_id, sequence=sequence, undone=result.undone)
    return msgspec.structs.replace(result, decision=sequences[0], changes=tuple(sequences[1:]))
