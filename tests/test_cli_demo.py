"""``swarm-actors demo``: the real swarm end to end, checked from the run's journal; then the
CLI's own behaviour (input checks, the run's layout, output, the user's files untouched) in
process with a fake ``run_swarm``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import swarm_actors
from swarm_actors import swarm as _swarm
from swarm_actors._cli import main
from swarm_actors._nats._conn import connect
from swarm_actors._runs import latest_run, run_dir
from swarm_actors.cluster import NatsOptions
from swarm_actors.events import AgentDecision, JetStreamJournal, StateChange, SwarmEvent, ToolRun
from swarm_actors.testing import NatsServer
from swarm_actors.tools import decode_file_change
from test_sample_project import HARMLESS, TRAPS


@dataclass
class Fake:
    """What the fake swarm saw and does."""

    configs: list[Any]
    edit: Callable[[Path], None] | None = None
    ok: bool = True
    stopped_by: str = ""
    errors: tuple[str, ...] = ()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    """Replace ``run_swarm``: it edits the workspace as told and reports a summary."""
    state = Fake(configs=[])

    async def run_swarm(config: Any, *, on_progress: Any = None) -> Any:
        state.configs.append(config)
        for n, activity in enumerate(("planning", "fixing F401 in a.py", "reviewing")):
            if on_progress is not None:
                role = ("architect", "coder", "reviewer")[n]
                on_progress(_swarm.Progress(f"/{role}", role, activity, n, 3 - n, 10 * n))
        if state.edit is not None:
            state.edit(config.workspace)
        return _swarm.SwarmSummary(
            run_id=config.run_id,
            items=3,
            approved=2,
            rejected=1,
            reverted=1,
            escalated=1,
            tests_before=4,
            tests_after=4 if state.ok else 3,
            tests_failing_after=0 if state.ok else 1,
            findings_before=9,
            findings_after=2,
            events=30,
            seconds=0.5,
            branch=None,
            patch=None,
            ok=state.ok,
            stopped_by=state.stopped_by,
            errors=state.errors,
        )

    monkeypatch.setattr(_swarm, "run_swarm", run_swarm)
    return state


def demo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["demo", *args])
    out, err = capsys.readouterr()
    return code, out, err


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def user_repo(root: Path) -> Path:
    repo = root / "project"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("import os\n")
    (repo / "test_pkg.py").write_text("def test_ok():\n    assert True\n")
    git(repo, "init", "-q", "-b", "trunk")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    return repo


def snapshot(repo: Path) -> dict[str, Any]:
    """Everything of the user's checkout the run must leave alone."""
    return {
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "head": git(repo, "rev-parse", "HEAD"),
        "index": (repo / ".git" / "index").read_bytes(),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "files": {
            p.relative_to(repo).as_posix(): p.read_bytes()
            for p in repo.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(repo).parts
        },
    }


# --- the real swarm, end to end -----------------------------------------------------------


async def journal_of(data_dir: Path, run: str) -> list[SwarmEvent]:
    """The run's events, read from the JetStream store it left under its directory."""
    paths = run_dir(run, data_dir)
    async with NatsServer(store_dir=paths.journal) as server:
        client = await connect(NatsOptions(servers=server.url, name="test-reader"))
        try:
            journal = JetStreamJournal(client, configure=False)
            return [e.event async for e in journal.read() if e.event.run_id == paths.run_id]
        finally:
            await client.close()


def decisions(events: list[SwarmEvent], role: str) -> list[tuple[SwarmEvent, AgentDecision]]:
    return [
        (e, e.payload)
        for e in events
        if e.agent_role == role and isinstance(e.payload, AgentDecision)
    ]


def cited(decision: AgentDecision, by_id: dict[str, SwarmEvent]) -> list[ToolRun]:
    runs = [by_id[i].payload for i in decision.memory_ids if i in by_id]
    return [r for r in runs if isinstance(r, ToolRun)]


