"""``Workspace``: a file system confined to one root, with atomic writes that are events.

Every path is walked from the root by ``_confine.locate`` (see there what is guaranteed).
Reads and writes touch regular files only. A write goes to a temporary file in the same
directory (``.<name>.<random>.swarm-tmp``), is flushed to disk (``fsync``), renamed over the
target and the directory is flushed too: a reader sees the old file or the new one, and a
crash never leaves half a file (at worst a temporary file the next write does not mind). A
write that fails, or is interrupted by an exception, removes its temporary file.

File work runs in a worker thread (``asyncio.to_thread``), so the event loop never waits
on a disk. Each change becomes a ``StateChange`` event (``FILE_SYSTEM``, the path relative to
the root, a ``FileChange`` in ``data``) recorded on the event loop once the change is on disk,
even when the awaiting task was cancelled meanwhile (the change happened, so its event does).
"""

from __future__ import annotations

import asyncio
import builtins
import os
import secrets
import stat
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Final, Literal

import msgspec

from swarm_actors._events._blobs import BlobStore
from swarm_actors._events._journal import Journal
from swarm_actors._events._schema import ChangeForm, StateChange
from swarm_actors._exceptions import (
    FileConflictError,
    FileTooLargeError,
    InvalidArgumentError,
    NoSuchFileError,
    SpecialFileError,
)
from swarm_actors._log import get_logger
from swarm_actors.tools._confine import Located, locate, open_root
from swarm_actors.tools._diff import is_text, sha256_hex, unified_diff
from swarm_actors.tools._record import (
    FILE_CHANGE_TYPE,
    FILE_SYSTEM,
    EventRecorder,
    FileChange,
    JournalRecorder,
    encode_file_change,
)

__all__ = ["Entry", "Workspace"]

log = get_logger("swarm_actors.tools")

TEMP_SUFFIX: Final = ".swarm-tmp"
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class Entry(msgspec.Struct, frozen=True):
    """One directory entry, as ``Workspace.list`` reports it (links are not followed)."""

    name: str
    """The entry's name in its directory."""
    kind: Literal["file", "dir", "symlink", "other"]
    """Regular file, directory, symbolic link, or anything else (device, FIFO, socket)."""
    size: int
    """Size in bytes (of the link itself for a link)."""


class _Plan(msgspec.Struct):
    """What a finished operation did, and why its event was not recorded (if it was not)."""

    change: FileChange
    reversible: bool
    error: Exception | None = None


