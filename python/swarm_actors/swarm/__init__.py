"""The role swarm: an architect, coders and a reviewer fix a Python project together.

``run_swarm(SwarmConfig(...))`` plans the linter's findings into work items (``Architect``),
has coders apply the linter's fixes (``Coder``; more from other processes with
``run_worker``), checks each change with the project's tests and the linter (``Reviewer``:
approved changes are commits, rejected ones are reverted and retried, then escalated) and
ends with a ``SwarmSummary``. Every decision, change and check is an event of the run in the
journal. With the default brain (``default_brain()``, no model) the work is done by ruff and
the tests; any ``Brain`` can take its place (the roles ask it for the plan and the verdicts).

Owns: ``_config`` (the run's settings and summary), ``_messages`` (what roles exchange),
``_brainio`` (what roles ask a brain, the deterministic rules), ``_toolkit`` (ruff and the
tests), ``_ledger`` (the coordinator's book), ``_roles`` (the actors), ``_run``.

May import: the engine (``_core``, ``_system``, ``_config``), the events, ``tools``,
``brains``, ``_exceptions`` and ``_log``.
"""

from swarm_actors._public import publish as _publish
from swarm_actors.swarm._brainio import (
    MAX_ANSWER_BYTES,
    LintFinding,
    default_brain,
    plan_request,
    plan_rule,
    review_request,
    review_rule,
)
from swarm_actors.swarm._config import Progress, SwarmConfig, SwarmSummary, new_run_id
from swarm_actors.swarm._messages import Review, Verdict, WorkItem
from swarm_actors.swarm._roles import Architect, Coder, Reviewer
from swarm_actors.swarm._run import run_swarm, run_worker
from swarm_actors.swarm._toolkit import Toolkit, detect_test_cmd

__all__ = [
    "MAX_ANSWER_BYTES",
    "Architect",
    "Coder",
    "LintFinding",
    "Progress",
    "Review",
    "Reviewer",
    "SwarmConfig",
    "SwarmSummary",
    "Toolkit",
    "Verdict",
    "WorkItem",
    "default_brain",
    "detect_test_cmd",
    "new_run_id",
    "plan_request",
    "plan_rule",
    "review_request",
    "review_rule",
    "run_swarm",
    "run_worker",
]

_publish(
    __name__,
    Architect,
    Coder,
    LintFinding,
    Progress,
    Review,
    Reviewer,
    SwarmConfig,
    SwarmSummary,
    Toolkit,
    Verdict,
    WorkItem,
    default_brain,
    detect_test_cmd,
    new_run_id,
    plan_request,
    plan_rule,
    review_request,
    review_rule,
    run_swarm,
    run_worker,
)