@pytest.mark.timeout(240)
def test_the_demo_fixes_the_sample_and_rejects_every_trap(tmp_path: Path) -> None:
    package = Path(swarm_actors.__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "swarm_actors._cli", "demo", "--json", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
        env={**os.environ, "PYTHONPATH": str(package)},
    )
    out, err = run.stdout, run.stderr
    assert run.returncode == 0, err[-3000:]
    report = json.loads(out)  # stdout is exactly one JSON object
    for key in (
        "run_id", "items", "approved", "rejected", "reverted", "tests_before", "tests_after",
        "findings_before", "findings_after", "events", "seconds",
    ):  # fmt: skip
        assert key in report, key
    assert report["tests_after"] == report["tests_before"] > 0
    assert report["findings_after"] < report["findings_before"]
    assert report["approved"] >= 5
    assert report["rejected"] >= len(TRAPS)
    assert report["reverted"] >= len(TRAPS)

    events = asyncio.run(journal_of(tmp_path, report["run_id"]))
    assert len(events) >= report["events"] > 0
    by_id = {e.event_id: e for e in events}
    for role in ("architect", "coder", "reviewer"):
        assert decisions(events, role), f"no decision from the {role}"
    reviews = decisions(events, "reviewer")
    approvals = [d for _, d in reviews if d.choice.startswith("approve item ")]
    assert len(approvals) == report["approved"]
    for approval in approvals:  # every approval cites a passing test run
        tests = [r for r in cited(approval, by_id) if r.tool == "tests"]
        assert tests, approval
        assert all(r.exit_status == 0 and r.failed == r.errors == 0 for r in tests)
    plans = [d.choice for _, d in decisions(events, "architect") if " fixes of " in d.choice]

    def item_of(rule: str) -> str:
        (choice,) = [c for c in plans if f"unsafe fixes of {rule} " in c]
        return choice.split(":")[0].removeprefix("item ")

    for rule, path in TRAPS.items():  # every trap rejected on a failing test run, reverted
        item = item_of(rule)
        rejects = [(e, d) for e, d in reviews if d.choice == f"reject item {item}"]
        assert rejects, f"the trap {rule} was not rejected"
        reject_event, reject = rejects[0]
        assert any(r.tool == "tests" and r.failed for r in cited(reject, by_id)), reject
        reverts = [
            e
            for e in events
            if e.agent_role == "reviewer"
            and isinstance(e.payload, StateChange)
            and e.timestamp_ns >= reject_event.timestamp_ns
            and decode_file_change(e.payload.data).path == path
        ]
        assert reverts, f"the trap {rule} was not reverted"
        assert not any(d.choice == f"approve item {item}" for _, d in reviews)
    for rule in HARMLESS:  # an unsafe fix that breaks nothing is approved
        assert any(d.choice == f"approve item {item_of(rule)}" for _, d in reviews)
    # The workspace: the traps are not in it, the approved changes are in the patch.
    workspace = Path(report["workspace"])
    assert (
        "_cache: dict[tuple[str, str], Decimal] = {}"
        in (workspace / "ledger" / "money.py").read_text()
    )
    assert "import os" not in (workspace / "ledger" / "money.py").read_text()
    assert "-import os" in Path(report["patch"]).read_text()


# --- the sample, the layout, the output ---------------------------------------------------


