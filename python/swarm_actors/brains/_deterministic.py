"""A deterministic brain: answers by rules from what the request contains, with no model.

For demos, tests and offline runs. The default rules read what tools report in the messages
(pytest's failures and summary line, Python tracebacks, ruff / flake8 / mypy / compiler
diagnostics ``path:line[:col]: ...``, ruff's JSON output) and turn them into a plan: one step
per finding, grouped by file, with the evidence quoted. A unified diff in the request is
reviewed: risky added lines (bare or broad excepts, debuggers, TODOs, prints, credentials)
are findings, none is an approval. With nothing else to read, the request itself is
planned: each sentence or bullet of the last user message becomes a step, with the file
paths it names. The same request always gets the same answer.

With ``json_output`` the answer is a JSON object::

    {"verdict": "changes_needed" | "ok" | "plan", "summary": "...",
     "steps": [{"action": "...", "file": "...", "line": 12, "kind": "...", "evidence": "..."}]}

else the same as numbered text. ``rules`` replaces the default: each is a function of the
request returning an answer (text, or a dict for JSON) or ``None`` to pass to the next.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from swarm_actors.brains._types import BrainRequest, BrainResponse, Usage, estimate_tokens

__all__ = [
    "DeterministicBrain",
    "Finding",
    "Rule",
    "diff_review_rule",
    "findings_in",
    "plan_from_findings",
    "request_plan_rule",
    "tool_report_rule",
]

Rule = Callable[[BrainRequest], "str | dict[str, Any] | None"]
"""A rule: the answer to a request (text, or a dict answered as JSON), or ``None`` to pass."""


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a tool reported: where, what kind, and its words."""

    kind: str
    """``"test_failure"``, ``"test_error"``, ``"exception"``, ``"lint"``, ``"type_error"``,
    ``"compile_error"``, ``"diagnostic"``."""
    file: str = ""
    """The file it is in, as the tool wrote it."""
    line: int = 0
    """The line, or 0."""
    code: str = ""
    """The tool's rule or error code, or the test's name."""
    message: str = ""
    """The tool's message."""


_PYTEST = re.compile(r"^(FAILED|ERROR) (?P<file>[^\s:]+)::(?P<name>\S+)(?: - (?P<msg>.*))?$", re.M)
_DIAG = re.compile(
    r"^(?P<file>[\w./\\-]+\.\w+):(?P<line>\d+)(?::(?P<col>\d+))?:\s*"
    r"(?:(?P<sev>error|warning|note):\s*)?(?P<code>[A-Z]+\d+\b)?\s*(?P<msg>.+)$",
    re.M,
)
_TRACE_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)', re.M)
_EXC_LINE = re.compile(
    r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (?P<msg>.*)$", re.M
)
_RUST = re.compile(
    r"^error(?:\[(?P<code>E\d+)\])?: (?P<msg>.+)\n\s*--> (?P<file>[^:\s]+):(?P<line>\d+)", re.M
)
_SUMMARY = re.compile(r"=+ (?P<body>(?:\d+ \w+(?:, )?)+) in [\d.]+s", re.M)
_CLEAN = re.compile(r"All checks passed!|Success: no issues found|^=+ \d+ passed(?: in|,)", re.M)
_PATH = re.compile(
    r"(?<![\w/])(?:[\w.-]+/)*[\w.-]+\.(?:py|pyi|toml|cfg|ini|md|rst|txt|json|yaml|yml|rs|js|ts)\b"
)


def _ruff_json(text: str) -> list[Finding]:
    """Findings of ruff's ``--output-format=json`` arrays found in ``text``."""
    found: list[Finding] = []
    for match in re.finditer(r"\[\s*\{.*?\}\s*\]", text, re.S):
        try:
            items = json.loads(match.group(0))
        except ValueError:
            continue
        for item in items:
            if isinstance(item, dict) and "filename" in item and "code" in item:
                location = item.get("location") or {}
                found.append(
                    Finding(
                        kind="lint",
                        file=str(item["filename"]),
                        line=int(location.get("row", 0) or 0),
                        code=str(item.get("code") or ""),
                        message=str(item.get("message") or ""),
                    )
                )
    return found


