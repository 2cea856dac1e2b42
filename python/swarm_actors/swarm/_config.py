"""A swarm run's settings (``SwarmConfig``), progress (``Progress``) and end (``SwarmSummary``)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors.brains import Brain
from swarm_actors.events import Journal
from swarm_actors.memory import MemoryStore

__all__ = ["Progress", "SwarmConfig", "SwarmSummary", "new_run_id"]


def new_run_id() -> str:
    """A fresh run id: time-ordered and filesystem-safe (``20261202T114512Z-3fa9c1``)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{os.urandom(3).hex()}"


@dataclass(frozen=True, kw_only=True)
class SwarmConfig:
    """One run of the role swarm: where it works, with how many coders, within what bounds.

    The swarm edits ``workspace`` in place (give it a copy or a worktree, never the user's
    checkout); ``run_dir`` holds the run's blobs (``run_dir/"blobs"``), the embedded server's
    journal (``journal_dir``, default ``run_dir/"journal"``) and the approved patch.
    """

    workspace: Path
    """The directory the swarm works on (already a copy or a worktree: edited in place)."""
    run_dir: Path
    """The run's directory: blobs under ``run_dir/"blobs"``, the journal, the patch."""
    run_id: str = ""
    """The run's id, on every event (``SwarmEvent.run_id``); ``""``: ``new_run_id()``."""
    goal: str = "Fix the linter's findings without breaking the tests."
    """The task given to the architect."""
    coders: int = 3
    """Coders in this process (``run_worker`` adds more from others)."""
    brain: Brain | None = None
    """The brain of the planning and review decisions; ``None``: ``default_brain()``. A brain
    given here is recorded: each call a ``ModelCall`` event of the run, the request and the
    answer in its blobs (what ``swarm_actors.replay.replay_run`` answers from)."""
    test_cmd: Sequence[str] | None = None
    """How the reviewer runs the tests; ``None``: pytest if the project uses it (else
    unittest), run with this interpreter (``sys.executable``)."""
    select: Sequence[str] | None = None
    """The linter's rules (ruff ``--select``); ``None``: the project's own ruff config."""
    max_attempts: int = 2
    """Attempts per work item; a rejected item past this is escalated."""
    max_steps: int = 10_000
    """Global budget of steps: plans, attempts and reviews."""
    max_tokens: int | None = None
    """Global budget of brain tokens (``None``: unbounded)."""
    max_seconds: float | None = 1800.0
    """Wall-time bound of the run: past it, what is left is escalated and the run ends."""
    check_timeout: float = 300.0
    """Timeout of each test or linter run, in seconds."""
    nats: str | None = "embedded"
    """``"embedded"`` (a private nats-server, the JetStream journal), a server URL, or
    ``None`` (everything in this process, a ``MemoryJournal``)."""
    journal_dir: Path | None = None
    """Where the embedded server keeps its JetStream data (default ``run_dir/"journal"``)."""
    journal: Journal | None = None
    """With ``nats=None``: the journal the run's events go to (default a new
    ``MemoryJournal``; pass one to read the run's events afterwards)."""
    memory: MemoryStore | None = None
    """Long-term memory of earlier runs: the roles consult it, and the run's verdicts are
    stored in it at the end (``None``: the run neither consults nor remembers)."""

    def __post_init__(self) -> None:
        for name in ("coders", "max_attempts", "max_steps"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (0 if name == "coders" else 1)
            ):
                least = 0 if name == "coders" else 1
                raise InvalidArgumentError(
                    f"SwarmConfig.{name} must be an int >= {least}, got {value!r}"
                )
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidArgumentError(
                f"SwarmConfig.max_tokens must be >= 1, got {self.max_tokens}"
            )
        if self.test_cmd is not None and (isinstance(self.test_cmd, str) or not self.test_cmd):
            raise InvalidArgumentError(
                "SwarmConfig.test_cmd is a sequence of arguments, e.g. ('pytest', '-q'); "
                f"got {self.test_cmd!r}"
            )


@dataclass(frozen=True)
class Progress:
    """What the swarm is doing now: handed to ``on_progress`` at each decision, change, check."""

    agent: str
    """The agent's path (``/coder-2``)."""
    role: str
    """``"architect"``, ``"coder"`` or ``"reviewer"``."""
    activity: str
    """What it is doing, in a few words."""
    items_done: int
    """Work items finished (approved, escalated or skipped)."""
    items_pending: int
    """Work items not finished yet."""
    events: int
    """Events the swarm's roles recorded so far (approximate: not the runtime's own)."""


@dataclass(frozen=True)
class SwarmSummary:
    """How a run ended. ``ok``: the workspace's tests pass at the end."""

    run_id: str
    items: int
    approved: int
    rejected: int
    reverted: int
    escalated: int
    tests_before: int
    tests_after: int
    tests_failing_after: int
    findings_before: int
    findings_after: int
    events: int
    seconds: float
    branch: str | None
    patch: Path | None
    ok: bool
    skipped: int = 0
    """Items with nothing left to do when a coder took them (fixed along with another)."""
    stopped_by: str = ""
    """Why the run stopped early (``"max_steps"``, ``"max_tokens"``, ``"max_seconds"``), or
    ``""`` when every item was finished."""
    errors: tuple[str, ...] = ()
    """Typed errors the run met and recorded (a brain's bad answer...), as ``Type: message``."""
    remembered: int = 0
    """Verdicts newly stored in memory at the end (``SwarmConfig.memory``)."""

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready values (paths as strings)."""
        data = asdict(self)
        data["patch"] = str(self.patch) if self.patch is not None else None
        data["errors"] = list(self.errors)
        return data
