"""Undoing recorded file changes: a unified diff applied backwards, checked by content hash.

A workspace ``FileChange`` carries what is needed to go from the content after it to the
content before it: the inline unified diff of a text change (applied in reverse), the
before-blob of a binary or large one, or nothing at all for a creation (no file before). Each
step is checked against the change's recorded ``before_sha256``/``after_sha256``, so a
content that came out different is an error here, never a silently wrong file.

``rewind`` walks a run's changes backwards from the workspace as it is: the content of each
touched path before the first of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swarm_actors._exceptions import IrreversibleChangeError, ReplayError
from swarm_actors.events import BlobStore, StateChange, SwarmEvent
from swarm_actors.tools import FILE_CHANGE_TYPE, FileChange, decode_file_change

__all__ = ["Recorded", "file_changes", "patch_text", "rewind"]

_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_EOL = "\\ No newline at end of file"


@dataclass(frozen=True)
class Recorded:
    """One recorded workspace change: its journal sequence, event and ``FileChange``."""

    sequence: int
    """The journal sequence of its event."""
    event: SwarmEvent
    """The ``StateChange`` event."""
    change: FileChange
    """What it did to the file."""

    @property
    def reversible(self) -> bool:
        """The event's ``is_reversible`` mark: whether it holds enough to be undone."""
        payload = self.event.payload
        return isinstance(payload, StateChange) and payload.is_reversible

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths it touched (a move: both)."""
        c = self.change
        return (c.path, c.to_path) if c.op == "move" else (c.path,)


def file_changes(entries: Sequence[tuple[int, SwarmEvent]]) -> list[Recorded]:
    """The workspace file changes among ``(sequence, event)`` pairs, in order."""
    found = []
    for sequence, event in entries:
        payload = event.payload
        if isinstance(payload, StateChange) and payload.content_type == FILE_CHANGE_TYPE:
            found.append(Recorded(sequence, event, decode_file_change(payload.data)))
    return found


def _diff_lines(diff: str) -> list[str]:
    # Split on "\n" only: a diff line ends with "\n", and its content may hold "\r" or "\f".
    lines = diff.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def patch_text(text: str, diff: str, *, reverse: bool = False) -> str:
    """``text`` with the unified ``diff`` applied (``reverse``: undone).

    Lines are split as the workspace split them when it made the diff (``str.splitlines``).
    Raises ``ReplayError`` when a hunk does not match the text.
    """
    lines = text.splitlines(keepends=True)
    diff_lines = _diff_lines(diff)
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(diff_lines):
        match = _HUNK.match(diff_lines[i])
        i += 1
        if match is None:
            continue  # the ---/+++ header
        counts = [int(match[2] or 1), int(match[4] or 1)]
        starts = [int(match[1]), int(match[3])]
        old: list[str] = []
        new: list[str] = []
        while (len(old) < counts[0] or len(new) < counts[1]) and i < len(diff_lines):
            line = diff_lines[i]
            i += 1
            tag, body = line[:1], line[1:]
            if i < len(diff_lines) and diff_lines[i].rstrip("\n") == _NO_EOL:
                body = body[:-1] if body.endswith("\n") else body
                i += 1
            if tag in (" ", "-"):
                old.append(body)
            if tag in (" ", "+"):
                new.append(body)
        source, target = (new, old) if reverse else (old, new)
        start = starts[1] if reverse else starts[0]
        start = start - 1 if source else start  # an empty side names the line before it
        if start < pos or lines[start : start + len(source)] != source:
            raise ReplayError(f"a hunk at line {start + 1} does not match the file", sequence=0)
        out += lines[pos:start]
        out += target
        pos = start + len(source)
    out += lines[pos:]
    return "".join(out)


def _sha(data: bytes | None) -> str:
    return "" if data is None else hashlib.sha256(data).hexdigest()


def _irreversible(recorded: Recorded, why: str) -> IrreversibleChangeError:
    c, event = recorded.change, recorded.event
    return IrreversibleChangeError(
        f"change {recorded.sequence} ({c.op} {c.path!r} by {event.agent_role} "
        f"{event.agent_id}) cannot be undone: {why}",
        sequence=recorded.sequence,
        path=c.path,
    )


def before_content(recorded: Recorded, after: bytes | None, blobs: BlobStore) -> bytes | None:
    """The file's content before ``recorded``, from its content after it (``None``: no file)."""
    c = recorded.change
    if _sha(after) != c.after_sha256:
        raise ReplayError(
            f"change {recorded.sequence} to {c.path!r}: the content after it hashes to "
            f"{_sha(after)[:12] or 'no file'}, not the {c.after_sha256[:12] or 'no file'} "
            "recorded",
            sequence=recorded.sequence,
        )
    if not c.before_sha256:
        return None
    if c.before_blob:
        before: bytes = blobs.get(c.before_blob)
    elif c.diff:
        text = (after or b"").decode("utf-8")
        try:
            before = patch_text(text, c.diff, reverse=True).encode("utf-8")
        except ReplayError as exc:
            raise ReplayError(
                f"change {recorded.sequence} to {c.path!r}: its diff does not undo: {exc}",
                sequence=recorded.sequence,
            ) from None
    elif c.before_sha256 == c.after_sha256:
        before = after or b""  # nothing changed in the content (a move, a write of the same)
    else:
        raise _irreversible(recorded, "it holds neither a diff nor the content before it")
    if _sha(before) != c.before_sha256:
        raise ReplayError(
            f"change {recorded.sequence} to {c.path!r}: undone, the content hashes to "
            f"{_sha(before)[:12]}, not the {c.before_sha256[:12]} recorded before it",
            sequence=recorded.sequence,
        )
    return before


def rewind(
    changes: Sequence[Recorded],
    read: Callable[[str], bytes | None],
    blobs: BlobStore,
) -> dict[str, bytes | None]:
    """Each path ``changes`` touched, as it was before the first of them (``None``: no file).

    ``changes`` are the changes to undo, in journal order, and the last changes to their
    paths: ``read(path)`` gives the content now, which must be what the last of them left
    (``ReplayError`` otherwise, naming the change). A change marked irreversible, or that
    holds nothing to undo it with, raises ``IrreversibleChangeError``.
    """
    state: dict[str, bytes | None] = {}

    def current(path: str) -> bytes | None:
        if path not in state:
            state[path] = read(path)
        return state[path]

    for recorded in reversed(changes):
        c = recorded.change
        if not recorded.reversible:
            raise _irreversible(recorded, "it is marked irreversible (is_reversible false)")
        if c.op == "move":
            content = current(c.to_path)
            if _sha(content) != c.after_sha256:
                raise ReplayError(
                    f"change {recorded.sequence}: {c.to_path!r} is not what the move left",
                    sequence=recorded.sequence,
                )
            current(c.path)
            state[c.path] = content
            state[c.to_path] = None  # a reversible move had nothing at its destination
        else:
            state[c.path] = before_content(recorded, current(c.path), blobs)
    return state
