"""The swarm's effectors: a confined workspace file system, git, and checks (tests, linters).

* ``Workspace``: read, write, list, move and delete files under one root, never outside it
  (``PathEscapeError``), with atomic writes; every change is a ``StateChange`` event
  (``FILE_SYSTEM``) whose ``data`` is a ``FileChange``.
* ``JournalRecorder`` / ``EventRecorder``: where the tools' events go.

Owns: ``_confine`` (walking a path without leaving the root), ``_fs`` (``Workspace``),
``_record`` (recorders and the ``FileChange`` record).

May import: the standard library, msgspec, ``_events``, ``_exceptions`` and ``_log``; not the
engine nor the NATS layer (an actor plugs in through an ``EventRecorder``).
"""

from swarm_actors._public import publish as _publish
from swarm_actors.tools._fs import Entry, Workspace
from swarm_actors.tools._record import (
    FILE_CHANGE_TYPE,
    FILE_SYSTEM,
    EventRecorder,
    FileChange,
    JournalRecorder,
    decode_file_change,
)

__all__ = [
    "FILE_CHANGE_TYPE",
    "FILE_SYSTEM",
    "Entry",
    "EventRecorder",
    "FileChange",
    "JournalRecorder",
    "Workspace",
    "decode_file_change",
]

_publish(__name__, Entry, EventRecorder, FileChange, JournalRecorder, Workspace, decode_file_change)
