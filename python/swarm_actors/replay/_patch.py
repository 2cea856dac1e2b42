r"""Applying a ``FileChange``: its inline unified diff, or its blob, to a workspace's files.

The diff is the one ``swarm_actors.tools`` wrote (``tools._diff.unified_diff``): lines split as
``str.splitlines(keepends=True)`` splits them, a line without a final ``\\n`` followed by the
``\\ No newline at end of file`` marker. It is applied strictly: every context and removed
line must be the file's (a recorded diff that does not fit its file is a broken history, not
something to fuzz over), and the result's SHA-256 must be the change's ``after_sha256``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import MutableMapping

from swarm_actors.errors import PatchError
from swarm_actors.events import BlobStore
from swarm_actors.tools import FileChange

__all__ = ["apply_diff", "apply_file_change"]

_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_EOL = "\\ No newline at end of file"


def _hunks(diff: str) -> list[tuple[int, int, list[tuple[str, str]]]]:
    """``(old_start, old_count, [(tag, text), ...])`` per hunk; texts keep their newline."""
    lines = diff.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    hunks: list[tuple[int, int, list[tuple[str, str]]]] = []
    body: list[tuple[str, str]] = []
    for line in lines:
        if line.startswith("@@"):
            match = _HUNK.match(line)
            if match is None:
                raise PatchError(f"bad hunk header {line!r}")
            body = []
            count = 1 if match[2] is None else int(match[2])
            hunks.append((int(match[1]), count, body))
        elif not hunks:
            if not line.startswith(("--- ", "+++ ")):
                raise PatchError(f"unexpected line before the first hunk: {line[:80]!r}")
        elif line == _NO_EOL:
            if not body:
                raise PatchError("a 'No newline' marker before any line")
            tag, text = body[-1]
            body[-1] = (tag, text[:-1])
        elif line[:1] in (" ", "-", "+"):
            body.append((line[0], line[1:] + "\n"))
        else:
            raise PatchError(f"unexpected line in a hunk: {line[:80]!r}")
    return hunks


def apply_diff(old: bytes, diff: str) -> bytes:
    """``old`` with the unified ``diff`` applied (``PatchError`` where it does not fit)."""
    if not diff:
        return old
    try:
        source = old.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise PatchError("the file is not UTF-8 text, but its change is a text diff") from None
    out: list[str] = []
    at = 0  # lines of ``source`` consumed
    for start, count, body in _hunks(diff):
        begin = start if count == 0 else start - 1  # an empty range names the line before it
        if begin < at or begin > len(source):
            raise PatchError(f"hunk at line {start} is out of order or past the end")
        out.extend(source[at:begin])
        at = begin
        for tag, text in body:
            if tag == "+":
                out.append(text)
                continue
            if at >= len(source) or source[at] != text:
                raise PatchError(f"line {at + 1} is not what the diff expects")
            if tag == " ":
                out.append(text)
            at += 1
    out.extend(source[at:])
    return "".join(out).encode("utf-8")


def _content(old: bytes | None, change: FileChange, blobs: BlobStore | None) -> bytes:
    """The file's content after ``change`` (whose sides are not both absent)."""
    if change.after_blob:
        if blobs is None:
            raise PatchError("its content is in the run's blob store, and none was given")
        return blobs.get(change.after_blob)
    if change.binary:
        raise PatchError("a binary change recorded without its blob: it cannot be replayed")
    return apply_diff(old or b"", change.diff)


def apply_file_change(
    files: MutableMapping[str, bytes],
    change: FileChange,
    blobs: BlobStore | None = None,
    *,
    hashes: MutableMapping[str, str] | None = None,
) -> None:
    """Apply ``change`` to ``files`` (relative path -> content) in place, checking hashes.

    The file's content before must hash to ``before_sha256`` (``""``: no file there), and
    after to ``after_sha256``; else ``PatchError`` (the history does not fit these files).
    A blob that is missing or damaged raises the blob store's error. ``hashes`` (path ->
    SHA-256 hex of the content in ``files``, kept up to date here) saves hashing a content
    twice in a fold: a file's hash after one change is its hash before the next.
    """
    try:
        _apply(files, change, blobs, hashes)
    except PatchError as exc:
        if exc.path:
            raise
        raise PatchError(str(exc), path=change.path) from None


def _digest(path: str, old: bytes | None, hashes: MutableMapping[str, str] | None) -> str:
    if old is None:
        return ""
    if hashes is None:
        return hashlib.sha256(old).hexdigest()
    known = hashes.get(path)
    if known is None:
        known = hashes[path] = hashlib.sha256(old).hexdigest()
    return known


def _apply(
    files: MutableMapping[str, bytes],
    change: FileChange,
    blobs: BlobStore | None,
    hashes: MutableMapping[str, str] | None,
) -> None:
    path = change.path
    old = files.get(path)
    if change.before_sha256 != _digest(path, old, hashes):
        raise PatchError(
            f"{path!r} is not as the change found it (its before hash "
            f"{change.before_sha256[:12] or 'none'} does not match)"
        )
    if change.op == "move":
        if old is None:
            raise PatchError(f"no file {path!r} to move")
        del files[path]
        files[change.to_path] = old
        if hashes is not None:
            hashes[change.to_path] = hashes.pop(path)
        return
    if change.op == "delete":
        if change.after_sha256:
            raise PatchError(f"a delete of {path!r} with an after hash")
        files.pop(path, None)
        if hashes is not None:
            hashes.pop(path, None)
        return
    new = _content(old, change, blobs)
    if hashlib.sha256(new).hexdigest() != change.after_sha256:
        raise PatchError(f"{path!r} after the change does not hash to its after hash")
    files[path] = new
    if hashes is not None:
        hashes[path] = change.after_sha256
