"""What the roles ask their brain, how its answers are checked, and the deterministic rules.

The architect asks for a plan and the reviewer for a verdict, each as one user message holding
a JSON object (``{"task": "swarm.plan", ...}``, ``{"task": "swarm.review", ...}``) after an
instruction saying what to answer. Any ``Brain`` can answer: a model reads the instruction;
``default_brain()`` (a ``DeterministicBrain`` with ``plan_rule`` and ``review_rule`` first)
answers by rules, so the real work is done by the linter and the tests. An answer that is
empty, over ``MAX_ANSWER_BYTES``, not JSON or not the JSON asked for raises
``BrainReplyError``: the role records it and the item is escalated (never retried forever).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from swarm_actors._exceptions import BrainError, BrainReplyError
from swarm_actors.brains import (
    Brain,
    BrainRequest,
    BrainResponse,
    DeterministicBrain,
    diff_review_rule,
    request_plan_rule,
    system,
    tool_report_rule,
    user,
)

__all__ = [
    "MAX_ANSWER_BYTES",
    "LintFinding",
    "PlanAnswer",
    "PlannedItem",
    "ReviewAnswer",
    "default_brain",
    "parse_plan",
    "parse_review",
    "plan_request",
    "plan_rule",
    "review_request",
    "review_rule",
    "rule_family",
]

MAX_ANSWER_BYTES = 256 << 10
"""The largest answer a role accepts from its brain (bigger: ``BrainReplyError``)."""


class LintFinding(msgspec.Struct, frozen=True, kw_only=True):
    """One linter finding, as the architect shows it to its brain."""

    file: str
    code: str
    line: int = 0
    message: str = ""
    fix: str = ""
    """``"safe"``, ``"unsafe"``, ``"display-only"`` or ``""`` (no fix)."""


class PlannedItem(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """One item of a plan: fix ``rules`` in ``file`` (``unsafe``: ruff's unsafe fixes)."""

    file: str
    rules: list[str]
    unsafe: bool = False
    why: str = ""


class PlanAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A plan: the items, the findings left alone, and why."""

    items: list[PlannedItem]
    rationale: str = ""
    alternatives: list[str] = []
    confidence: float = 0.5
    skipped: list[str] = []


class ReviewAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A verdict on one change."""

    verdict: str
    reason: str = ""
    confidence: float = 0.5


_PLAN_INSTRUCTION = (
    "You are the architect of a swarm of coders fixing a Python project. Plan the linter's "
    "findings into work items: one per file and rule family for safe fixes, one per file and "
    "rule for unsafe fixes (they may change behaviour: the reviewer's tests decide them). "
    'Answer with a JSON object: {"items": [{"file": str, "rules": [str], "unsafe": bool, '
    '"why": str}], "rationale": str, "alternatives": [str], "confidence": float, '
    '"skipped": [str]}.'
)
_REVIEW_INSTRUCTION = (
    "You are the reviewer of a change to a Python project. From the tests' and the linter's "
    'results and the diff, answer with a JSON object: {"verdict": "approve" | "reject", '
    '"reason": str, "confidence": float}. Never approve a change the tests fail with.'
)


def rule_family(code: str) -> str:
    """A rule's family: the letters of its code (``"F"`` for ``F401``, ``"UP"`` for ``UP006``)."""
    match = re.match(r"[A-Z]+", code)
    return match.group(0) if match else code


def plan_request(goal: str, findings: Sequence[LintFinding]) -> BrainRequest:
    """The architect's request for a plan of ``findings``."""
    body = {"task": "swarm.plan", "goal": goal, "findings": msgspec.to_builtins(findings)}
    return BrainRequest(
        messages=(system(_PLAN_INSTRUCTION), user(json.dumps(body, sort_keys=True))),
        json_output=True,
    )


def review_request(facts: dict[str, Any]) -> BrainRequest:
    """The reviewer's request for a verdict on the change ``facts`` describe."""
    body = {"task": "swarm.review", **facts}
    return BrainRequest(
        messages=(system(_REVIEW_INSTRUCTION), user(json.dumps(body, sort_keys=True))),
        json_output=True,
    )


def _task(request: BrainRequest, task: str) -> dict[str, Any] | None:
    text = request.last_user
    if not text.startswith("{") or f'"{task}"' not in text:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("task") == task else None


def plan_rule(request: BrainRequest) -> dict[str, Any] | None:
    """Plan a ``swarm.plan`` request by rule (``None`` for another request).

    Safe fixes per file and rule family, unsafe ones per file and rule, findings without a
    fix left alone.
    """
    body = _task(request, "swarm.plan")
    if body is None:
        return None
    safe: dict[tuple[str, str], list[str]] = {}
    unsafe: dict[tuple[str, str], int] = {}
    skipped: list[str] = []
    for f in body.get("findings", ()):
        file, code, fix = str(f.get("file", "")), str(f.get("code", "")), f.get("fix", "")
        if fix == "safe":
            codes = safe.setdefault((file, rule_family(code)), [])
            if code not in codes:
                codes.append(code)
        elif fix == "unsafe":
            unsafe[(file, code)] = unsafe.get((file, code), 0) + 1
        else:
            skipped.append(f"{file}:{f.get('line', 0)} {code}: the linter has no fix for it")
    items = [
        {
            "file": file,
            "rules": sorted(codes),
            "unsafe": False,
            "why": f"safe fixes of the {family} family in {file}",
        }
        for (file, family), codes in sorted(safe.items())
    ]
    items += [
        {
            "file": file,
            "rules": [code],
            "unsafe": True,
            "why": f"{n} unsafe fix{'es' if n > 1 else ''} of {code} in {file}: "
            "it may change behaviour, so it stands alone for the tests to decide",
        }
        for (file, code), n in sorted(unsafe.items())
    ]
    return {
        "items": items,
        "rationale": f"{len(items)} items: one per file and rule family for safe fixes, one per "
        "file and rule for unsafe fixes, so a rejected unsafe fix takes no safe fix with it",
        "alternatives": [
            "one item per finding: too many reviews, fixes of one rule conflict in a file",
            "one item per file: one unsafe fix would sink the file's safe fixes",
            "safe and unsafe fixes together: the reviewer could not tell which broke a test",
        ],
        "confidence": 0.8 if items else 0.5,
        "skipped": skipped,
    }


def review_rule(request: BrainRequest) -> dict[str, Any] | None:
    """Decide a ``swarm.review`` request from its facts (``None`` for another request).

    Approve when the file compiles, no test fails that passed before the run (and none goes
    missing) and the linter finds fewer of the item's rules; else reject, saying why.
    """
    body = _task(request, "swarm.review")
    if body is None:
        return None
    tests = body.get("tests") or {}
    lint = body.get("lint") or {}
    if (body.get("compile") or {}).get("exit_status", 0) != 0:
        return {
            "verdict": "reject",
            "reason": "the changed file does not compile",
            "confidence": 0.99,
        }
    failing = int(tests.get("failed", 0)) + int(tests.get("errors", 0))
    failing_before = int(tests.get("failing_before", 0))
    passed, before = int(tests.get("passed", 0)), int(tests.get("passed_before", 0))
    new = list(tests.get("new_failures", ()))
    exit_status = tests.get("exit_status", 1)
    if (
        new
        or failing > failing_before
        or (exit_status != 0 and exit_status != tests.get("exit_status_before", 0))
    ):
        names = ", ".join(new[:5] or tests.get("failing", [])[:5]) or "see the test output"
        return {
            "verdict": "reject",
            "reason": f"the tests fail with this change ({failing} failing, {failing_before} "
            f"before: {names})",
            "confidence": 0.95,
        }
    if passed < before:
        return {
            "verdict": "reject",
            "reason": f"fewer tests pass ({passed}, {before} before): some no longer run",
            "confidence": 0.9,
        }
    left, was = int(lint.get("remaining", 0)), int(lint.get("before", 0))
    if was and left >= was:
        return {
            "verdict": "reject",
            "reason": f"the linter still finds {left} of {was} findings of the item's rules",
            "confidence": 0.7,
        }
    return {
        "verdict": "approve",
        "reason": f"the tests pass ({passed} passed) and the item's findings went from {was} "
        f"to {left}",
        "confidence": 0.9,
    }


def default_brain() -> DeterministicBrain:
    """The brain with no model: ``plan_rule`` and ``review_rule``, then the default rules."""
    return DeterministicBrain(
        (plan_rule, review_rule, tool_report_rule, diff_review_rule, request_plan_rule)
    )


def _decode(response: BrainResponse, kind: type[Any], what: str) -> Any:
    text = response.text
    if not text.strip():
        raise BrainReplyError(f"the {what} answer is empty", provider=response.provider)
    if len(text.encode()) > MAX_ANSWER_BYTES:
        raise BrainReplyError(
            f"the {what} answer is {len(text.encode())} bytes, over the {MAX_ANSWER_BYTES} "
            "accepted",
            provider=response.provider,
        )
    try:
        return msgspec.json.decode(text, type=kind)
    except msgspec.DecodeError as exc:
        raise BrainReplyError(
            f"the {what} answer is not the JSON asked for ({exc}): {text[:80]!r}",
            provider=response.provider,
        ) from exc


def parse_plan(response: BrainResponse) -> PlanAnswer:
    """The plan in ``response``; ``BrainReplyError`` if it is not one."""
    answer: PlanAnswer = _decode(response, PlanAnswer, "plan")
    if not 0.0 <= answer.confidence <= 1.0:
        raise BrainReplyError(f"plan confidence {answer.confidence} is outside [0, 1]")
    return answer


def parse_review(response: BrainResponse) -> ReviewAnswer:
    """The verdict in ``response``; ``BrainReplyError`` if it is not one."""
    answer: ReviewAnswer = _decode(response, ReviewAnswer, "review")
    if answer.verdict not in ("approve", "reject"):
        raise BrainReplyError(
            f"the review verdict is {answer.verdict!r}, not 'approve' or 'reject'",
            provider=response.provider,
        )
    if not 0.0 <= answer.confidence <= 1.0:
        raise BrainReplyError(f"review confidence {answer.confidence} is outside [0, 1]")
    return answer


async def ask(brain: Brain, request: BrainRequest) -> BrainResponse:
    """``brain.complete(request)``; any failure but cancellation becomes a ``BrainError``."""
    try:
        return await brain.complete(request)
    except BrainError:
        raise
    except Exception as exc:  # a brain breaking its contract is still a brain's failure
        raise BrainReplyError(f"the brain failed: {type(exc).__name__}: {exc}") from exc
