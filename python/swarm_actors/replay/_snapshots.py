"""Periodic workspace snapshots: a checkout costs one snapshot plus the tail of the journal.

Every ``SNAPSHOT_EVERY`` workspace changes, the files as they are after that change are stored
in the run's blob store (each file a blob, the list a blob: ``tools.store_snapshot``, the same
format as the run's starting snapshot, so files already stored are not stored again), and the
run's directory gets a small index, ``snapshots.json``: for each, the journal sequence, the
event's id and the list's blob key.

A snapshot is derived, never authoritative: the journal stays the history. ``checkout_run``
trusts one only when the event at its sequence still has its id, and its blobs hash to their
names; else it replays from the start. The index is written by whoever replays a run
(``checkout``, ``verify``), so the first checkout of a long run pays for the fold, and later
ones read the journal from the nearest snapshot on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

from swarm_actors._runjournal import open_run_journal
from swarm_actors._runs import RunPaths, run_dir
from swarm_actors.errors import BlobError, InvalidArgumentError
from swarm_actors.events import BlobStore, JournalEntry
from swarm_actors.replay._load import load_run
from swarm_actors.replay._replay import RunReplay
from swarm_actors.tools import SnapshotFile, WorkspaceSnapshot, load_snapshot, store_snapshot

__all__ = [
    "INDEX_FILE",
    "SNAPSHOT_EVERY",
    "StoredSnapshot",
    "checkout_run",
    "read_index",
    "store_snapshots",
]

SNAPSHOT_EVERY = 1000
"""Workspace changes between two stored snapshots."""

INDEX_FILE = "snapshots.json"
"""The index of a run's stored snapshots, in its directory."""


class StoredSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the workspace stored in the run's blob store."""

    seq: int
    """The journal sequence it is the workspace right after."""
    event_id: str
    """The id of the event at ``seq`` (checked before the snapshot is trusted)."""
    manifest: str
    """Blob key of its file list (a ``WorkspaceSnapshot``)."""
    changes: int
    """Workspace steps folded to get it."""


def read_index(run: RunPaths) -> list[StoredSnapshot]:
    """The run's stored snapshots, by sequence (none if there is no readable index)."""
    try:
        raw = (run.root / INDEX_FILE).read_bytes()
        found = msgspec.json.decode(raw, type=list[StoredSnapshot])
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return []
    return sorted(found, key=lambda s: s.seq)


def _write_index(run: RunPaths, snapshots: Sequence[StoredSnapshot]) -> None:
    tmp = run.root / f".{INDEX_FILE}.{os.getpid()}"
    tmp.write_bytes(msgspec.json.encode(sorted(snapshots, key=lambda s: s.seq)))
    os.replace(tmp, run.root / INDEX_FILE)


def store_snapshots(
    replay: RunReplay, run: RunPaths, *, every: int = SNAPSHOT_EVERY
) -> list[StoredSnapshot]:
    """Store a snapshot every ``every`` workspace changes of ``replay`` (the run ``run``).

    Snapshots already in the index are kept; the index is rewritten with the new ones. Returns
    the whole index. Needs the run's blob store.
    """
    if replay.blobs is None:
        raise InvalidArgumentError(f"run {run.run_id} has no blob store: snapshots go there")
    blobs = replay.blobs
    known = {s.seq: s for s in read_index(run)}
    steps = replay.steps()
    for index in range(every, len(steps) + 1, every):
        seq = steps[index - 1].seq
        if seq in known:
            continue
        files = replay.files_at(seq)
        listing = WorkspaceSnapshot(
            {path: SnapshotFile(blobs.put(data), len(data)) for path, data in sorted(files.items())}
        )
        ref = store_snapshot(listing, blobs)
        known[seq] = StoredSnapshot(
            seq=seq, event_id=steps[index - 1].event.event_id, manifest=ref.manifest, changes=index
        )
    snapshots = sorted(known.values(), key=lambda s: s.seq)
    _write_index(run, snapshots)
    return snapshots


async def _tail(run: RunPaths, nats: str | None, start: int, until: int) -> list[JournalEntry]:
    """The run's entries from journal sequence ``start`` to ``until`` (inclusive)."""
    entries: list[JournalEntry] = []
    async with open_run_journal(run, nats=nats) as rj:
        stream = rj.journal.read(start_sequence=start)
        async with contextlib.aclosing(stream) as entries_read:
            async for entry in entries_read:
                if entry.sequence > until:
                    break
                if entry.event.run_id == run.run_id:
                    entries.append(entry)
    return entries


async def checkout_run(
    run: RunPaths | str | None,
    seq: int,
    to: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    nats: str | None = None,
    store: bool = True,
) -> Path:
    """Write the workspace right after event ``seq`` of ``run`` into ``to``: one snapshot + tail.

    From the nearest stored snapshot at or before ``seq`` (when its event still has its id
    and its blobs are whole), reading the journal from there to ``seq`` only; else from the
    start (``RunReplay.checkout``), and then, with ``store``, stores the run's periodic
    snapshots for the next checkout. Returns ``to``.
    """
    paths = run if isinstance(run, RunPaths) else run_dir(run, data_dir)
    blobs = BlobStore(paths.blobs) if paths.blobs.is_dir() else None
    stored = [s for s in read_index(paths) if s.seq <= seq] if blobs is not None else []
    if stored and blobs is not None:
        base = stored[-1]
        entries = await _tail(paths, nats, base.seq, seq)
        if (
            entries
            and entries[0].sequence == base.seq
            and entries[0].event.event_id == base.event_id
        ):
            try:
                listing = load_snapshot(blobs, base.manifest)
                files = {path: blobs.get(f.sha256) for path, f in listing.files.items()}
            except (BlobError, msgspec.ValidationError, msgspec.DecodeError):
                pass
            else:
                replay = RunReplay(entries, blobs, run_id=paths.run_id, base=(base.seq, files))
                return replay.checkout(seq, to)
    replay = await load_run(paths, nats=nats)
    path = replay.checkout(seq, to)
    if store and blobs is not None and len(replay.steps()) >= SNAPSHOT_EVERY:
        store_snapshots(replay, paths)  # the next checkout starts from one of them
    return path
