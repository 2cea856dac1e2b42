"""Time travel over a run's journal: revert a change, fork a run, replay one without a model.

* ``revert``: undo a workspace change and the later changes depending on it, as new events of
  the ``operator`` agent (history is never rewritten; a revert can be reverted); it stops at a
  change marked irreversible (``IrreversibleChangeError``).
* ``rerun``: a new run forked from the workspace at an event, calling brains again.
* ``replay_run``: the swarm re-executed with the answers the run recorded (``RunReplayBrain``):
  no model call, and the workspace comes out as the run left it.

Owns: ``_undo`` (undoing a ``FileChange``: a diff applied backwards, checked by hash),
``_revert``, ``_fork`` (``rerun``, ``replay_run``), ``_replaybrain``.

May import: the public facades (events, tools, brains, swarm, errors), ``_runs`` and
``_runjournal`` (where runs are and how their journal is opened); not the engine nor the NATS
layer directly.
"""

from swarm_actors._public import publish as _publish
from swarm_actors.replay._fork import (
    ReplayOutcome,
    final_hashes,
    fork_workspace,
    replay_run,
    rerun,
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
from swarm_actors.replay._undo import Recorded, file_changes, patch_text

__all__ = [
    "OPERATOR_ID",
    "OPERATOR_ROLE",
    "Recorded",
    "ReplayOutcome",
    "RevertResult",
    "RunReplayBrain",
    "dependents",
    "file_changes",
    "final_hashes",
    "fork_workspace",
    "patch_text",
    "replay_run",
    "request_subject",
    "rerun",
    "revert",
    "run_workspace",
]

_publish(
    __name__,
    Recorded,
    ReplayOutcome,
    RevertResult,
    RunReplayBrain,
    dependents,
    file_changes,
    final_hashes,
    fork_workspace,
    patch_text,
    replay_run,
    request_subject,
    rerun,
    revert,
    run_workspace,
)
