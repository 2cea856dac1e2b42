"""Time travel: a run's timeline, its workspace at any event, revert, fork and replay.

Reading a run never calls a model and never writes to the journal: everything comes from the
run's events and its blob store, and gives the same result every time.

* ``load_run(run, data_dir=..., nats=...)`` reads a run (finished, or still going on) into a
  ``RunReplay``; ``RunReplay(entries, blobs)`` takes entries from anywhere (a
  ``MemoryJournal``).
* ``RunReplay.timeline(agent=, role=, kind=, resource=, since_ns=, until_ns=)``: one
  ``TimelineRow`` per event (journal ``seq``, time, agent, kind, resource, one-line summary,
  ids); ``show(seq)``: an ``EventDetail`` (the event, its ``FileChange``, its cause).
* ``RunReplay.files_at(seq)``: the workspace right after event ``seq`` as ``{path: bytes}``,
  byte for byte (the run's starting snapshot, then each ``FileChange``, hashes checked);
  ``checkout(seq, to=DIR)`` writes it; ``diff(a, b)`` is a unified diff between two points.
* ``verify_run(replay)``: every hash chain, every agent's numbering, every change applied;
  a ``VerifyReport`` naming the first broken link (missing or altered, which event).
* ``checkout_run(run, seq, to)``: a checkout that costs one stored snapshot plus the tail of
  the journal (``store_snapshots`` stores one every ``SNAPSHOT_EVERY`` changes in the run's
  blob store, indexed in ``snapshots.json``).
* ``apply_file_change(files, change, blobs)``: one ``FileChange`` applied to such a dict (what
  a revert or a fork builds on).

What writes (new events, new runs; history is never rewritten):

* ``revert(seq)``: undo a workspace change and the later changes depending on it, as new
  events of the ``operator`` agent (a revert can be reverted); it stops at a change marked
  irreversible (``IrreversibleChangeError``).
* ``rerun(seq)``: a new run forked from the workspace at an event, calling brains again.
* ``replay_run()``: the swarm re-executed with the answers the run recorded
  (``RunReplayBrain``): no model call, and the workspace comes out as the run left it.

Owns: ``_timeline`` (rows and filters), ``_patch`` (applying a change), ``_replay``
(``RunReplay``), ``_load`` (reading a run's journal, gaps and all), ``_verify``,
``_snapshots`` (periodic snapshots), ``_undo`` (undoing a ``FileChange``: its diff inverted,
checked by hash), ``_revert``, ``_fork`` (``rerun``, ``replay_run``), ``_replaybrain``.

May import: the public ``events``, ``tools``, ``errors``, ``brains`` and ``swarm`` (the new
runs of ``rerun`` and ``replay_run``), ``_runs`` and ``_runjournal`` (how runs are found and
read), ``_exceptions``, ``_log`` and ``_public``.
"""

from swarm_actors._public import publish as _publish
from swarm_actors.replay._fork import (
    ReplayOutcome,
    final_hashes,
    fork_workspace,
    recorded_tools,
    replay_run,
    rerun,
)
from swarm_actors.replay._load import JournalProblem, load_run, read_run_entries
from swarm_actors.replay._patch import apply_diff, apply_file_change
from swarm_actors.replay._replay import (
    CHECKPOINT_EVERY,
    EventDetail,
    RunReplay,
    WorkspaceStep,
    workspace_diff,
)
from swarm_actors.replay._replaybrain import RunReplayBrain, request_subject
from swarm_actors.replay._revert import (
    OPERATOR_ID,
    OPERATOR_ROLE,
    RevertResult,
    dependents,
    revert,
    run_workspace,
)
from swarm_actors.replay._snapshots import (
    INDEX_FILE,
    SNAPSHOT_EVERY,
    StoredSnapshot,
    checkout_run,
    read_index,
    store_snapshots,
)
from swarm_actors.replay._timeline import TimelineRow, filter_rows, format_time, row_of
from swarm_actors.replay._undo import Recorded, file_changes, invert_diff
from swarm_actors.replay._verify import BrokenLink, VerifyReport, verify_run

__all__ = [
    "CHECKPOINT_EVERY",
    "INDEX_FILE",
    "OPERATOR_ID",
    "OPERATOR_ROLE",
    "SNAPSHOT_EVERY",
    "BrokenLink",
    "EventDetail",
    "JournalProblem",
    "Recorded",
    "ReplayOutcome",
    "RevertResult",
    "RunReplay",
    "RunReplayBrain",
    "StoredSnapshot",
    "TimelineRow",
    "VerifyReport",
    "WorkspaceStep",
    "apply_diff",
    "apply_file_change",
    "checkout_run",
    "dependents",
    "file_changes",
    "filter_rows",
    "final_hashes",
    "fork_workspace",
    "format_time",
    "invert_diff",
    "load_run",
    "read_index",
    "read_run_entries",
    "recorded_tools",
    "replay_run",
    "request_subject",
    "rerun",
    "revert",
    "row_of",
    "run_workspace",
    "store_snapshots",
    "verify_run",
    "workspace_diff",
]

_publish(
    __name__,
    BrokenLink,
    EventDetail,
    JournalProblem,
    Recorded,
    ReplayOutcome,
    RevertResult,
    RunReplay,
    RunReplayBrain,
    StoredSnapshot,
    TimelineRow,
    VerifyReport,
    WorkspaceStep,
    apply_diff,
    apply_file_change,
    checkout_run,
    dependents,
    file_changes,
    filter_rows,
    final_hashes,
    fork_workspace,
    format_time,
    invert_diff,
    load_run,
    read_index,
    read_run_entries,
    recorded_tools,
    replay_run,
    request_subject,
    rerun,
    revert,
    row_of,
    run_workspace,
    store_snapshots,
    verify_run,
    workspace_diff,
)
