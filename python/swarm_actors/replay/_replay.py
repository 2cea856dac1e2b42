"""``RunReplay``: a run's events, read once, and the workspace at any of them.

The workspace after event ``seq`` is a pure function of the run's entries and its blob store:
the run's starting snapshot (``swarm_actors.tools.take_snapshot``, recorded by ``run_swarm``
before any change), then each workspace ``FileChange`` up to ``seq`` in journal order
(``apply_file_change``: the inline diff, or the blob), every before and after content hash
checked on the way. No model is called and nothing is written to the journal.

Folding from the start each time would cost the whole history per checkout; the fold keeps a
copy of the files every ``CHECKPOINT_EVERY`` changes (the dict only: the contents are shared,
immutable ``bytes``), so a checkout costs one checkpoint plus at most that many changes.
"""

from __future__ import annotations

import bisect
import difflib
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from swarm_actors.errors import BlobError, InvalidArgumentError, PatchError, ReplayError
from swarm_actors.events import BlobStore, JournalEntry, StateChange, SwarmEvent
from swarm_actors.replay._patch import apply_file_change
from swarm_actors.replay._timeline import (
    TimelineRow,
    file_change_of,
    filter_rows,
    row_of,
)
from swarm_actors.tools import (
    SNAPSHOT_TYPE,
    FileChange,
    decode_snapshot_ref,
    load_snapshot,
)

__all__ = ["CHECKPOINT_EVERY", "EventDetail", "RunReplay", "WorkspaceStep", "workspace_diff"]

CHECKPOINT_EVERY = 256
"""Changes between two in-memory copies of the files a fold keeps."""

Files = dict[str, bytes]


class EventDetail(msgspec.Struct, frozen=True, kw_only=True):
    """One event in full (``swarm-actors replay show``)."""

    row: TimelineRow
    """Its timeline row."""
    event: SwarmEvent
    """The event itself."""
    change: FileChange | None = None
    """The workspace change it records, if it records one."""
    cause: TimelineRow | None = None
    """The event that caused it (``causation_id``), when it is in the run."""
    diff: str = ""
    """The change as a unified diff: inline, or made from its blobs when both sides are text
    (empty for a binary change, or blobs the store does not have)."""

    def to_builtins(self) -> dict[str, Any]:
        """A JSON-ready dict: the row's fields, ``payload`` (bytes in hex), ``change``, ``cause``.

        ``change`` is the ``FileChange`` (the payload's ``data`` then left out).
        """
        out: dict[str, Any] = msgspec.to_builtins(self.row)
        payload = msgspec.structs.asdict(self.event.payload)
        for key, value in payload.items():
            if isinstance(value, bytes):
                payload[key] = value.hex()
        if self.change is not None:
            payload.pop("data", None)
        out["payload_type"] = type(self.event.payload).__name__
        out["payload"] = msgspec.to_builtins(payload)
        out["span_id"] = self.event.span_id
        out["run_id"] = self.event.run_id
        out["change"] = None if self.change is None else msgspec.to_builtins(self.change)
        out["cause"] = None if self.cause is None else msgspec.to_builtins(self.cause)
        out["diff"] = self.diff
        return out


class WorkspaceStep(msgspec.Struct, frozen=True):
    """One step of a run's workspace: a file change, or a whole snapshot."""

    seq: int
    """Its journal sequence."""
    event: SwarmEvent
    """The ``StateChange`` event recording it."""
    change: FileChange | None
    """The file change (``None`` for a snapshot)."""
    snapshot: str
    """A snapshot's file list (its blob key); empty for a file change."""


