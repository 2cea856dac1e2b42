"""The swarm's effectors: a confined workspace file system, git, and checks (tests, linters).

* ``Workspace``: read, write, list, move and delete files under one root, never outside it
  (``PathEscapeError``), with atomic writes; every change is a ``StateChange`` event
  (``FILE_SYSTEM``) whose ``data`` is a ``FileChange``.
* ``Checks``: tests, linters and compilers as subprocesses with a timeout that kills their
  process group, capped output, a cleaned environment and (where the machine allows) no
  network; pytest's and ruff's machine output parsed; every run a ``ToolRun`` event.
* ``GitRun``: a run's own branch in its own worktree of the user's repository (status, diff,
  a commit per approved change); the user's branch, index and working tree are never touched.
* ``JournalRecorder`` / ``EventRecorder``: where the tools' events go.
* ``take_snapshot`` / ``store_snapshot`` / ``snapshot_change``: a workspace's files, stored
  by content, recorded as one ``SNAPSHOT`` event (a run's starting workspace, so that a replay
  rebuilds it byte for byte at any event).

Owns: ``_confine`` (walking a path without leaving the root), ``_fs`` (``Workspace``),
``_diff`` (diffs and hashes of a change), ``_record`` (recorders and the ``FileChange``
record), ``_snapshot`` (a workspace's files as a snapshot in a blob store: a run's
baseline), ``_checks`` (``Checks``), ``_parse`` (tools' machine output), ``_git`` (``GitRun``),
``_proc`` (process groups and capped output).

May import: the standard library, msgspec, ``_events``, ``_exceptions`` and ``_log``; not the
engine nor the NATS layer (an actor plugs in through an ``EventRecorder``).
"""

from swarm_actors._public import publish as _publish
from swarm_actors.tools._checks import DEFAULT_ENV, CheckResult, Checks, network_isolation
from swarm_actors.tools._diff import sha256_hex, unified_diff
from swarm_actors.tools._fs import Entry, Workspace
from swarm_actors.tools._git import GitRun, GitStatus, git_command, is_repository
from swarm_actors.tools._parse import CheckSummary, parse_junit, parse_ruff
from swarm_actors.tools._record import (
    FILE_CHANGE_TYPE,
    FILE_SYSTEM,
    EventRecorder,
    FileChange,
    JournalRecorder,
    decode_file_change,
)
from swarm_actors.tools._snapshot import (
    SNAPSHOT_SKIP,
    SNAPSHOT_TYPE,
    SnapshotFile,
    SnapshotRef,
    WorkspaceSnapshot,
    decode_snapshot_ref,
    load_snapshot,
    snapshot_change,
    store_snapshot,
    take_snapshot,
)

__all__ = [
    "DEFAULT_ENV",
    "FILE_CHANGE_TYPE",
    "FILE_SYSTEM",
    "SNAPSHOT_SKIP",
    "SNAPSHOT_TYPE",
    "CheckResult",
    "CheckSummary",
    "Checks",
    "Entry",
    "EventRecorder",
    "FileChange",
    "GitRun",
    "GitStatus",
    "JournalRecorder",
    "SnapshotFile",
    "SnapshotRef",
    "Workspace",
    "WorkspaceSnapshot",
    "decode_file_change",
    "decode_snapshot_ref",
    "git_command",
    "is_repository",
    "load_snapshot",
    "network_isolation",
    "parse_junit",
    "parse_ruff",
    "sha256_hex",
    "snapshot_change",
    "store_snapshot",
    "take_snapshot",
    "unified_diff",
]

_publish(
    __name__,
    CheckResult,
    CheckSummary,
    Checks,
    Entry,
    EventRecorder,
    FileChange,
    GitRun,
    GitStatus,
    JournalRecorder,
    SnapshotFile,
    SnapshotRef,
    Workspace,
    WorkspaceSnapshot,
    decode_file_change,
    decode_snapshot_ref,
    git_command,
    is_repository,
    load_snapshot,
    network_isolation,
    parse_junit,
    parse_ruff,
    snapshot_change,
    store_snapshot,
    sha256_hex,
    take_snapshot,
    unified_diff,
)
