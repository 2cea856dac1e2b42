"""Time travel: a run's timeline, any event in full, the workspace at any event, and verify.

Replay never calls a model and never writes to the journal: everything comes from the run's
events and its blob store, and gives the same result every time.

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

Owns: ``_timeline`` (rows and filters), ``_patch`` (applying a change), ``_replay``
(``RunReplay``), ``_load`` (reading a run's journal, gaps and all), ``_verify``,
``_snapshots`` (periodic snapshots).

May import: the public ``events``, ``tools`` and ``errors``, ``_runs`` and ``_runjournal``
(how runs are found and read), ``_exceptions``, ``_log`` and ``_public``.
"""

from swarm_actors._public import publish as _publish
from swarm_actors.replay._load import JournalProblem, load_run, read_run_entries
from swarm_actors.replay._patch import apply_diff, apply_file_change
from swarm_actors.replay._replay import (
    CHECKPOINT_EVERY,
    EventDetail,
    RunReplay,
    WorkspaceStep,
    workspace_diff,
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
from swarm_actors.replay._verify import BrokenLink, VerifyReport, verify_run

__all__ = [
    "CHECKPOINT_EVERY",
    "INDEX_FILE",
    "SNAPSHOT_EVERY",
    "BrokenLink",
    "EventDetail",
    "JournalProblem",
    "RunReplay",
    "StoredSnapshot",
    "TimelineRow",
    "VerifyReport",
    "WorkspaceStep",
    "apply_diff",
    "apply_file_change",
    "checkout_run",
    "filter_rows",
    "format_time",
    "load_run",
    "read_index",
    "read_run_entries",
    "row_of",
    "store_snapshots",
    "verify_run",
    "workspace_diff",
]

_publish(
    __name__,
    BrokenLink,
    EventDetail,
    JournalProblem,
    RunReplay,
    StoredSnapshot,
    TimelineRow,
    VerifyReport,
    WorkspaceStep,
    apply_diff,
    apply_file_change,
    checkout_run,
    filter_rows,
    format_time,
    load_run,
    read_index,
    read_run_entries,
    row_of,
    store_snapshots,
    verify_run,
    workspace_diff,
)