class Workspace:
    """A directory tree the swarm may change: confined, atomic, and every change an event.

    ``root`` must be an existing directory (not in ``/proc``, ``/sys`` or ``/dev``). Paths
    are relative to it; anything that would lead outside raises ``PathEscapeError``. Reads
    and writes over ``max_file_size`` bytes raise ``FileTooLargeError``; a device, FIFO,
    socket or directory where a file is needed, ``SpecialFileError``.

    Events: pass ``recorder`` (an ``EventRecorder``, e.g. one recording as the owning actor)
    or ``journal`` (a ``JournalRecorder`` is made for ``agent_id`` in role ``role``). Without
    either, nothing is recorded. A text change with both sides under ``inline_limit`` bytes
    carries its unified diff; binary or larger contents go to ``blobs`` (stored once, by
    content) and the event holds their keys. ``is_reversible`` says whether the event (with
    its blobs) is enough to undo the change: always for creations, diffs and stored blobs,
    not for a binary or large change made without ``blobs``.

    ``durable=False`` skips the ``fsync`` calls: a write stays atomic for readers and against
    a crash of the process, but a crash of the machine may lose it (scratch workspaces).

    A recorder that refuses an event (a closed journal...) makes the operation raise its
    error, though the change is made: it is on disk before its event is recorded.

    Hard links are regular files: a file hard-linked from outside the root reads as its
    content (a write replaces the link in the root, never the outside file).

    The root's descriptor is held open: ``close()`` it (or use ``with``), else it is closed
    when the workspace is garbage-collected.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        recorder: EventRecorder | None = None,
        journal: Journal | None = None,
        role: str = "tools",
        agent_id: str = "/tools/workspace",
        blobs: BlobStore | None = None,
        max_file_size: int = 16 << 20,
        inline_limit: int = 64 << 10,
        durable: bool = True,
    ) -> None:
        if recorder is not None and journal is not None:
            raise InvalidArgumentError("pass recorder= or journal=, not both")
        for name, value in (("max_file_size", max_file_size), ("inline_limit", inline_limit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name} must be an int >= 0, got {value!r}")
        self.root, self._fd, self._dev = open_root(root)
        self._closer = weakref.finalize(self, os.close, self._fd)
        if journal is not None:
            recorder = JournalRecorder(journal, role=role, agent_id=agent_id)
        self.recorder = recorder
        """Where this workspace's events go (``None``: not recorded)."""
        self.blobs = blobs
        """Where binary or large contents are stored (``None``: not stored)."""
        self.max_file_size = max_file_size
        """Largest file, in bytes, read or written."""
        self.inline_limit = inline_limit
        """Largest text, in bytes, whose diff goes inline in an event."""
        self.durable = durable
        """Whether changes are flushed to disk (``fsync``) before they count as done."""

    def close(self) -> None:
        """Close the root's descriptor; the workspace cannot be used afterwards."""
        self._closer()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({self.root!r})"

    # --- public API ----------------------------------------------------------------------

    async def read(self, path: str | os.PathLike[str]) -> bytes:
        """The content of the file at ``path``."""
        return await asyncio.to_thread(self._read, path)

    async def read_text(self, path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
        """The content of the text file at ``path``, decoded (``UnicodeDecodeError`` if not)."""
        return (await self.read(path)).decode(encoding)

    async def exists(self, path: str | os.PathLike[str]) -> bool:
        """Whether something (file, directory, link) is at ``path``; escapes still raise."""

        def probe() -> bool:
            try:
                with self._locate(path, follow_final=False, make_parents=False) as loc:
                    return loc.lstat() is not None
            except NoSuchFileError:
                return False

        return await asyncio.to_thread(probe)

    async def list(self, path: str | os.PathLike[str] = ".") -> builtins.list[Entry]:
        """The entries of the directory at ``path``, sorted by name (links not followed)."""
        return await asyncio.to_thread(self._list, path)

    async def write(
        self, path: str | os.PathLike[str], data: bytes | str, *, make_parents: bool = True
    ) -> FileChange:
        """Replace (or create) the file at ``path`` with ``data`` atomically; the change.

        ``str`` is written as UTF-8. Missing directories are made unless ``make_parents`` is
        false. The file keeps its permission bits; a new one gets ``0o644``.
        """
        content = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        return await self._change(lambda: self._write(path, content, make_parents))

    async def delete(self, path: str | os.PathLike[str]) -> FileChange:
        """Remove the file (or link) at ``path``; the change. Directories are refused."""
        return await self._change(lambda: self._delete(path))

    async def move(
        self,
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        make_parents: bool = True,
    ) -> FileChange:
        """Rename the file at ``source`` to ``destination`` (both in the root); the change.

        An existing destination raises ``FileConflictError`` unless ``overwrite``.
        """
        return await self._change(
            lambda: self._move(source, destination, overwrite=overwrite, make_parents=make_parents)
        )

    # --- events ----------------------------------------------------------------------------

    async def _change(self, work: Callable[[], _Plan]) -> FileChange:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, work)
        future.add_done_callback(self._record_done)
        # Shielded: a cancelled caller does not lose the event of a change already under way.
        plan = await asyncio.shield(future)
        if plan.error is not None:
            raise plan.error
        return plan.change

    def _record_done(self, future: asyncio.Future[_Plan]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._record_plan(future.result())

    def _record_plan(self, plan: _Plan) -> None:
        if self.recorder is None:
            return
        payload = StateChange(
            target_type=FILE_SYSTEM,
            target_resource=plan.change.path,
            data=encode_file_change(plan.change),
            is_reversible=plan.reversible,
            form=ChangeForm.DELTA,
            content_type=FILE_CHANGE_TYPE,
        )
        try:
            self.recorder.record(payload)
        except Exception as exc:  # the change is on disk: its caller learns its event is not
            log.error("workspace change not recorded", path=plan.change.path, error=repr(exc))
            plan.error = exc

    def _describe(
        self,
        op: Literal["create", "write", "delete", "move"],
        path: str,
        before: bytes | None,
        after: bytes | None,
    ) -> _Plan:
        """The ``FileChange`` of replacing ``before`` by ``after`` (``None``: no file)."""
        sides = [s for s in (before, after) if s is not None]
        binary = not all(is_text(s) for s in sides)
        small = all(len(s) <= self.inline_limit for s in sides)
        diff, before_blob, after_blob = "", "", ""
        if not binary and small:
            old = (before or b"").decode("utf-8").splitlines(keepends=True)
            new = (after or b"").decode("utf-8").splitlines(keepends=True)
            diff = unified_diff(old, new, path)
            reversible = True
        elif self.blobs is not None:
            before_blob = self.blobs.put(before) if before is not None else ""
            after_blob = self.blobs.put(after) if after is not None else ""
            reversible = True
        else:
            reversible = before is None  # a creation is undone by deleting
        change = FileChange(
            op=op,
            path=path,
            before_sha256=sha256_hex(before),
            after_sha256=sha256_hex(after),
            before_size=len(before) if before is not None else 0,
            after_size=len(after) if after is not None else 0,
            binary=binary,
            diff=diff,
            before_blob=before_blob,
            after_blob=after_blob,
        )
        return _Plan(change=change, reversible=reversible)

    # --- the file work (in a worker thread) --------------------------------------------------

    def _locate(
        self, path: str | os.PathLike[str], **options: bool
    ) -> AbstractContextManager[Located]:
        if not self._closer.alive:
            raise InvalidArgumentError(f"{self!r} is closed")
        return locate(self._fd, self._dev, path, **options)

    def _sync(self, fd: int) -> None:
        if self.durable:
            os.fsync(fd)

    def _too_large(self, relative: str, size: int) -> FileTooLargeError:
        return FileTooLargeError(
            f"{relative!r} is {size} bytes, over the workspace's max_file_size of "
            f"{self.max_file_size}: raise max_file_size or split the file",
            path=relative,
            size=size,
            limit=self.max_file_size,
        )

    def _read_at(self, loc: Located) -> bytes:
        if not loc.name:
            raise SpecialFileError(f"{loc.relative or '.'!r} is a directory", path=loc.relative)
        try:
            fd = os.open(loc.name, _READ_FLAGS, dir_fd=loc.parent)
        except FileNotFoundError as exc:
            raise NoSuchFileError(f"no file {loc.relative!r}", path=loc.relative) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SpecialFileError(
                    f"{loc.relative!r} is not a regular file (a device, FIFO, socket or "
                    "directory): only regular files are read",
                    path=loc.relative,
                )
            if info.st_size > self.max_file_size:
                raise self._too_large(loc.relative, info.st_size)
            chunks = []
            total = 0
            while chunk := os.read(fd, _CHUNK):
                total += len(chunk)
                if total > self.max_file_size:  # grew while we read
                    raise self._too_large(loc.relative, total)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _read(self, path: str | os.PathLike[str]) -> bytes:
        with self._locate(path) as loc:
            return self._read_at(loc)

    def _list(self, path: str | os.PathLike[str]) -> builtins.list[Entry]:
        with self._locate(path, want_dir=True) as loc:
            entries = []
            with os.scandir(os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=loc.parent)) as it:
                for item in it:
                    info = item.stat(follow_symlinks=False)
                    mode = info.st_mode
                    kind: Literal["file", "dir", "symlink", "other"] = (
                        "file"
                        if stat.S_ISREG(mode)
                        else "dir"
                        if stat.S_ISDIR(mode)
                        else "symlink"
                        if stat.S_ISLNK(mode)
                        else "other"
                    )
                    entries.append(Entry(item.name, kind, info.st_size))
            return sorted(entries, key=lambda e: e.name)

    def _existing(self, loc: Located) -> tuple[bytes | None, int]:
        """The content and permission bits of the regular file at ``loc`` (``None``: none)."""
        if not loc.name:
            raise SpecialFileError(f"{loc.relative or '.'!r} is a directory", path=loc.relative)
        info = loc.lstat()
        if info is None:
            return None, 0o644
        if not stat.S_ISREG(info.st_mode):
            raise SpecialFileError(
                f"{loc.relative!r} is not a regular file: only regular files are replaced",
                path=loc.relative,
            )
        return self._read_at(loc), stat.S_IMODE(info.st_mode)

    def _write(self, path: str | os.PathLike[str], data: bytes, make_parents: bool) -> _Plan:
        if len(data) > self.max_file_size:
            raise self._too_large(os.fspath(path), len(data))
        with self._locate(path, make_parents=make_parents) as loc:
            before, mode = self._existing(loc)
            _replace(loc.parent, loc.name, data, mode, self.durable)
            return self._describe(
                "create" if before is None else "write", loc.relative, before, data
            )

    def _delete(self, path: str | os.PathLike[str]) -> _Plan:
        with self._locate(path, follow_final=False) as loc:
            info = loc.lstat()
            if info is None:
                raise NoSuchFileError(f"no file {loc.relative!r} to delete", path=loc.relative)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(loc.name, dir_fd=loc.parent).encode()
                os.unlink(loc.name, dir_fd=loc.parent)
                self._sync(loc.parent)
                return self._describe("delete", loc.relative, target, None)
            before, _ = self._existing(loc)
            os.unlink(loc.name, dir_fd=loc.parent)
            self._sync(loc.parent)
            return self._describe("delete", loc.relative, before, None)

    def _move(
        self,
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str],
        *,
        overwrite: bool,
        make_parents: bool,
    ) -> _Plan:
        with (
            self._locate(source, follow_final=False) as src,
            self._locate(destination, follow_final=False, make_parents=make_parents) as dst,
        ):
            info = src.lstat()
            if info is None:
                raise NoSuchFileError(f"no file {src.relative!r} to move", path=src.relative)
            if not src.name or stat.S_ISDIR(info.st_mode):
                raise SpecialFileError(
                    f"{src.relative!r} is a directory: move files one by one", path=src.relative
                )
            if not dst.name:
                raise SpecialFileError(f"{dst.relative or '.'!r} is a directory", path=dst.relative)
            content = self._read_at(src) if stat.S_ISREG(info.st_mode) else None
            existing = dst.lstat()
            if existing is not None:
                if not overwrite:
                    raise FileConflictError(
                        f"{dst.relative!r} exists: pass overwrite=True to replace it",
                        path=dst.relative,
                    )
                if stat.S_ISDIR(existing.st_mode):
                    raise SpecialFileError(f"{dst.relative!r} is a directory", path=dst.relative)
            os.rename(src.name, dst.name, src_dir_fd=src.parent, dst_dir_fd=dst.parent)
            self._sync(dst.parent)
            if not os.path.samestat(os.fstat(src.parent), os.fstat(dst.parent)):
                self._sync(src.parent)
            plan = self._describe("move", src.relative, content, content)
            change = msgspec.structs.replace(plan.change, to_path=dst.relative, diff="")
            return _Plan(change=change, reversible=existing is None)


def _replace(parent: int, name: str, data: bytes, mode: int, durable: bool) -> None:
    """Atomically make ``name`` in ``parent`` hold ``data``: temp file, fsync, rename, fsync."""
    temp = f".{name[:64]}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    fd = os.open(temp, _TEMP_FLAGS, 0o600, dir_fd=parent)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view[:_CHUNK]) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=parent)
        raise
    if durable:
        os.fsync(parent)
