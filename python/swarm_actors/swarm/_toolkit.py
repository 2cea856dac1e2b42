"""The roles' tools: the linter (ruff), its fixer, and the tests, via ``swarm_actors.tools``.

``Toolkit`` is what a role calls; subclass it to change a tool (a benchmark's instant stubs,
another linter).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from swarm_actors.errors import ToolError
from swarm_actors.events import ToolRun
from swarm_actors.swarm._brainio import LintFinding
from swarm_actors.tools import CheckResult, Checks, CheckSummary

__all__ = ["Toolkit", "detect_test_cmd"]

_PYTEST_CONFIG = re.compile(r"^\[(?:tool:pytest|pytest|tool\.pytest\.ini_options)\]", re.M)


def _has_pytest_config(root: Path) -> bool:
    """Whether ``root`` has a pytest configuration of its own (pytest would stop there)."""
    if (root / "pytest.ini").is_file() or (root / ".pytest.ini").is_file():
        return True
    for name in ("pyproject.toml", "setup.cfg", "tox.ini"):
        path = root / name
        try:
            if path.is_file() and _PYTEST_CONFIG.search(path.read_text("utf-8", "replace")):
                return True
        except OSError:
            continue
    return False


def _uses_pytest(root: Path) -> bool:
    if _has_pytest_config(root) or (root / "conftest.py").is_file():
        return True
    for tests in (root / "tests", root / "test"):
        if tests.is_dir() and any(
            "import pytest" in p.read_text("utf-8", "replace")
            for p in tests.rglob("*.py")
            if p.is_file()
        ):
            return True
    return False


def detect_test_cmd(root: str | os.PathLike[str], python: str = sys.executable) -> tuple[str, ...]:
    """How to run the tests of the project at ``root`` with ``python``.

    pytest when the project uses it (a pytest config, a ``conftest.py``, tests importing
    pytest), else ``unittest discover``. A project without a pytest configuration of its own
    runs with an empty one and itself as the root: pytest would otherwise take the
    configuration of a project enclosing the workspace (its options, plugins, test paths).
    """
    if _uses_pytest(Path(root)):
        cmd: tuple[str, ...] = (python, "-m", "pytest", "-q", "-p", "no:cacheprovider")
        if not _has_pytest_config(Path(root)):
            cmd += ("-c", os.devnull, "--rootdir", ".")
        return cmd
    start = "tests" if (Path(root) / "tests").is_dir() else "."
    return (python, "-m", "unittest", "discover", "-s", start, "-t", ".")


_PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped)\b")
_PYTEST_LINE = re.compile(r"^=*\s*(?:\d+ \w+(?:, )?)+ in [\d.]+s", re.M)
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in", re.M)
_UNITTEST_FAILED = re.compile(r"^FAILED \(([^)]*)\)", re.M)
_FAILING = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)
_UNITTEST_FAILING = re.compile(r"^(?:FAIL|ERROR): (\S+ \([^)]*\))", re.M)


def count_tests(result: CheckResult) -> CheckSummary:
    """Passed, failed, errors and skipped from pytest's or unittest's output."""
    text = (result.stdout + b"\n" + result.stderr).decode("utf-8", "replace")
    items = tuple(_FAILING.findall(text) or _UNITTEST_FAILING.findall(text))
    line = _PYTEST_LINE.findall(text)
    if line:
        counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
        for n, kind in _PYTEST_COUNTS.findall(line[-1]):
            counts["errors" if kind.startswith("error") else kind] += int(n)
        return CheckSummary(**counts, text=line[-1].strip("= "), items=items)
    ran = _UNITTEST_RAN.findall(text)
    if ran:
        total = int(ran[-1])
        bad = {"failures": 0, "errors": 0, "skipped": 0, "expected failures": 0}
        failed = _UNITTEST_FAILED.findall(text)
        for part in failed[-1].split(",") if failed else ():
            key, _, value = part.strip().partition("=")
            if key in bad and value.isdigit():
                bad[key] = int(value)
        skipped = re.findall(r"OK \(skipped=(\d+)\)", text)
        bad["skipped"] += int(skipped[-1]) if skipped else 0
        passed = total - bad["failures"] - bad["errors"] - bad["skipped"]
        return CheckSummary(
            passed=max(passed, 0),
            failed=bad["failures"],
            errors=bad["errors"],
            skipped=bad["skipped"],
            text=f"ran {total}",
            items=items,
        )
    return CheckSummary(text="no test counts in the output", items=items)


class _RuffLocation(msgspec.Struct):
    row: int = 0


class _RuffFix(msgspec.Struct):
    applicability: str = ""


class _RuffItem(msgspec.Struct):
    code: str | None = None
    message: str = ""
    filename: str = ""
    location: _RuffLocation | None = None
    fix: _RuffFix | None = None


_RUFF_ITEMS = msgspec.json.Decoder(list[_RuffItem])


def _findings(output: bytes, root: str) -> list[LintFinding]:
    """The findings in ruff's JSON output, with paths relative to ``root``."""
    found = []
    for item in _RUFF_ITEMS.decode(output or b"[]"):
        if not item.code:  # a syntax error: no rule, nothing to fix
            continue
        name = item.filename
        if os.path.isabs(name):
            name = os.path.relpath(name, root)
        found.append(
            LintFinding(
                file=name.replace(os.sep, "/"),
                code=item.code,
                line=item.location.row if item.location else 0,
                message=item.message,
                fix=item.fix.applicability if item.fix else "",
            )
        )
    return found