def workspace_diff(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> str:
    """A unified diff from ``before`` to ``after`` (``a/``, ``b/`` paths, as git writes them).

    Binary files (not UTF-8, or with NUL bytes) get a ``Binary files ... differ`` line.
    """
    parts: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        parts.append(f"diff --git a/{name} b/{name}\n")
        try:
            old = (a or b"").decode("utf-8").splitlines(keepends=True)
            new = (b or b"").decode("utf-8").splitlines(keepends=True)
            if b"\0" in (a or b"") + (b or b""):
                raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL byte")
        except UnicodeDecodeError:
            parts.append(f"Binary files a/{name} and b/{name} differ\n")
            continue
        lines = difflib.unified_diff(
            old,
            new,
            f"a/{name}" if a is not None else "/dev/null",
            f"b/{name}" if b is not None else "/dev/null",
        )
        parts.extend(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines
        )
    return "".join(parts)


class RunReplay:
    """A run's events (journal entries, in order) and its blob store: replay without a model.

    ``entries`` are the run's (``load_run`` reads them from a run's journal; any sequence of
    ``JournalEntry`` does, e.g. a ``MemoryJournal``'s). ``blobs`` is the run's blob store
    (large and binary contents, the starting snapshot); ``None`` replays inline diffs only.
    ``problems`` are what reading the journal met (gaps, undecodable messages), for
    ``verify``. ``base``: ``(seq, files)``, the workspace right after journal sequence
    ``seq`` (a stored snapshot): the replay starts there and ``entries`` are its tail (see
    ``checkout_run``). Nothing here writes to the journal.
    """

    def __init__(
        self,
        entries: Sequence[JournalEntry],
        blobs: BlobStore | None = None,
        *,
        run_id: str = "",
        problems: Sequence[Any] = (),
        base: tuple[int, Mapping[str, bytes]] | None = None,
    ) -> None:
        self.entries: list[JournalEntry] = sorted(entries, key=lambda e: e.sequence)
        """The run's journal entries, by sequence."""
        self.blobs = blobs
        """The run's blob store (``None``: none)."""
        self.run_id = run_id
        """The run's id (empty if unknown)."""
        self.problems = list(problems)
        """What reading the journal met: gaps and undecodable messages (``verify`` reports)."""
        self._base = base
        self._seqs = [e.sequence for e in self.entries]
        self._rows: list[TimelineRow] | None = None
        self._steps: list[WorkspaceStep] | None = None
        self._step_seqs: list[int] = []
        self._checkpoints: dict[int, Files] = {}  # steps folded -> the files then

    # --- the timeline ------------------------------------------------------------------------

    @property
    def first_seq(self) -> int:
        """The run's first journal sequence (0 for a run without events)."""
        return self._seqs[0] if self._seqs else 0

    @property
    def last_seq(self) -> int:
        """The run's last journal sequence (0 for a run without events)."""
        return self._seqs[-1] if self._seqs else 0

    def rows(self) -> list[TimelineRow]:
        """Every event as a timeline row, in order."""
        if self._rows is None:
            self._rows = [row_of(e) for e in self.entries]
        return self._rows

    def timeline(
        self,
        *,
        agent: str | None = None,
        role: str | None = None,
        kind: str | None = None,
        resource: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[TimelineRow]:
        """The run's timeline, filtered (see ``filter_rows``: shell-style patterns)."""
        return filter_rows(
            self.rows(),
            agent=agent,
            role=role,
            kind=kind,
            resource=resource,
            since_ns=since_ns,
            until_ns=until_ns,
        )

    def entry(self, seq: int) -> JournalEntry:
        """The entry at journal sequence ``seq`` (``InvalidArgumentError`` if not the run's)."""
        i = bisect.bisect_left(self._seqs, seq)
        if i == len(self._seqs) or self._seqs[i] != seq:
            raise InvalidArgumentError(
                f"no event at sequence {seq} in run {self.run_id or '?'}"
                + (
                    f": its events are at {self.first_seq}..{self.last_seq} "
                    "(`swarm-actors replay list` shows them)"
                    if self._seqs
                    else ": it has no events"
                )
            )
        return self.entries[i]

    def show(self, seq: int) -> EventDetail:
        """Event ``seq`` in full: its row, the event, its workspace change, its cause."""
        entry = self.entry(seq)
        event = entry.event
        change = file_change_of(event.payload) if type(event.payload) is StateChange else None
        cause = None
        if event.causation_id:
            cause = next((r for r in self.rows() if r.event_id == event.causation_id), None)
        diff = "" if change is None else change.diff or self._blob_diff(change)
        return EventDetail(row=row_of(entry), event=event, change=change, cause=cause, diff=diff)

    def _blob_diff(self, change: FileChange) -> str:
        """The diff of a change whose contents are in the blob store (``""`` if not text)."""
        if self.blobs is None or not (change.before_blob or change.after_blob):
            return ""
        try:
            before = self.blobs.get(change.before_blob) if change.before_blob else None
            after = self.blobs.get(change.after_blob) if change.after_blob else None
        except BlobError:
            return ""
        old = {change.path: before} if before is not None else {}
        new = {change.to_path or change.path: after} if after is not None else {}
        text = workspace_diff(old, new)
        return "" if "\nBinary files " in text else text

    # --- the workspace -----------------------------------------------------------------------

    def steps(self) -> list[WorkspaceStep]:
        """The run's workspace steps (snapshots and file changes), in journal order."""
        if self._steps is None:
            steps: list[WorkspaceStep] = []
            after = self._base[0] if self._base is not None else -1
            for entry in self.entries:
                if entry.sequence <= after:
                    continue
                change = entry.event.payload
                if type(change) is not StateChange:
                    continue
                if change.content_type == SNAPSHOT_TYPE:
                    try:
                        ref = decode_snapshot_ref(change.data)
                    except (msgspec.ValidationError, msgspec.DecodeError):
                        continue
                    steps.append(WorkspaceStep(entry.sequence, entry.event, None, ref.manifest))
                    continue
                file = file_change_of(change)
                if file is not None:
                    steps.append(WorkspaceStep(entry.sequence, entry.event, file, ""))
            self._steps = steps
            self._step_seqs = [s.seq for s in steps]
        return self._steps

    def _check_seq(self, seq: int) -> None:
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise InvalidArgumentError(f"a sequence is an int >= 0, got {seq!r}")
        if self._base is not None and seq < self._base[0]:
            raise InvalidArgumentError(
                f"this replay of run {self.run_id or '?'} starts after sequence {self._base[0]}"
            )
        if seq > self.last_seq:
            raise InvalidArgumentError(
                f"sequence {seq} is past the end of run {self.run_id or '?'} (its last event "
                f"is {self.last_seq}; 0 is the workspace as the run started)"
            )

    def _baseline(self) -> Files:
        """The files as the run started: its first snapshot (seq 0 and before any change)."""
        if self._base is not None:
            return dict(self._base[1])
        for step in self.steps():
            if step.snapshot:
                return self._apply(step, {}, {})
            break
        return {}

    def _apply(self, step: WorkspaceStep, files: Files, hashes: dict[str, str]) -> Files:
        """``files`` after ``step`` (modified in place for a change; a new dict for a snapshot).

        ``hashes`` holds the SHA-256 of contents already hashed (see ``apply_file_change``).
        """
        try:
            if step.snapshot:
                if self.blobs is None:
                    raise PatchError("a snapshot needs the run's blob store, and none was given")
                snapshot = load_snapshot(self.blobs, step.snapshot)
                hashes.clear()
                hashes.update((path, f.sha256) for path, f in snapshot.files.items())
                return {path: self.blobs.get(f.sha256) for path, f in snapshot.files.items()}
            assert step.change is not None
            apply_file_change(files, step.change, self.blobs, hashes=hashes)
            return files
        except (PatchError, BlobError, msgspec.ValidationError, msgspec.DecodeError) as exc:
            where = f"sequence {step.seq} ({step.event.agent_id}, event {step.event.event_id})"
            raise ReplayError(
                f"cannot rebuild the workspace at {where}: {exc} (`swarm-actors replay "
                "verify` names the first broken link)",
                sequence=step.seq,
            ) from exc

    def files_at(self, seq: int | None = None) -> dict[str, bytes]:
        """The workspace right after event ``seq``: relative path -> content.

        ``0`` (or any sequence before the first change) is the workspace as the run started;
        ``None`` is after the last event. ``ReplayError`` if a change does not fit the files
        (a broken history), ``InvalidArgumentError`` for a sequence outside the run.
        """
        if seq is None:
            seq = self.last_seq
        self._check_seq(seq)
        steps = self.steps()
        target = bisect.bisect_right(self._step_seqs, seq)  # steps to fold
        done = max((k for k in self._checkpoints if k <= target), default=-1)
        if done < 0:
            files, done = self._baseline(), 0
            if self._base is None and steps and steps[0].snapshot:
                done = 1
            self._checkpoints[done] = dict(files)
        else:
            files = dict(self._checkpoints[done])
        hashes: dict[str, str] = {}  # filled as the fold hashes files
        for index in range(done, target):
            files = self._apply(steps[index], files, hashes)
            if (index + 1) % CHECKPOINT_EVERY == 0:
                self._checkpoints[index + 1] = dict(files)
        return files

    def checkout(self, seq: int | None, to: str | os.PathLike[str]) -> Path:
        """Write the workspace as it was right after event ``seq`` into ``to``; the path.

        ``to`` must not exist or be an empty directory (nothing is overwritten).
        """
        files = self.files_at(seq)
        dest = Path(to)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise InvalidArgumentError(
                f"{dest} exists and is not an empty directory: check out into a new one"
            )
        modes = self._modes()
        for path, content in files.items():
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            if modes.get(path):
                target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        dest.mkdir(parents=True, exist_ok=True)
        return dest

    def _modes(self) -> dict[str, bool]:
        """Execute bits of the starting files (changes keep a file's mode)."""
        steps = self.steps()
        if not steps or not steps[0].snapshot or self.blobs is None:
            return {}
        try:
            snapshot = load_snapshot(self.blobs, steps[0].snapshot)
        except (BlobError, msgspec.ValidationError, msgspec.DecodeError):
            return {}
        return {path: f.executable for path, f in snapshot.files.items()}

    def diff(self, a: int, b: int | None = None) -> str:
        """What changed in the workspace from right after event ``a`` to right after ``b``."""
        return workspace_diff(self.files_at(a), self.files_at(b))
