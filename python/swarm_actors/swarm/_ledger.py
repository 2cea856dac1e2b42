"""The coordinator's book of a run: items and their ends, the budget, progress, errors.

One per run, in the process running the architect and the reviewer (the roles there update it
from their handlers, one event loop: no locks). Remote coders never see it: they learn the
run's state from the architect's answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from swarm_actors._log import get_logger
from swarm_actors.swarm._config import Progress

__all__ = ["Ledger"]

log = get_logger("swarm_actors.swarm")

TERMINAL = ("approved", "escalated", "skipped")


class Ledger:
    """Counts, the budget and the end of a run (``finished`` is set when nothing is left)."""

    def __init__(
        self,
        *,
        max_steps: int,
        max_tokens: int | None,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.on_progress = on_progress
        self.steps = 0
        self.tokens = 0
        self.events = 0
        self.items = 0
        self.outcomes: dict[str, str] = {}
        self.counts = {"approved": 0, "rejected": 0, "reverted": 0, "escalated": 0, "skipped": 0}
        self.errors: list[str] = []
        self.stopped_by = ""
        self.planned = False
        self.finished = asyncio.Event()
        self.approved_diffs: list[str] = []

    # --- budget ------------------------------------------------------------------------

    def step(self) -> bool:
        """Spend one step; ``False`` (and the run stops) once the budget is spent."""
        if self.stopped_by:
            return False
        self.steps += 1
        if self.steps > self.max_steps:
            self.stop("max_steps")
            return False
        return True

    def spend_tokens(self, n: int) -> None:
        """Count ``n`` brain tokens; past ``max_tokens`` the run stops."""
        self.tokens += n
        if self.max_tokens is not None and self.tokens > self.max_tokens:
            self.stop("max_tokens")

    def stop(self, reason: str) -> None:
        """Stop handing out work (``reason`` goes into the summary)."""
        if not self.stopped_by:
            self.stopped_by = reason
            log.warning("swarm budget reached: stopping", reason=reason, steps=self.steps)

    # --- items -------------------------------------------------------------------------

    def add_items(self, n: int) -> None:
        self.items += n

    def plan_done(self) -> None:
        self.planned = True
        self._check_finished()

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def finish(self, item_id: str, outcome: str) -> None:
        """``item_id`` ended: ``"approved"``, ``"escalated"`` or ``"skipped"``."""
        if item_id in self.outcomes:
            return
        self.outcomes[item_id] = outcome
        self.counts[outcome] += 1
        self._check_finished()

    @property
    def done(self) -> int:
        return len(self.outcomes)

    @property
    def pending(self) -> int:
        return self.items - len(self.outcomes)

    def _check_finished(self) -> None:
        if self.planned and self.pending <= 0:
            self.finished.set()

    # --- progress ----------------------------------------------------------------------

    def note(self, agent: str, role: str, activity: str, events: int = 1) -> None:
        """Count ``events`` recorded and tell ``on_progress`` what ``agent`` is doing."""
        self.events += events
        if self.on_progress is not None:
            try:
                self.on_progress(
                    Progress(agent, role, activity, self.done, self.pending, self.events)
                )
            except Exception as exc:  # a display's bug must not stop the swarm
                log.error("on_progress raised", error=repr(exc))

    def error(self, exc: BaseException | str) -> str:
        """Note a typed error the run met (``Type: message``); the text."""
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.errors.append(text[:500])
        return text
