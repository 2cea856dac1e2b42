"""The demo's sample project does what the demo needs, checked with the real ruff and pytest.

As shipped its tests pass and ruff (with the sample's own config) finds things to fix. ruff's
safe fixes keep the tests passing. The traps are findings whose *unsafe* fix changes behaviour
a test checks: each one, applied alone, makes a test fail (so a reviewer that runs the tests
must reject it), while the sample's other unsafe fixes are harmless (a reviewer must not reject
a change just because ruff calls it unsafe). If a ruff release changes which fixes are safe,
these tests say so (pyproject.toml caps ruff below the next minor for that reason).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from swarm_actors._cli._demo import copy_tree, diff_trees, sample_project

TRAPS = {
    "B006": "ledger/money.py",  # a memo cache, deliberately a shared mutable default
    "C419": "ledger/entries.py",  # all([...]) checks every entry; a generator stops at the first
    "E712": "ledger/config.py",  # `== True`: the string "no" must not switch a flag on
    "RUF015": "ledger/report.py",  # next(iter(...)) raises StopIteration, not IndexError
}
"""Rule -> the file where its unsafe fix breaks a test (the rule occurs nowhere else)."""

HARMLESS = {"C408": "ledger/report.py"}
"""An unsafe fix that changes nothing the tests check."""


def ruff(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", "."],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def findings(cwd: Path) -> list[dict[str, Any]]:
    result = ruff(cwd, "check", "--output-format", "json", "--exit-zero")
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


RUNNERS = {
    "pytest": ("-m", "pytest", "-q", "-p", "no:cacheprovider"),
    "unittest": ("-m", "unittest", "discover", "-s", "tests", "-t", "."),
}
"""The sample's tests run with either (the demo needs no pytest)."""


def run_tests(cwd: Path, runner: str = "pytest") -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    result = subprocess.run(
        [sys.executable, *RUNNERS[runner]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    root = tmp_path / "sample"
    assert copy_tree(sample_project(), root) > 5
    return root


def changed_files(sample: Path) -> set[str]:
    diff = diff_trees(sample_project(), sample)
    return {line.split(" b/")[-1] for line in diff.splitlines() if line.startswith("diff --git")}


def test_the_sample_is_shipped_with_tests_that_pass_and_findings(sample: Path) -> None:
    assert (sample / "pyproject.toml").is_file()
    ok, output = run_tests(sample, "pytest")
    assert ok, output
    assert "20 passed in" in output
    ok, output = run_tests(sample, "unittest")
    assert ok, output
    assert "Ran 20 tests" in output
    found = findings(sample)
    codes = [f["code"] for f in found]
    assert len(found) >= 15
    assert not [f for f in found if f["code"] is None], "a syntax error in the sample"
    safe = [f for f in found if f["fix"] and f["fix"]["applicability"] == "safe"]
    assert len(safe) >= 12
    assert {c[:1] for c in codes} >= {"F", "I", "U", "E", "R", "B", "C"}  # several rule families
    for rule, path in {**TRAPS, **HARMLESS}.items():
        where = [f for f in found if f["code"] == rule]
        assert len(where) == 1, f"{rule} should occur once, at {path}: {where}"
        assert where[0]["filename"].endswith(path)
        assert where[0]["fix"]["applicability"] == "unsafe"


def test_the_safe_fixes_keep_the_tests_passing(sample: Path) -> None:
    before = findings(sample)
    result = ruff(sample, "check", "--fix", "--exit-zero")
    assert result.returncode == 0, result.stderr
    ok, output = run_tests(sample)
    assert ok, output
    after = findings(sample)
    # What is left is exactly the unsafe fixes: the traps and the harmless ones.
    assert sorted(f["code"] for f in after) == sorted({**TRAPS, **HARMLESS})
    assert all(f["fix"]["applicability"] == "unsafe" for f in after)
    assert len(before) - len(after) >= 12


def test_the_safe_fixes_of_one_family_create_no_finding_of_another(sample: Path) -> None:
    # A planner that makes one item per file and rule family (and does not look again) ends
    # with only the unsafe findings left, in whatever order the items are done.
    families: dict[str, set[str]] = {}
    for f in findings(sample):
        if f["fix"] and f["fix"]["applicability"] == "safe":
            families.setdefault(f["code"].rstrip("0123456789"), set()).add(f["code"])
    assert len(families) >= 4
    for family in sorted(families, reverse=True):
        ruff(sample, "check", "--select", ",".join(sorted(families[family])), "--fix")
    assert sorted(f["code"] for f in findings(sample)) == sorted({**TRAPS, **HARMLESS})


@pytest.mark.parametrize("rule", sorted(TRAPS))
def test_each_trap_alone_breaks_a_test(sample: Path, rule: str) -> None:
    result = ruff(sample, "check", "--select", rule, "--fix", "--unsafe-fixes", "--exit-zero")
    assert result.returncode == 0, result.stderr
    assert changed_files(sample) == {TRAPS[rule]}
    assert not [f for f in findings(sample) if f["code"] == rule]
    for runner in RUNNERS:
        ok, output = run_tests(sample, runner)
        assert not ok, f"the unsafe fix of {rule} broke no test ({runner}):\n{output}"
        assert re.search(r"\d+ failed|FAILED \(", output), output


@pytest.mark.parametrize("rule", sorted(HARMLESS))
def test_the_other_unsafe_fixes_are_harmless(sample: Path, rule: str) -> None:
    ruff(sample, "check", "--select", rule, "--fix", "--unsafe-fixes", "--exit-zero")
    assert changed_files(sample) == {HARMLESS[rule]}
    ok, output = run_tests(sample)
    assert ok, output


def test_the_copy_leaves_caches_out(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (src / "pkg" / "m.py").write_text("x = 1\n")
    (src / ".git").mkdir()
    (src / ".venv").mkdir()
    (src / "link.py").symlink_to(src / "pkg" / "m.py")
    assert copy_tree(src, tmp_path / "dst") == 1
    assert sorted(
        p.relative_to(tmp_path / "dst").as_posix() for p in (tmp_path / "dst").rglob("*")
    ) == [
        "pkg",
        "pkg/m.py",
    ]
