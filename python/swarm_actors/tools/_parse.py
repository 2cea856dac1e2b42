"""Reading tools' machine output: pytest's JUnit XML and ruff's JSON, into a ``CheckSummary``."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import msgspec

__all__ = ["CheckSummary", "parse_junit", "parse_ruff"]

_ITEMS = 50


class CheckSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What a tool's machine-readable output says (zeros when it has none)."""

    passed: int = 0
    """Tests passed."""
    failed: int = 0
    """Tests failed, or findings reported (ruff)."""
    errors: int = 0
    """Tests that errored (collection errors included)."""
    skipped: int = 0
    """Tests skipped."""
    text: str = ""
    """One line for humans, e.g. ``"12 passed, 1 failed"``."""
    items: tuple[str, ...] = ()
    """The first failing tests (``file::test``) or findings (``path:row:col CODE message``)."""


def parse_junit(data: bytes) -> CheckSummary:
    """The counts and failing tests of a JUnit XML report (pytest's ``--junitxml``)."""
    root = ElementTree.fromstring(data)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failures = errors = skipped = 0
    items: list[str] = []
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failures += int(suite.get("failures", 0))
        errors += int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                name = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
                if len(items) < _ITEMS:
                    items.append(name)
    passed = max(tests - failures - errors - skipped, 0)
    parts = [f"{passed} passed"]
    parts += [
        f"{n} {w}" for n, w in ((failures, "failed"), (errors, "errors"), (skipped, "skipped")) if n
    ]
    return CheckSummary(
        passed=passed,
        failed=failures,
        errors=errors,
        skipped=skipped,
        text=", ".join(parts),
        items=tuple(items),
    )


class _RuffLocation(msgspec.Struct):
    row: int = 0
    column: int = 0


class _RuffFinding(msgspec.Struct):
    code: str | None = None
    message: str = ""
    filename: str = ""
    location: _RuffLocation | None = None


_ruff_decode = msgspec.json.Decoder(list[_RuffFinding]).decode


def parse_ruff(data: bytes, root: str) -> CheckSummary:
    """The findings of ``ruff check --output-format json`` (paths made relative to ``root``)."""
    findings = _ruff_decode(data)
    items = []
    for finding in findings[:_ITEMS]:
        path = finding.filename
        if path.startswith(root + "/"):
            path = path[len(root) + 1 :]
        where = finding.location or _RuffLocation()
        items.append(f"{path}:{where.row}:{where.column} {finding.code or ''} {finding.message}")
    count = len(findings)
    return CheckSummary(
        failed=count,
        text=f"{count} finding{'s' if count != 1 else ''}",
        items=tuple(items),
    )
