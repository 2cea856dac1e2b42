"""The public surface: what ``swarm_actors`` exports, its docstrings, and the CLI."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import swarm_actors
from swarm_actors import _cli, events


def test_all_is_sorted_and_complete() -> None:
    exported = swarm_actors.__all__
    assert exported == sorted(exported)
    public = {n for n in dir(swarm_actors) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(swarm_actors, n))}
    assert public - modules == set(exported)


@pytest.mark.parametrize("name", swarm_actors.__all__)
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(swarm_actors, name)
    if name == "ANY":
        obj = type(obj)
    assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_version_is_pep440() -> None:
    parts = swarm_actors.__version__.split(".")
    assert len(parts) == 3
    assert all(p.isdigit() for p in parts)


def test_demo_runs_and_checks_itself(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli.main(["demo", "--tasks", "200", "--workers", "3", "--active", "2000"]) == 0
    out = capsys.readouterr().out
    assert "200 tasks through 3 blocking workers" in out
    assert "all checks passed" in out


def test_cli_rejects_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "swarm_actors._cli", "demo", "--workers", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--workers must be >= 1" in proc.stderr


def test_events_module_all_is_sorted_and_complete() -> None:
    exported = events.__all__
    # isort order, as ruff keeps it: CONSTANTS, then Classes, then functions.
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    public = {n for n in dir(events) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(events, n))}
    assert public - modules == set(exported)


@pytest.mark.parametrize("name", events.__all__)
def test_every_events_name_has_a_docstring(name: str) -> None:
    obj = getattr(events, name)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return  # constants and the Payload union are documented in their defining module
    assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
