"""swarm_actors.tools.Checks: process groups killed, output capped, env cleaned, results parsed."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from helpers import until
from swarm_actors.errors import (
    CheckTimeoutError,
    InvalidArgumentError,
    JournalClosedError,
    PathEscapeError,
    ToolError,
)
from swarm_actors.events import BlobStore, MemoryJournal, ToolRun
from swarm_actors.tools import Checks, Workspace, network_isolation, parse_junit

pytestmark = pytest.mark.asyncio


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, dead but not reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def checks(tmp_path: Path, journal: MemoryJournal, blobs: BlobStore) -> Checks:
    return Checks(tmp_path, journal=journal, blobs=blobs, timeout=60)


def runs(journal: MemoryJournal) -> list[ToolRun]:
    found = []
    for entry in journal.entries():
        assert isinstance(entry.event.payload, ToolRun)
        found.append(entry.event.payload)
    return found


async def test_a_run_is_captured_and_recorded(
    checks: Checks, journal: MemoryJournal, blobs: BlobStore
) -> None:
    result = await checks.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_status, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert not result.ok
    assert not result.truncated
    (run,) = runs(journal)
    assert run.tool == "sh"
    assert run.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")
    assert run.exit_status == 3
    assert run.duration_ns > 0
    assert blobs.get(run.output_ref) == b"out\n\n--- stderr ---\nerr\n"
    assert run.output_ref == result.output_ref
    assert run.output_preview.startswith("out")
    isolated = await network_isolation()
    assert ("network isolated" if isolated else "network shared") in run.summary


async def test_the_timeout_kills_the_whole_process_group(
    checks: Checks, tmp_path: Path, journal: MemoryJournal
) -> None:
    script = "sleep 1000 & echo $! > child.pid; echo started; wait"
    with pytest.raises(CheckTimeoutError) as info:
        await checks.run(["sh", "-c", script], timeout=3.0)
    assert isinstance(info.value, TimeoutError)
    result = info.value.result
    assert result.timed_out
    assert result.exit_status == -9
    assert result.stdout == b"started\n"
    child = int((tmp_path / "child.pid").read_text())
    await until(lambda: not alive(child), what="the background sleep is killed")
    (run,) = runs(journal)
    assert run.timed_out
    assert "timed out" in run.summary


async def test_cancelling_a_run_kills_its_process(
    checks: Checks, tmp_path: Path, journal: MemoryJournal
) -> None:
    task = asyncio.ensure_future(
        checks.run(["sh", "-c", "echo $$ > sleeper.pid; exec sleep 1000"], timeout=600)
    )
    pid_file = tmp_path / "sleeper.pid"
    await until(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
    pid = int(pid_file.read_text())
    await until(lambda: alive(pid))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: not alive(pid), what="the cancelled check's process is gone")
    (run,) = runs(journal)
    assert "cancelled" in run.summary
    assert run.exit_status == -9


async def test_stragglers_left_in_the_background_are_killed_when_the_command_exits(
    checks: Checks, tmp_path: Path
) -> None:
    result = await checks.run(["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $! > bg.pid"])
    assert result.ok
    child = int((tmp_path / "bg.pid").read_text())
    await until(lambda: not alive(child))


async def test_output_is_capped_keeping_head_and_tail(tmp_path: Path) -> None:
    checks = Checks(tmp_path, output_cap=1000)
    code = "import sys; sys.stdout.write('H' * 600 + 'x' * 100_000 + 'T' * 600)"
    result = await checks.run(["python3", "-c", code])
    assert result.truncated
    assert result.stdout.startswith(b"H" * 500)
    assert result.stdout.endswith(b"T" * 500)
    assert b"bytes cut" in result.stdout
    assert len(result.stdout) < 1100
    small = await checks.run(["python3", "-c", "print('x' * 999)"])
    assert not small.truncated


async def test_the_environment_is_cleaned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("GIT_DIR", "/somewhere")
    checks = Checks(tmp_path, env={"MINE": "1"})
    result = await checks.run(["env"], env={"PER_RUN": "2"})
    variables = dict(
        line.split("=", 1) for line in result.stdout.decode().splitlines() if "=" in line
    )
    assert "SECRET_TOKEN" not in variables
    assert "GIT_DIR" not in variables
    assert variables["MINE"] == "1"
    assert variables["PER_RUN"] == "2"
    assert variables["HOME"] != os.environ.get("HOME")
    assert not await asyncio.to_thread(os.path.exists, variables["HOME"])  # removed after the run
    assert variables["PATH"] == os.environ["PATH"]


async def test_the_working_directory_is_confined(checks: Checks, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    result = await checks.run(["pwd"], cwd="sub")
    assert result.stdout.decode().strip() == str(tmp_path / "sub")
    assert result.cwd == "sub"
    with pytest.raises(PathEscapeError):
        await checks.run(["pwd"], cwd="..")
    (tmp_path / "out").symlink_to("/tmp")
    with pytest.raises(PathEscapeError):
        await checks.run(["pwd"], cwd="out")


async def test_network_is_isolated_where_the_machine_allows(checks: Checks) -> None:
    if not await network_isolation():
        pytest.skip("unshare -rn is not permitted here: checks run with the network")
    code = "import socket; print(sorted(n for _, n in socket.if_nameindex()))"
    result = await checks.run(["python3", "-c", code])
    assert result.network_isolated
    assert result.stdout.strip() == b"['lo']"


async def test_bad_commands_and_arguments(checks: Checks, tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="cannot run"):
        await checks.run(["no-such-tool-anywhere"])
    with pytest.raises(InvalidArgumentError):
        await checks.run([])
    for bad in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(InvalidArgumentError):
            await checks.run(["true"], timeout=bad)
    with pytest.raises(InvalidArgumentError):
        Checks(tmp_path, network="maybe")
    with pytest.raises(InvalidArgumentError):
        Checks(tmp_path, output_cap=1)


def _tiny_project(root: Path) -> None:
    (root / "tests").mkdir()
    (root / "tests" / "test_tiny.py").write_text(
        "import pytest\n\n"
        "def test_one():\n    assert 1 + 1 == 2\n\n"
        "def test_two():\n    assert 'a' in 'abc'\n\n"
        "def test_broken():\n    assert 1 == 2\n\n"
        "@pytest.mark.skip(reason='later')\ndef test_later():\n    pass\n"
    )
    (root / "app.py").write_text("import os\nimport sys\n\nprint(sys.argv)\n")


async def test_pytest_results_are_parsed_from_junit_xml(
    checks: Checks, tmp_path: Path, journal: MemoryJournal
) -> None:
    _tiny_project(tmp_path)
    result = await checks.pytest("-q", "tests")
    assert result.exit_status == 1
    summary = result.summary
    assert (summary.passed, summary.failed, summary.errors, summary.skipped) == (2, 1, 0, 1)
    assert summary.text == "2 passed, 1 failed, 1 skipped"
    assert summary.items == ("tests.test_tiny::test_broken",)
    (run,) = runs(journal)
    assert (run.tool, run.passed, run.failed, run.skipped) == ("pytest", 2, 1, 1)
    assert run.summary.startswith("2 passed, 1 failed, 1 skipped")


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (lint group)")
async def test_ruff_findings_are_parsed_from_json(checks: Checks, tmp_path: Path) -> None:
    _tiny_project(tmp_path)
    result = await checks.ruff("--isolated", "--select", "F401", "app.py")
    assert result.exit_status == 1
    assert result.summary.failed == 1
    assert result.summary.text == "1 finding"
    (item,) = result.summary.items
    assert item.startswith("app.py:1:8 F401")
    clean = await checks.ruff("--isolated", "--select", "F401", "tests")
    assert clean.ok
    assert clean.summary.text == "0 findings"


async def test_unparsable_output_keeps_the_run(checks: Checks) -> None:
    result = await checks.ruff(ruff="echo")  # prints its arguments, not JSON
    assert result.ok
    assert result.summary.text.startswith("output not parsed")


async def test_parse_junit_counts_every_suite() -> None:
    xml = (
        b'<testsuites><testsuite tests="3" failures="1" errors="1" skipped="0">'
        b'<testcase classname="a" name="t1"/><testcase classname="a" name="t2"><failure/>'
        b'</testcase><testcase classname="b" name="t3"><error/></testcase></testsuite>'
        b'<testsuite tests="1" failures="0" errors="0" skipped="1"><testcase name="s"/>'
        b"</testsuite></testsuites>"
    )
    summary = parse_junit(xml)
    assert (summary.passed, summary.failed, summary.errors, summary.skipped) == (1, 1, 1, 1)
    assert summary.items == ("a::t2", "b::t3")


async def test_a_workspace_lends_its_recorder_and_blobs(
    tmp_path: Path, journal: MemoryJournal, blobs: BlobStore
) -> None:
    ws = Workspace(tmp_path, journal=journal, blobs=blobs)
    checks = Checks(ws)
    await ws.write("hello.txt", "hi\n")
    result = await checks.run(["cat", "hello.txt"])
    assert result.stdout == b"hi\n"
    kinds = [type(e.event.payload).__name__ for e in journal.entries()]
    assert kinds == ["StateChange", "ToolRun"]
    assert blobs.get(result.output_ref) == b"hi\n"


async def test_a_refused_event_is_an_error(tmp_path: Path) -> None:
    journal = MemoryJournal()
    checks = Checks(tmp_path, journal=journal)
    await journal.close()
    with pytest.raises(JournalClosedError):
        await checks.run(["true"])
