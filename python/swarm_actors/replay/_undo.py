"""Undoing recorded file changes: a unified diff applied backwards, checked by content hash.

A workspace ``FileChange`` carries what is needed to go from the content after it to the
content before it: the inline unified diff of a text change (inverted, then applied by
``_patch.apply_diff`` as strictly as a replay applies it), the
before-blob of a binary or large one, or nothing at all for a creation (no file before). Each
step is checked against the change's recorded ``before_sha256``/``after_sha256``, so a
content that came out different is an error here, never a silently wrong file.

``rewind`` walks a run's changes backwards from the workspace as it is: the content of each
touched path before the first of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swarm_actors._exceptions import IrreversibleChangeError, PatchError, ReplayError
from swarm_actors.events import BlobStore, StateChange, SwarmEvent
from swarm_actors.replay._patch import apply_diff
from swarm_actors.tools import FILE_CHANGE_TYPE, FileChange, decode_file_change, sha256_hex

__all__ = ["Recorded", "file_changes", "invert_diff", "rewind"]

_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


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


def invert_diff(diff: str) -> str:
    """The unified diff that undoes ``diff``: sides, headers and hunk ranges swapped.

    Applied with ``apply_diff`` to the content after the change, it gives the content before.
    A ``No newline`` marker stays after its line, whose side swaps with it.
    """
    out = []
    in_hunks = False  # "--- x" in a hunk is a removed line "-- x", not a header
    for line in diff.split("\n"):
        match = _HUNK.match(line) if line.startswith("@@") else None
        if match is not None:
            in_hunks = True
            old = match[1] + (f",{match[2]}" if match[2] is not None else "")
            new = match[3] + (f",{match[4]}" if match[4] is not None else "")
            line = f"@@ -{new} +{old} @@{line[match.end() :]}"
        elif not in_hunks and line.startswith(("--- ", "+++ ")):
            line = ("+++ " if line[0] == "-" else "--- ") + line[4:]
        elif line[:1] in ("-", "+"):
            line = ("+" if line[0] == "-" else "-") + line[1:]
        out.append(line)
    return "\n".join(out)


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
    if sha256_hex(after) != c.after_sha256:
        raise ReplayError(
            f"change {recorded.sequence} to {c.path!r}: the content after it hashes to "
            f"{sha256_hex(after)[:12] or 'no file'}, not the {c.after_sha256[:12] or 'no file'} "
            "recorded",
            sequence=recorded.sequence,
        )
    if not c.before_sha256:
        return None
    if c.before_blob:
        before: bytes = blobs.get(c.before_blob)
    elif c.diff:
        try:
            before = apply_diff(after or b"", invert_diff(c.diff))
        except PatchError as exc:
            raise ReplayError(
                f"change {recorded.sequence} to {c.path!r}: its diff does not undo: {exc}",
                sequence=recorded.sequence,
            ) from None
    elif c.before_sha256 == c.after_sha256:
        before = after or b""  # nothing changed in the content (a move, a write of the same)
    else:
        raise _irreversible(recorded, "it holds neither a diff nor the content before it")
    if sha256_hex(before) != c.before_sha256:
        raise ReplayError(
            f"change {recorded.sequence} to {c.path!r}: undone, the content hashes to "
            f"{sha256_hex(before)[:12]}, not the {c.before_sha256[:12]} recorded before it",
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
            if sha256_hex(content) != c.after_sha256:
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
