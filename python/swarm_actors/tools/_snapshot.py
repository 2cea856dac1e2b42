"""Workspace snapshots: every file of a workspace, content-addressed in a blob store.

A run records its workspace as it starts (``record_snapshot``) so that a replay can rebuild
the workspace byte for byte at any later event: the snapshot, then each ``FileChange`` in
journal order. The files' contents go to the run's ``BlobStore`` (stored once, by SHA-256),
their list (a ``WorkspaceSnapshot``, msgpack) is a blob too, and the event is small whatever
the workspace's size: a ``StateChange`` (``FILE_SYSTEM``, ``form=SNAPSHOT``, ``content_type``
``SNAPSHOT_TYPE``) whose ``data`` is a ``SnapshotRef`` naming the list's digest. The event's
hash covers the digest, the digest covers the list, and the list covers every file: the
chain of trust of a ``FileChange`` extends to the starting files.

What a snapshot holds: regular files under the root, except version control, virtualenvs
and caches (``SNAPSHOT_SKIP``: the names ``swarm-actors demo`` never copies either), compiled
Python files and a ``Workspace``'s temporary files. Symbolic links and special files are left
out (a workspace changes regular files only).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

import msgspec

from swarm_actors._events._blobs import BlobStore
from swarm_actors._events._schema import ChangeForm, StateChange
from swarm_actors.tools._record import FILE_SYSTEM

__all__ = [
    "SNAPSHOT_SKIP",
    "SNAPSHOT_TYPE",
    "SnapshotFile",
    "SnapshotRef",
    "WorkspaceSnapshot",
    "decode_snapshot_ref",
    "load_snapshot",
    "snapshot_change",
    "store_snapshot",
    "take_snapshot",
]

SNAPSHOT_TYPE: Final = "application/vnd.swarm-actors.workspace-snapshot+msgpack"
"""``StateChange.content_type`` of a workspace snapshot: ``data`` is a ``SnapshotRef``."""

SNAPSHOT_SKIP: Final = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        ".eggs",
        "node_modules",
        ".DS_Store",
    }
)
"""Names (of files or directories, at any depth) a snapshot leaves out."""

_SKIP_SUFFIXES = (".pyc", ".pyo", ".swarm-tmp")


class SnapshotFile(msgspec.Struct, frozen=True, array_like=True):
    """One file of a snapshot: its content's SHA-256 (its blob's key), size, and exec bit."""

    sha256: str
    """SHA-256 hex of the content: the key of its blob."""
    size: int
    """Size in bytes."""
    executable: bool = False
    """Whether the owner's execute bit was set."""


class WorkspaceSnapshot(msgspec.Struct, frozen=True):
    """Every file of a workspace: relative path (``/``-separated) -> ``SnapshotFile``."""

    files: dict[str, SnapshotFile]
    """The files, sorted by path."""


class SnapshotRef(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot event's ``data``: where its file list is, and what it amounts to."""

    manifest: str
    """Blob key of the msgpack ``WorkspaceSnapshot``."""
    files: int
    """How many files."""
    size: int
    """Their total size in bytes."""


_encode = msgspec.msgpack.Encoder().encode
_decode_snapshot = msgspec.msgpack.Decoder(WorkspaceSnapshot).decode
_decode_ref = msgspec.msgpack.Decoder(SnapshotRef).decode


def _skipped(name: str) -> bool:
    return name in SNAPSHOT_SKIP or name.endswith(_SKIP_SUFFIXES)


def take_snapshot(root: str | os.PathLike[str], blobs: BlobStore) -> WorkspaceSnapshot:
    """The files under ``root`` (see the module docstring), each stored in ``blobs``.

    Synchronous (it reads every file): from a coroutine, call it through ``asyncio.to_thread``.
    """
    base = Path(root)
    files: dict[str, SnapshotFile] = {}
    stack = [""]
    while stack:
        relative = stack.pop()
        with os.scandir(base / relative if relative else base) as entries:
            for entry in entries:
                if _skipped(entry.name):
                    continue
                path = f"{relative}/{entry.name}" if relative else entry.name
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    stack.append(path)
                elif stat.S_ISREG(info.st_mode):
                    data = Path(entry.path).read_bytes()
                    files[path] = SnapshotFile(
                        blobs.put(data), len(data), bool(info.st_mode & stat.S_IXUSR)
                    )
    return WorkspaceSnapshot(dict(sorted(files.items())))


def store_snapshot(snapshot: WorkspaceSnapshot, blobs: BlobStore) -> SnapshotRef:
    """Store ``snapshot``'s file list in ``blobs`` (its files must be there); its reference."""
    return SnapshotRef(
        manifest=blobs.put(_encode(snapshot)),
        files=len(snapshot.files),
        size=sum(f.size for f in snapshot.files.values()),
    )


def snapshot_change(ref: SnapshotRef) -> StateChange:
    """The ``StateChange`` payload recording a stored snapshot (to hand to a recorder)."""
    return StateChange(
        target_type=FILE_SYSTEM,
        target_resource=".",
        data=_encode(ref),
        is_reversible=True,
        form=ChangeForm.SNAPSHOT,
        content_type=SNAPSHOT_TYPE,
    )


def decode_snapshot_ref(data: bytes) -> SnapshotRef:
    """The ``SnapshotRef`` in a snapshot event's ``data`` (``msgspec`` errors for other bytes)."""
    return _decode_ref(data)


def load_snapshot(blobs: BlobStore, manifest: str) -> WorkspaceSnapshot:
    """The ``WorkspaceSnapshot`` stored under ``manifest`` (blob errors if missing or damaged)."""
    return _decode_snapshot(blobs.get(manifest))
