"""The messages the roles exchange (msgspec structs: the same classes in every process)."""

from __future__ import annotations

import msgspec

__all__ = [
    "GiveTurn",
    "Review",
    "TakeTurn",
    "TakeWork",
    "Verdict",
    "WorkItem",
    "Working",
]


class WorkItem(msgspec.Struct, frozen=True, kw_only=True):
    """One unit of work in the bag: apply the linter's fixes for ``rules`` in ``path``."""

    id: str
    """Unique in the run (``"3"``)."""
    path: str
    """The file, relative to the workspace."""
    rules: tuple[str, ...]
    """The linter's rule codes to fix (``("F401",)``)."""
    unsafe: bool = False
    """Whether the fixes are ruff's unsafe ones (which may change behaviour)."""
    why: str = ""
    """The architect's reason for the item."""
    attempt: int = 1
    """Which attempt this is (1 first)."""
    feedback: str = ""
    """The reviewer's reason for rejecting the previous attempt."""
    rejected: tuple[str, ...] = ()
    """Content hashes (SHA-256 hex) of the file as earlier attempts left it, all rejected."""
    cause: str = ""
    """The event id that put the item in the bag (a plan decision or a rejection)."""


class Working(msgspec.Struct, frozen=True):
    """Tell a coder to pull items from the bag until it is told to stop."""


class TakeWork(msgspec.Struct, frozen=True):
    """A remote coder asks the architect for an item.

    The answer: a ``WorkItem``, ``None`` (none now) or ``""`` (the run is over: stop).
    """

    coder: str = ""


class TakeTurn(msgspec.Struct, frozen=True):
    """A remote coder asks for the workspace's turn (one change under review at a time)."""

    coder: str = ""


class GiveTurn(msgspec.Struct, frozen=True):
    """A remote coder hands the workspace's turn back."""

    coder: str = ""


class Review(msgspec.Struct, frozen=True, kw_only=True):
    """A coder hands its attempt at ``item`` to the reviewer.

    ``kind``: ``"change"`` (written: ``change_id`` is its ``StateChange``), ``"noop"`` (the
    fixes change nothing now), ``"no_progress"`` (the result is one already rejected) or
    ``"failed"`` (the attempt raised: ``diff`` says what).
    """

    item: WorkItem
    kind: str = "change"
    coder: str = ""
    change_id: str = ""
    before_hash: str = ""
    before: str = ""
    """The file's content before the change (what a revert writes back)."""
    after_hash: str = ""
    diff: str = ""
    fix_run: str = ""
    """The event id of the coder's ``ToolRun`` of the fixer."""
    change_key: str = ""
    """What the change does (``swarm_actors.memory.change_key``: its changed lines)."""
    memory_ids: tuple[str, ...] = ()
    """Memory entries the coder relied on (``no_progress``: the earlier run's rejection)."""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The reviewer's answer to a ``Review``, and its decision's event id.

    ``outcome``: ``"approved"``, ``"rejected"`` (back in the bag), ``"escalated"`` or
    ``"skipped"``.
    """

    outcome: str
    reason: str = ""
    decision_id: str = ""
