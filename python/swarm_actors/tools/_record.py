"""How tools record what they do: a recorder of events, and the ``FileChange`` record.

A tool hands each payload to an ``EventRecorder``; ``JournalRecorder`` makes it the next event
of one agent (its own sequence and hash chain) in a ``Journal``. An actor that owns the tool
passes a recorder that records as itself, so the changes join its own chain.

A ``StateChange``'s ``prev_hash`` and ``hash`` are its agent's hash chain (``verify_chain``
checks them), so the file's own content hashes cannot go there: they are in the change's
``data``, a msgpack ``FileChange`` (``content_type`` ``FILE_CHANGE_TYPE``).
"""

from __future__ import annotations

import threading
from typing import Final, Literal, Protocol, runtime_checkable

import msgspec

from swarm_actors._events._journal import Journal
from swarm_actors._events._schema import Payload, StateChange, SwarmEvent, check_role, new_event

__all__ = [
    "FILE_CHANGE_TYPE",
    "FILE_SYSTEM",
    "EventRecorder",
    "FileChange",
    "JournalRecorder",
    "decode_file_change",
]

FILE_SYSTEM: Final = "FILE_SYSTEM"
"""``StateChange.target_type`` of workspace file changes."""

FILE_CHANGE_TYPE: Final = "application/vnd.swarm-actors.file-change+msgpack"
"""``StateChange.content_type`` of a workspace file change: ``data`` is a ``FileChange``."""


class FileChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One file operation in a workspace: the ``data`` of its ``StateChange`` event.

    Hashes are SHA-256 hex digests of the whole content; ``""`` where there is no file
    (``before_sha256`` of a created file, ``after_sha256`` of a deleted one). A text change
    whose sides are both under the workspace's ``inline_limit`` carries a unified ``diff``;
    binary or larger contents are stored in the blob store, and their keys are here.
    """

    op: Literal["create", "write", "delete", "move"]
    """What was done."""
    path: str
    """The file, relative to the workspace root (a move's source)."""
    to_path: str = ""
    """A move's destination, relative to the root."""
    before_sha256: str = ""
    """Hash of the content before (empty: no file was there)."""
    after_sha256: str = ""
    """Hash of the content after (empty: no file is there now)."""
    before_size: int = 0
    """Size in bytes before."""
    after_size: int = 0
    """Size in bytes after."""
    binary: bool = False
    """Whether either side is binary (not UTF-8 text, or holds NUL bytes)."""
    diff: str = ""
    """Unified diff of a text change (``a/<path>`` to ``b/<path>``), when inline."""
    before_blob: str = ""
    """Blob-store key of the content before, when stored there."""
    after_blob: str = ""
    """Blob-store key of the content after, when stored there."""


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(FileChange).decode


def encode_file_change(change: FileChange) -> bytes:
    """The msgpack bytes of ``change`` (a ``StateChange``'s ``data``)."""
    return _encode(change)


def decode_file_change(data: bytes) -> FileChange:
    """The ``FileChange`` in a workspace ``StateChange``'s ``data``.

    Raises ``msgspec.ValidationError`` / ``msgspec.DecodeError`` for other bytes.
    """
    return _decode(data)


@runtime_checkable
class EventRecorder(Protocol):
    """Where a tool's events go: ``record`` makes a payload the next event of some agent."""

    def record(self, payload: Payload) -> SwarmEvent:
        """Record ``payload`` (sealing a state change into the agent's chain); the event."""
        ...


class JournalRecorder:
    """Records payloads as the events of one agent, ``agent_id`` in ``role``, into ``journal``.

    It keeps the agent's sequence and the hash of its last state change, so the events form a
    chain ``verify_chain`` checks. Events are handed over with ``append_nowait`` (a
    ``MemoryJournal`` stores them at once; a remote journal queues them: ``await
    journal.flush()`` to know they are stored). Thread-safe; the sequence moves on only once
    the journal took the event. Start ``sequence``/``head`` where an earlier run of the same
    agent left off, or use a fresh ``agent_id`` per run. A role unfit for a subject raises
    ``SubjectError`` here.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        role: str = "tools",
        agent_id: str = "/tools",
        sequence: int = 0,
        head: bytes = b"",
        run_id: str = "",
    ) -> None:
        check_role(role)
        self.journal = journal
        """The journal events go to."""
        self.role = role
        """``agent_role`` of the events."""
        self.agent_id = agent_id
        """``agent_id`` of the events."""
        self.sequence = sequence
        """The last sequence recorded."""
        self.head = head
        """``hash`` of the last state change recorded (empty before the first)."""
        self.run_id = run_id
        """``run_id`` of the events: the run they belong to (empty: none)."""
        self.causation_id = ""
        """``causation_id`` of the events recorded from now on: the id of the event (a
        decision) they follow from; empty: none."""
        self._lock = threading.Lock()

    def record(self, payload: Payload) -> SwarmEvent:
        """Journal ``payload`` as this agent's next event; the event."""
        with self._lock:
            if type(payload) is StateChange:
                payload = msgspec.structs.replace(payload, prev_hash=self.head)
            event = new_event(
                payload,
                agent_role=self.role,
                agent_id=self.agent_id,
                sequence=self.sequence + 1,
                causation_id=self.causation_id,
                run_id=self.run_id,
            )
            self.journal.append_nowait(event)
            self.sequence = event.sequence
            if type(payload) is StateChange:
                self.head = event.payload.hash  # type: ignore[union-attr]
            return event
