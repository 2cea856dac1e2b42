"""Path confinement: walk a workspace path one component at a time, never leaving the root.

What is guaranteed: every directory and file is opened with ``O_NOFOLLOW`` relative to a
directory descriptor already held (``openat``), starting from the root's descriptor, so the
kernel never follows a symbolic link or a ``..`` for us. Links are read (``readlinkat``) and
interpreted here: an absolute target is refused, a relative one is walked like the rest of
the path, and ``..`` pops the stack of descriptors we hold (never the kernel's ``..``), so it
cannot climb above the root. A link swapped in between our look and our open makes the open
fail (``ELOOP``), not follow it. Directories on another file system than the root's (``/proc``
or ``/dev`` mounted inside) are refused. Not defended against: another process with write
access moving a directory we hold from inside the root to outside it, mid-walk (the operation
then happens in that directory, wherever it now is).

Linux and other POSIX systems with ``dir_fd`` support (``os.supports_dir_fd``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from swarm_actors._exceptions import (
    NoSuchFileError,
    PathEscapeError,
    SpecialFileError,
    ToolError,
)

__all__ = ["DIR_FLAGS", "Located", "check_relative", "locate", "open_root"]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""How every directory on a path is opened: never through a link."""

MAX_LINKS = 40
"""Symbolic links followed on one path before giving up (Linux's own limit)."""

_FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")


def open_root(root: str | os.PathLike[str]) -> tuple[str, int, int]:
    """The root's real path, a descriptor of it and its device; refuses /proc, /sys, /dev.

    (``/dev/shm``, a plain tmpfs, is allowed.)
    """
    real = os.path.realpath(os.fspath(root))
    shm = real == "/dev/shm" or real.startswith("/dev/shm/")  # a tmpfs, not devices
    if not shm and any(real == r or real.startswith(r + "/") for r in _FORBIDDEN_ROOTS):
        raise PathEscapeError(f"a workspace cannot be rooted in {real}: choose a project directory")
    try:
        fd = os.open(real, DIR_FLAGS)
    except FileNotFoundError as exc:
        raise NoSuchFileError(f"workspace root {real} does not exist: create it first") from exc
    except NotADirectoryError as exc:
        raise SpecialFileError(f"workspace root {real} is not a directory") from exc
    return real, fd, os.fstat(fd).st_dev


def check_relative(path: str | os.PathLike[str]) -> str:
    """``path`` as a string, if it can be a workspace path at all.

    Relative, no NUL byte, and no ``..`` climbing above the root as written (checked before
    anything is opened, so a missing directory does not hide an escape; links are checked
    by the walk).
    """
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"a workspace path is a str or PathLike of str, not {type(text).__name__}")
    if "\0" in text:
        raise PathEscapeError(f"path {text!r} contains a NUL byte", path=text)
    if text.startswith("/"):
        raise PathEscapeError(
            f"absolute path {text!r} refused: give a path relative to the workspace root",
            path=text,
        )
    depth = 0
    for part in text.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise PathEscapeError(
                    f"path {text!r} climbs above the root: it must stay inside the workspace",
                    path=text,
                )
        elif part not in ("", "."):
            depth += 1
    return text


class Located:
    """Where a walk ended: the final component's name in a held parent directory."""

    __slots__ = ("name", "parent", "relative")

    def __init__(self, parent: int, name: str, relative: str) -> None:
        self.parent = parent
        """Descriptor of the directory holding ``name`` (owned: closed by ``locate``)."""
        self.name = name
        """The last component, ``""`` when the path names the root or ends in a directory."""
        self.relative = relative
        """The canonical path relative to the root (links and ``..`` resolved)."""

    def lstat(self) -> os.stat_result | None:
        """The entry's ``lstat``, or ``None`` when nothing is there."""
        try:
            return os.stat(self.name or ".", dir_fd=self.parent, follow_symlinks=False)
        except FileNotFoundError:
            return None


def _escape(shown: str, why: str) -> PathEscapeError:
    return PathEscapeError(f"path {shown!r} {why}: it must stay inside the workspace", path=shown)


@contextmanager
def locate(
    root_fd: int,
    root_dev: int,
    path: str | os.PathLike[str],
    *,
    follow_final: bool = True,
    make_parents: bool = False,
    want_dir: bool = False,
) -> Iterator[Located]:
    """Walk ``path`` from the root and yield where it ends; closes every descriptor after.

    ``follow_final``: a link as the last component is resolved (reads and writes) rather than
    named itself (delete, move). ``make_parents``: missing directories on the way are made.
    ``want_dir``: the last component is entered as a directory too (``name`` is then ``""``).
    """
    shown = check_relative(path)
    parts: deque[str] = deque(shown.split("/"))
    fds = [os.dup(root_fd)]
    names: list[str] = []
    links = 0
    final = ""
    try:
        while parts:
            part = parts.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not names:
                    raise _escape(shown, "climbs above the root")
                names.pop()
                os.close(fds.pop())
                continue
            last = not any(p not in ("", ".") for p in parts)
            info = _lstat(fds[-1], part)
            if info is not None and stat.S_ISLNK(info.st_mode) and (follow_final or not last):
                links += 1
                if links > MAX_LINKS:
                    raise ToolError(f"path {shown!r} has too many levels of links", path=shown)
                target = os.readlink(part, dir_fd=fds[-1])
                if target.startswith("/"):
                    raise _escape(shown, f"goes through a link to the absolute path {target!r}")
                parts.extendleft(reversed(target.split("/")))
                continue
            if last and not want_dir:
                final = part
                break
            fds.append(_enter(fds[-1], part, info, root_dev, shown, make_parents))
            names.append(part)
        relative = "/".join([*names, final]) if final else "/".join(names)
        yield Located(fds[-1], final, relative)
    finally:
        for fd in fds:
            os.close(fd)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _enter(
    dir_fd: int,
    name: str,
    info: os.stat_result | None,
    root_dev: int,
    shown: str,
    make_parents: bool,
) -> int:
    """Open the directory ``name`` under ``dir_fd`` (never through a link), made if asked."""
    if info is None:
        if not make_parents:
            raise NoSuchFileError(f"no directory {name!r} on the path {shown!r}", path=shown)
        with suppress(FileExistsError):  # made meanwhile: open it below
            os.mkdir(name, 0o777, dir_fd=dir_fd)
    elif not stat.S_ISDIR(info.st_mode):
        raise SpecialFileError(f"{name!r} on the path {shown!r} is not a directory", path=shown)
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a link or file meanwhile
            raise _escape(shown, "changed under the walk (a link appeared)") from exc
        if exc.errno == errno.ENOENT:
            raise NoSuchFileError(f"directory {name!r} on {shown!r} vanished", path=shown) from exc
        raise
    if os.fstat(fd).st_dev != root_dev:
        os.close(fd)
        raise _escape(shown, f"crosses the mount point {name!r}")
    return fd