def test_demo_json_is_one_object_on_stdout(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(ws: Path) -> None:
        money = ws / "ledger" / "money.py"
        money.write_text(money.read_text().replace("import os\n", ""))

    fake.edit = edit
    code, out, err = demo(capsys, "--json", "--data-dir", str(tmp_path), "--run", "r1")
    assert code == 0, err
    report = json.loads(out)  # the whole of stdout is one JSON object
    for key in ("run_id", "items", "approved", "rejected", "reverted", "tests_before"):
        assert key in report
    for key in ("tests_after", "findings_before", "findings_after", "events", "seconds"):
        assert key in report
    assert report["run_id"] == "r1"
    run = tmp_path / "runs" / "r1"
    assert report["run_dir"] == str(run)
    assert latest_run(tmp_path) == "r1"
    (config,) = fake.configs
    assert config.workspace == run / "workspace"
    assert config.run_dir == run
    assert config.journal_dir == run / "journal"
    assert config.coders == 3
    assert config.nats == "embedded"
    assert (run / "workspace" / "ledger" / "money.py").is_file()  # the sample was copied
    assert json.loads((run / "summary.json").read_text()) == report
    patch = Path(report["patch"])
    assert patch == run / "approved.patch"
    assert "-import os" in patch.read_text()
    assert "a/ledger/money.py" in patch.read_text()
    assert report["branch"] is None


def test_demo_exits_1_when_the_tests_fail_at_the_end(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.ok = False
    fake.stopped_by = "max_steps"
    fake.errors = ("BrainReplyError: not JSON",)
    code, out, err = demo(capsys, "--data-dir", str(tmp_path), "-q")
    assert code == 1
    assert "FAIL" in out
    assert "3 passing, 1 failing" in out
    assert "stopped by  max_steps" in out
    assert "BrainReplyError: not JSON" in out
    assert err == ""  # -q: no progress


def test_demo_prints_progress_on_stderr_and_the_summary_on_stdout(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = demo(capsys, "--data-dir", str(tmp_path), "--run", "r2", "--coders", "5")
    assert code == 0
    assert fake.configs[0].coders == 5
    # Progress: plain lines on stderr (stdout is not a terminal here).
    assert "/architect (architect): planning" in err
    assert "/reviewer (reviewer): reviewing" in err
    assert "planning" not in out
    # The summary and the next commands on stdout.
    for row in ("items", "approved", "rejected", "reverted", "tests", "findings", "events"):
        assert row in out
    assert "4 passing -> 4 passing" in out
    assert "9 -> 2" in out
    data = f"--data-dir {tmp_path}"
    assert f"swarm-actors replay list --run r2 {data}" in out
    assert f"swarm-actors replay verify --run r2 {data}" in out
    assert f"swarm-actors dashboard --run r2 {data}" in out
    assert "no change was approved" in out


# --- the user's project ---------------------------------------------------------------------


def test_demo_on_a_git_repository_leaves_the_user_alone_and_offers_a_branch(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path)
    (repo / "notes.txt").write_text("uncommitted\n")  # the user's work in progress
    before = snapshot(repo)

    def edit(ws: Path) -> None:
        (ws / "pkg" / "__init__.py").write_text("")
        (ws / "__pycache__").mkdir()
        (ws / "__pycache__" / "x.pyc").write_bytes(b"\0")  # a cache the checks left

    fake.edit = edit
    code, out, err = demo(capsys, str(repo), "--json", "--data-dir", str(tmp_path / "d"))
    assert code == 0, err
    report = json.loads(out)
    assert "uncommitted changes" in err
    assert snapshot(repo) == before
    branch = report["branch"]
    assert branch == f"swarm/{report['run_id']}"
    # The approved change is one commit on the run's branch, in the user's repository.
    assert git(repo, "log", "--format=%s", f"trunk..{branch}").strip().startswith("swarm run")
    assert git(repo, "diff", "--name-only", "trunk", branch).split() == ["pkg/__init__.py"]
    patch = Path(report["patch"]).read_text()
    assert "-import os" in patch
    # ...and the patch applies to the user's checkout.
    git(repo, "apply", "--check", report["patch"])
    assert report["source"] == "worktree"


def test_demo_on_a_plain_directory_works_on_a_copy(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "plain"
    project.mkdir()
    (project / "mod.py").write_text("import os\n")

    def edit(ws: Path) -> None:
        (ws / "mod.py").write_text("")

    fake.edit = edit
    code, out, err = demo(capsys, str(project), "--data-dir", str(tmp_path / "d"))
    assert code == 0, err
    assert (project / "mod.py").read_text() == "import os\n"
    assert "take the approved changes: the patch: git -C" in out
    assert fake.configs[0].workspace != project


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/project"], "no such directory"),
        (["--test-cmd", "no-such-program-xyz -q"], "not a command on PATH"),
        (["--test-cmd", "'unbalanced"], "quote it"),
        (["--test-cmd", ""], "give a command"),
        (["--test-cmd", "./missing/runner"], "not an executable file"),
        (["--model", "m"], "go with --brain openai"),
        (["--run", "bad id"], "run id"),
    ],
)
def test_bad_input_is_refused_with_the_fix(
    fake: Fake,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    code, out, err = demo(capsys, *args, "--data-dir", str(tmp_path))
    assert code == 2
    assert out == ""
    assert message in err
    assert fake.configs == []
    assert latest_run(tmp_path) is None


def test_not_a_python_project(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# hi\n")
    code, _, err = demo(capsys, str(tmp_path / "docs"), "--data-dir", str(tmp_path / "d"))
    assert (code, "not a Python project" in err) == (2, True)
    (tmp_path / "file.py").write_text("")
    code, _, err = demo(capsys, str(tmp_path / "file.py"), "--data-dir", str(tmp_path / "d"))
    assert (code, "not a directory" in err) == (2, True)


def test_openai_without_a_key_is_refused(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, out, err = demo(capsys, "--brain", "openai", "--model", "m", "--data-dir", str(tmp_path))
    assert (code, out) == (2, "")
    assert "OPENAI_API_KEY" in err
    assert fake.configs == []


def test_a_taken_run_id_is_refused(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo(capsys, "--data-dir", str(tmp_path), "--run", "same", "-q")[0] == 0
    code, _, err = demo(capsys, "--data-dir", str(tmp_path), "--run", "same")
    assert code == 2
    assert "exists already" in err


def test_the_command_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "swarm_actors._cli", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--test-cmd", "--brain", "--coders", "--data-dir", "--run", "--json"):
        assert option in result.stdout


def test_without_pytest_the_tests_run_with_unittest(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pytest" else real(name, *a)
    )
    code, _, err = demo(capsys, "--data-dir", str(tmp_path), "-q")
    assert code == 0
    assert "pytest is not installed here" in err
    assert list(fake.configs[0].test_cmd)[1:4] == ["-m", "unittest", "discover"]


def test_with_pytest_the_swarm_detects_the_command(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo(capsys, "--data-dir", str(tmp_path), "-q")[0] == 0
    assert fake.configs[0].test_cmd is None
    code, _, _ = demo(capsys, "--data-dir", str(tmp_path), "-q", "--test-cmd", "python -m pytest")
    assert code == 0
    assert list(fake.configs[1].test_cmd) == ["python", "-m", "pytest"]


def test_the_worker_command_checks_its_role(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["worker", "--role", "reviewer", "--nats", "nats://127.0.0.1:1"])
    assert code == 2
    assert "role must be 'coder'" in capsys.readouterr().err


def test_the_live_display_shows_agents_counters_and_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging

    from swarm_actors._cli._view import LiveDisplay, PlainDisplay, make_display

    out = io.StringIO()
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with LiveDisplay("run x", file=out) as display:
            display.progress(_swarm.Progress("/coder-1", "coder", "fixing F401", 2, 5, 40))
            display.progress(_swarm.Progress("/swarm-reviewer", "reviewer", "testing", 3, 4, 50))
            logging.getLogger("swarm_actors.test").warning("a log line")
            assert handler.stream is not sys.stderr  # logs go through the live console
        assert handler.stream is sys.stderr
    finally:
        root.removeHandler(handler)
    text = out.getvalue()
    for expected in ("run x", "/coder-1", "fixing F401", "/swarm-reviewer", "3 done", "4 pending"):
        assert expected in text
    assert "a log line" in text
    # Not a terminal: plain lines; -q: nothing.
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert isinstance(make_display(quiet=False, json_out=False, title="t"), PlainDisplay)
    tty = make_display(quiet=False, json_out=True, title="t", isatty=lambda s: s is sys.stderr)
    assert isinstance(tty, LiveDisplay)
    assert not isinstance(make_display(quiet=True, json_out=False, title="t"), PlainDisplay)


def test_an_unreachable_nats_server_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = demo(capsys, "--nats", "nats://127.0.0.1:1", "--data-dir", str(tmp_path), "-q")
    assert (code, out) == (2, "")
    assert "--nats nats://127.0.0.1:1: could not connect" in err


@pytest.mark.timeout(120)
def test_the_real_swarm_on_a_git_repository_commits_only_on_its_branch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "calc.py").write_text("import os\n\n\ndef double(x):\n    return x * 2\n")
    (repo / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import double\n\n\n"
        "class T(unittest.TestCase):\n    def test_double(self):\n"
        "        self.assertEqual(double(2), 4)\n"
    )
    git(repo, "init", "-q", "-b", "trunk")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    before = snapshot(repo)
    code, out, err = demo(capsys, str(repo), "--json", "--data-dir", str(tmp_path / "d"), "-q")
    assert code == 0, err
    report = json.loads(out)
    assert report["approved"] == 1
    assert snapshot(repo) == before
    branch = report["branch"]
    assert git(repo, "diff", "--name-only", "trunk", branch).split() == ["calc.py"]
    assert "import os" not in git(repo, "show", f"{branch}:calc.py")
    git(repo, "apply", "--check", report["patch"])


def test_demo_on_a_directory_inside_a_repository_works_in_that_part_of_a_worktree(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = user_repo(tmp_path)
    before = snapshot(repo)

    def edit(ws: Path) -> None:
        (ws / "__init__.py").write_text("")

    fake.edit = edit
    code, out, err = demo(capsys, str(repo / "pkg"), "--json", "--data-dir", str(tmp_path / "d"))
    assert code == 0, err
    report = json.loads(out)
    assert fake.configs[0].workspace.name == "pkg"
    assert fake.configs[0].workspace.parent.name == "workspace"
    assert snapshot(repo) == before
    assert git(repo, "diff", "--name-only", "trunk", report["branch"]).split() == [
        "pkg/__init__.py"
    ]
    git(repo, "apply", "--check", report["patch"])
