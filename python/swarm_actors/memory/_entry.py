"""What memory holds (``MemoryEntry``), when an entry counts as verified, and its exact keys.

An entry's id is the hash of its content (never of the run that produced it): the same outcome
met again in a later run is a duplicate and is not stored twice. Duplicates are what teaches an
agent to skim past memory, so the store refuses them rather than ranking them down.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import msgspec

from swarm_actors.tools import unified_diff

__all__ = [
    "APPROVED",
    "DECISION",
    "REJECTED",
    "MemoryEntry",
    "change_key",
    "failure_signatures",
    "is_verified",
    "query_keys",
]

APPROVED = "approved"
"""An approved change: its evidence is the passing check runs (``ToolRun`` event ids)."""
REJECTED = "rejected"
"""A rejected attempt: its evidence is the reviewer's reason (and the checks it cited)."""
DECISION = "decision"
"""Any other decision (a plan...): unverified, stored only with ``verified_only=False``."""

# pytest node ids (tests/test_x.py::Class::test_name[param]) and exception class names: the
# parts of a test failure that stay the same from one run of the project to the next.
_NODE_ID = re.compile(r"[\w./-]+\.py::[\w.:\[\]-]+")
_ERROR = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception|Failure)\b")
_PATH = re.compile(r"(?<![\w/.-])[\w.-]*(?:/[\w.-]+)*\.(?:py|pyi|toml|cfg|ini|txt|md|json)\b")
_RULE = re.compile(r"\b[A-Z]{1,5}[0-9]{3,4}\b")  # F401, PLR0913, ASYNC100


class MemoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One remembered outcome of a run: a change approved or rejected, or a decision."""

    kind: str
    """``"approved"``, ``"rejected"`` or ``"decision"``."""
    text: str
    """What it was, in words: searched by BM25 and by embeddings."""
    path: str = ""
    """The file it is about, relative to the project (an exact key)."""
    rules: tuple[str, ...] = ()
    """The linter's rule codes it is about (exact keys)."""
    signatures: tuple[str, ...] = ()
    """Failure signatures (failing test ids, error types; exact keys): ``failure_signatures``."""
    change_key: str = ""
    """What the change did, independent of line numbers (``change_key``; an exact key)."""
    before_hash: str = ""
    """SHA-256 hex of the file before the change."""
    after_hash: str = ""
    """SHA-256 hex of the file after the change."""
    reason: str = ""
    """The reviewer's reason (a rejection is verified by it)."""
    evidence: tuple[str, ...] = ()
    """Event ids backing the outcome: for an approval, the check runs that passed."""
    run_id: str = ""
    """The run it comes from (not part of the id: the same outcome twice is one entry)."""
    decision_id: str = ""
    """The ``AgentDecision`` event that decided it, in that run's journal."""
    recorded_ns: int = 0
    """When it was stored (ns since the epoch)."""

    @property
    def id(self) -> str:
        """``mem-`` and 20 hex digits of the content hash (what ``memory_ids`` cite)."""
        return "mem-" + self.content_hash()[:20]

    def content_hash(self) -> str:
        """SHA-256 hex of what it says (kind, text, keys, reason), not of where it came from.

        The run, the evidence and the file's hashes are left out: the same fix approved on a
        file that another change had touched first (another order of the same run) is the
        same outcome.
        """
        parts = (
            self.kind,
            self.text,
            self.path,
            "\x1f".join(self.rules),
            "\x1f".join(self.signatures),
            self.change_key,
            self.reason,
        )
        return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()

    def exact_keys(self) -> tuple[str, ...]:
        """Its exact keys: ``path:``, ``rule:``, ``sig:``, ``change:`` and ``kind:`` terms."""
        found = [f"kind:{self.kind}"]
        if self.path:
            found.append(f"path:{self.path}")
        found += [f"rule:{r}" for r in self.rules]
        found += [f"sig:{s}" for s in self.signatures]
        if self.change_key:
            found.append(f"change:{self.change_key}")
        return tuple(found)


def is_verified(entry: MemoryEntry) -> bool:
    """Whether evidence backs ``entry``.

    An approval must cite the check runs that passed (``evidence``); a rejection must carry the
    reviewer's reason. Anything else is unverified: automatically mined memories that no check
    backs are what misleads agents, so the store keeps them out unless told otherwise.
    """
    if entry.kind == APPROVED:
        return bool(entry.evidence)
    if entry.kind == REJECTED:
        return bool(entry.reason.strip())
    return False


def change_key(path: str, before: str, after: str) -> str:
    """What a change does to ``path``, as 32 hex digits: its removed and added lines only.

    Line numbers and untouched lines are left out, so the same fix made on a file that another
    change touched elsewhere has the same key (one run's order of changes is not the next's).
    """
    # The workspace's own diff (the same alignment as the diffs recorded in FileChanges, which
    # ``change_key_of_diff`` reads), context and all: only the changed lines are kept.
    diff = unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True), path)
    return _key(path, diff.splitlines())


def change_key_of_diff(path: str, diff: str) -> str:
    """``change_key`` of the change a unified diff of ``path`` shows (any amount of context).

    The same key as ``change_key(path, before, after)`` for that diff's two sides, without
    comparing them again: the removed and added lines come in the same order however many
    lines of context the hunks hold.
    """
    return _key(path, diff.splitlines())


def _key(path: str, lines: Iterable[str]) -> str:
    body = [
        line.rstrip() for line in lines if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return hashlib.sha256("\n".join([path, *body]).encode()).hexdigest()[:32]


def failure_signatures(text: str) -> tuple[str, ...]:
    """The failure signatures in ``text`` (a test output, a reviewer's reason), sorted.

    Failing tests' node ids (``tests/test_x.py::Case::test_y``) and exception class names
    (``KeyError``): what stays the same when the same failure happens again.
    """
    found = {m.rstrip(".,;:)") for m in _NODE_ID.findall(text)}
    found |= set(_ERROR.findall(text))
    return tuple(sorted(found))


def query_keys(text: str) -> tuple[str, ...]:
    """The exact keys a free-text query names: file paths, rule codes, failure signatures."""
    keys = [f"sig:{s}" for s in failure_signatures(text)]
    rest = _NODE_ID.sub(" ", text)
    keys += [f"path:{p}" for p in dict.fromkeys(_PATH.findall(rest))]
    keys += [f"rule:{r}" for r in dict.fromkeys(_RULE.findall(rest))]
    return tuple(keys)