def findings_in(text: str) -> list[Finding]:
    """Every finding the default rules recognise in ``text``, in order, without duplicates."""
    found: list[Finding] = []
    for m in _PYTEST.finditer(text):
        kind = "test_failure" if m.group(1) == "FAILED" else "test_error"
        found.append(Finding(kind=kind, file=m["file"], code=m["name"], message=m["msg"] or ""))
    for m in _RUST.finditer(text):
        found.append(
            Finding(
                kind="compile_error",
                file=m["file"],
                line=int(m["line"]),
                code=m["code"] or "",
                message=m["msg"],
            )
        )
    for m in _DIAG.finditer(text):
        sev = m["sev"] or ""
        if sev == "note":
            continue
        kind = "lint" if m["code"] else "type_error" if sev == "error" else "diagnostic"
        if sev == "error" and m["file"].endswith((".c", ".cc", ".cpp", ".h", ".rs", ".go")):
            kind = "compile_error"
        found.append(
            Finding(
                kind=kind,
                file=m["file"],
                line=int(m["line"]),
                code=m["code"] or "",
                message=m["msg"].strip(),
            )
        )
    found += _ruff_json(text)
    frames = list(_TRACE_FRAME.finditer(text))
    for exc in _EXC_LINE.finditer(text):
        before = [f for f in frames if f.start() < exc.start()]
        where = before[-1] if before else None
        found.append(
            Finding(
                kind="exception",
                file=where["file"] if where else "",
                line=int(where["line"]) if where else 0,
                code=exc["type"],
                message=exc["msg"],
            )
        )
    seen: set[tuple[str, str, int, str, str]] = set()
    unique = []
    for f in found:
        key = (f.kind, f.file, f.line, f.code, f.message)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


_ACTIONS = {
    "test_failure": "Make the failing test {code} pass",
    "test_error": "Fix the error that stops test {code} from running",
    "exception": "Handle or fix the {code} raised here",
    "lint": "Fix lint finding {code}",
    "type_error": "Fix the type error",
    "compile_error": "Fix compile error {code}",
    "diagnostic": "Address what the tool reports",
}


def plan_from_findings(findings: Sequence[Finding]) -> dict[str, Any]:
    """A plan answering ``findings``: one step each, grouped by file (first seen first)."""
    order: dict[str, int] = {}
    for f in findings:
        order.setdefault(f.file, len(order))
    steps = []
    for f in sorted(findings, key=lambda f: (order[f.file], f.line)):
        action = _ACTIONS[f.kind].format(code=f.code).replace("  ", " ").strip()
        where = f"{f.file}:{f.line}" if f.line else f.file
        steps.append(
            {
                "action": f"{action} in {where}" if where else action,
                "file": f.file,
                "line": f.line,
                "kind": f.kind,
                "evidence": f.message[:300],
            }
        )
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    summary = ", ".join(
        f"{n} {kind.replace('_', ' ')}{'s' if n > 1 else ''}" for kind, n in counts.items()
    )
    files = len({f.file for f in findings if f.file})
    return {
        "verdict": "changes_needed",
        "summary": f"{summary} in {files} file{'s' if files != 1 else ''}",
        "steps": steps,
    }


def tool_report_rule(request: BrainRequest) -> dict[str, Any] | None:
    """Plan from what tools reported in the non-system messages; ``None`` if nothing."""
    text = "\n".join(m.content for m in request.messages if m.role != "system")
    findings = findings_in(text)
    if findings:
        return plan_from_findings(findings)
    clean = _CLEAN.search(text)
    if clean:
        summary = _SUMMARY.search(text)
        said = summary["body"] if summary else clean.group(0)
        return {"verdict": "ok", "summary": f"the tools report no problems ({said})", "steps": []}
    return None


_BULLET = re.compile(r"^\s*(?:[-*]|\d+[.)])\s+(?P<item>.+)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _parts(text: str) -> Iterable[str]:
    """The bullets, or else the sentences, of each line of ``text``."""
    for line in text.splitlines():
        bullet = _BULLET.match(line)
        if bullet:
            yield bullet["item"]
        else:
            yield from _SENTENCE_END.split(line)


def request_plan_rule(request: BrainRequest) -> dict[str, Any]:
    """Plan the request itself: a step per bullet or sentence of the last user message."""
    text = request.last_user or request.messages[-1].content
    steps = []
    for raw in _parts(text):
        part = raw.strip()
        if len(part) < 3 or not any(c.isalpha() for c in part):
            continue
        files = sorted(set(_PATH.findall(part)))
        steps.append(
            {"action": part.rstrip("."), "file": files[0] if files else "", "files": files}
        )
        if len(steps) >= 20:
            break
    files = sorted(set(_PATH.findall(text)))
    summary = f"{len(steps)} step{'s' if len(steps) != 1 else ''}"
    if files:
        summary += f" touching {', '.join(files[:5])}{' and more' if len(files) > 5 else ''}"
    return {"verdict": "plan", "summary": summary, "steps": steps}


_DIFF_FILE = re.compile(r"^\+\+\+ (?:b/)?(?P<file>\S+)", re.M)
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(?P<line>\d+)")
#: What a reviewer flags in added lines: (pattern, kind, what to do).
_RISKS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"^\s*except\s*:"), "bare_except", "Catch a specific exception, not everything"),
    (
        re.compile(r"except\s+(?:Base)?Exception\s*:\s*(?:pass)?\s*$"),
        "broad_except",
        "Handle or re-raise: a broad except hides failures",
    ),
    (
        re.compile(r"\b(?:breakpoint\(\)|import pdb|pdb\.set_trace)"),
        "debugger",
        "Remove the debugger",
    ),
    (re.compile(r"\b(?:TODO|FIXME|XXX)\b"), "todo", "Resolve the TODO or track it elsewhere"),
    (re.compile(r"^\s*print\("), "print", "Use logging instead of print"),
    (
        re.compile(r"(?:password|secret|api_key|token)\s*=\s*['\"][^'\"]+['\"]", re.I),
        "secret",
        "Do not commit credentials; read them from the environment",
    ),
)