class Toolkit:
    """The linter, its fixer and the tests, as the roles use them.

    ``test_cmd``: the tests' command (``None``: ``detect_test_cmd``); ``select``: ruff's rules
    (``None``: the project's config); ``timeout``: seconds per run; ``ruff``: the command
    that runs ruff (default: this interpreter's ``-m ruff``).
    """

    def __init__(
        self,
        *,
        test_cmd: Sequence[str] | None = None,
        select: Sequence[str] | None = None,
        timeout: float = 300.0,
        ruff: Sequence[str] = (sys.executable, "-m", "ruff"),
    ) -> None:
        self.test_cmd = tuple(test_cmd) if test_cmd is not None else None
        """The tests' command (``None``: detected per workspace)."""
        self.select = tuple(select) if select is not None else None
        """ruff's rules (``None``: the project's own configuration)."""
        self.timeout = timeout
        """Seconds per run."""
        self.ruff = tuple(ruff)
        """The command running ruff."""

    @staticmethod
    def _gitignore(root: str) -> tuple[str, ...]:
        """``--no-respect-gitignore`` unless ``root`` is a git checkout of its own.

        ruff skips what an enclosing repository's ``.gitignore`` ignores: a workspace copied
        under an ignored directory of another repository (a ``.nox`` or ``.data`` dir, say)
        would show no findings at all. A checkout of its own (the run's worktree of the user's
        repository) keeps its ignores.
        """
        return () if os.path.exists(os.path.join(root, ".git")) else ("--no-respect-gitignore",)

    def _rules(self, rules: Sequence[str] | None) -> tuple[str, ...]:
        chosen = rules if rules is not None else self.select
        return ("--select", ",".join(chosen)) if chosen else ()

    async def lint(
        self, checks: Checks, *paths: str, rules: Sequence[str] | None = None
    ) -> tuple[CheckResult, list[LintFinding]]:
        """Run ruff (JSON output) on ``paths`` (default the whole root); the run and findings."""
        argv = (
            *self.ruff,
            "check",
            "--output-format",
            "json",
            "--no-cache",
            "--exit-zero",
            *self._gitignore(checks.root),
        )
        result = await checks.run(
            (*argv, *self._rules(rules), *(paths or (".",))), tool="ruff", timeout=self.timeout
        )
        if result.exit_status != 0:
            raise ToolError(
                f"ruff failed (exit {result.exit_status}): "
                f"{result.stderr.decode('utf-8', 'replace')[-300:]} (is ruff installed?)"
            )
        return result, _findings(result.stdout, checks.root)

    async def fix(
        self, root: str, path: str, text: str, rules: Sequence[str], *, unsafe: bool
    ) -> tuple[str, ToolRun]:
        """``text`` (the content of ``path``) with ruff's fixes for ``rules`` applied.

        Also the run, as a ``ToolRun`` for the caller to record. Raises ``ToolError`` if ruff
        fails.
        """
        argv = (
            *self.ruff,
            "check",
            "--fix",
            "--exit-zero",
            "--no-cache",
            *self._gitignore(root),
            *(("--unsafe-fixes",) if unsafe else ("--no-unsafe-fixes",)),
            "--select",
            ",".join(rules),
            "--stdin-filename",
            os.path.join(root, path),
            "-",
        )
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=root,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode()), self.timeout)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        run = ToolRun(
            tool="ruff-fix",
            argv=argv,
            cwd=root,
            exit_status=proc.returncode or 0,
            duration_ns=int((time.perf_counter() - started) * 1e9),
            summary=err.decode("utf-8", "replace").strip()[-300:],
            output_bytes=len(out) + len(err),
        )
        if proc.returncode != 0:
            raise ToolError(f"ruff --fix failed on {path}: {run.summary}", path=path)
        return out.decode("utf-8"), run

    async def compile(self, checks: Checks, path: str) -> CheckResult:
        """Compile ``path`` in memory (no ``.pyc`` is written): does the file still parse."""
        code = "import sys; compile(open(sys.argv[1], 'rb').read(), sys.argv[1], 'exec')"
        argv = (checks.python, "-c", code, path)
        return await checks.run(argv, tool="compile", timeout=self.timeout)

    async def test(self, checks: Checks) -> CheckResult:
        """Run the project's tests in ``checks``' root; the run, counted."""
        argv = self.test_cmd or detect_test_cmd(checks.root, checks.python)
        return await checks.run(argv, tool="tests", timeout=self.timeout, parse=count_tests)