def diff_review_rule(request: BrainRequest) -> dict[str, Any] | None:
    """Review a unified diff in the request: risky added lines, per file; ``None`` without one."""
    text = "\n".join(m.content for m in request.messages if m.role != "system")
    if not _DIFF_FILE.search(text):
        return None
    steps: list[dict[str, Any]] = []
    files: dict[str, list[int]] = {}  # file -> [added, removed]
    current, line = "", 0
    for raw in text.splitlines():
        head = _DIFF_FILE.match(raw)
        if head:
            current = head["file"]
            files.setdefault(current, [0, 0])
            continue
        hunk = _HUNK.match(raw)
        if hunk:
            line = int(hunk["line"])
            continue
        if not current or raw.startswith("---"):
            continue
        if raw.startswith("+"):
            files[current][0] += 1
            added = raw[1:]
            for pattern, kind, action in _RISKS:
                if pattern.search(added):
                    steps.append(
                        {
                            "action": f"{action} in {current}:{line}",
                            "file": current,
                            "line": line,
                            "kind": kind,
                            "evidence": added.strip()[:300],
                        }
                    )
            line += 1
        elif raw.startswith("-"):
            files[current][1] += 1
        else:
            line += 1
    changed = ", ".join(f"{f} (+{a}/-{r})" for f, (a, r) in files.items())
    if not steps:
        return {"verdict": "ok", "summary": f"no risky lines added in {changed}", "steps": []}
    return {
        "verdict": "changes_needed",
        "summary": f"{len(steps)} finding{'s' if len(steps) != 1 else ''} in {changed}",
        "steps": steps,
    }


def _as_text(answer: dict[str, Any]) -> str:
    lines = [f"{answer.get('verdict', 'plan')}: {answer.get('summary', '')}"]
    for i, step in enumerate(answer.get("steps", ()), 1):
        evidence = f" ({step['evidence']})" if step.get("evidence") else ""
        lines.append(f"{i}. {step.get('action', '')}{evidence}")
    return "\n".join(lines)


class DeterministicBrain:
    """A brain of rules, no model: plans from tool reports, reviews diffs, else plans the request.

    ``rules`` replaces the default ``(tool_report_rule, diff_review_rule, request_plan_rule)``;
    the first rule that answers wins. Usage is estimated. Same request, same answer.
    """

    def __init__(
        self, rules: Iterable[Rule] | None = None, *, provider: str = "deterministic"
    ) -> None:
        self._rules: tuple[Rule, ...] = (
            tuple(rules)
            if rules is not None
            else (tool_report_rule, diff_review_rule, request_plan_rule)
        )
        self._provider = provider

    @property
    def provider(self) -> str:
        """``"deterministic"`` unless given."""
        return self._provider

    async def complete(self, request: BrainRequest) -> BrainResponse:
        """The first rule's answer (JSON when the request asks for it)."""
        answer: str | dict[str, Any] | None = None
        for rule in self._rules:
            answer = rule(request)
            if answer is not None:
                break
        if answer is None:
            answer = {"verdict": "plan", "summary": "no rule applies", "steps": []}
        if isinstance(answer, dict):
            text = json.dumps(answer, sort_keys=True) if request.json_output else _as_text(answer)
        else:
            text = answer
        prompt = sum(estimate_tokens(m.content) for m in request.messages)
        return BrainResponse(
            text=text,
            usage=Usage(prompt, estimate_tokens(text)),
            model=request.model or "rules",
            provider=self._provider,
        )
