"""The role swarm end to end on a tiny project, checked from the journal (not from text)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client

from helpers import ready_process
from swarm_actors import ActorSystem
from swarm_actors.brains import BrainRequest, ScriptedBrain, user
from swarm_actors.cluster import Cluster
from swarm_actors.errors import InvalidArgumentError
from swarm_actors.events import (
    AgentDecision,
    JetStreamJournal,
    MemoryJournal,
    StateChange,
    SwarmEvent,
    ToolRun,
    verify_chain,
)
from swarm_actors.swarm import (
    MAX_ANSWER_BYTES,
    SwarmConfig,
    SwarmSummary,
    detect_test_cmd,
    plan_rule,
    review_request,
    review_rule,
    run_swarm,
)
from swarm_actors.tools import decode_file_change
from swarm_sample import FILES, SELECT, TRAP, write_sample

pytestmark = [pytest.mark.timeout(120)]
async_test = pytest.mark.asyncio


def _config(tmp_path: Path, **kwargs: object) -> SwarmConfig:
    workspace = write_sample(tmp_path / "project")
    options: dict[str, object] = {
        "workspace": workspace,
        "run_dir": tmp_path / "run",
        "select": SELECT,
        "nats": None,
        "coders": 3,
    }
    options.update(kwargs)
    return SwarmConfig(**options)  # type: ignore[arg-type]


async def _events(journal: MemoryJournal | JetStreamJournal, run_id: str) -> list[SwarmEvent]:
    return [e.event async for e in journal.read() if e.event.run_id == run_id]


def _decisions(events: list[SwarmEvent], role: str) -> list[tuple[SwarmEvent, AgentDecision]]:
    return [
        (e, e.payload)
        for e in events
        if e.agent_role == role and isinstance(e.payload, AgentDecision)
    ]


def _check_run(events: list[SwarmEvent], summary: SwarmSummary) -> None:
    """What every run of the sample must show in its journal."""
    assert summary.ok
    assert summary.tests_before == summary.tests_after == 4
    assert summary.tests_failing_after == 0
    by_id = {e.event_id: e for e in events}
    # Decisions from all three roles.
    for role in ("architect", "coder", "reviewer"):
        assert _decisions(events, role), f"no decision from the {role}"
    # Every approval cites a passing test run (and a linter run).
    approvals = [d for d in _decisions(events, "reviewer") if d[1].choice.startswith("approve")]
    assert len(approvals) == summary.approved >= 2
    for _, decision in approvals:
        runs = [by_id[i].payload for i in decision.memory_ids if i in by_id]
        tests = [r for r in runs if isinstance(r, ToolRun) and r.tool == "tests"]
        assert tests, decision
        assert all(t.exit_status == 0 and t.failed == 0 and t.errors == 0 for t in tests)
        assert any(isinstance(r, ToolRun) and r.tool == "ruff" for r in runs)
    # The trap's item was rejected, reverted and escalated.
    planned = [
        d.choice
        for _, d in _decisions(events, "architect")
        if TRAP[0] in d.choice and TRAP[1] in d.choice and "unsafe" in d.choice
    ]
    assert len(planned) == 1
    trap_id = planned[0].split(":")[0].removeprefix("item ")
    reviewer = _decisions(events, "reviewer")
    rejects = [(e, d) for e, d in reviewer if d.choice == f"reject item {trap_id}"]
    assert rejects
    reject_event, reject = rejects[0]
    cited = [by_id[i].payload for i in reject.memory_ids if i in by_id]
    assert any(isinstance(r, ToolRun) and r.tool == "tests" and r.failed for r in cited)
    reverts = [
        e
        for e in events
        if e.agent_role == "reviewer"
        and isinstance(e.payload, StateChange)
        and e.timestamp_ns >= reject_event.timestamp_ns
        and decode_file_change(e.payload.data).path == TRAP[0]
    ]
    assert reverts
    assert any(d.choice == f"escalate item {trap_id}" for _, d in reviewer)
    # Coders' changes are journaled state changes with a diff and both hashes.
    changes = [
        decode_file_change(e.payload.data)
        for e in events
        if e.agent_role == "coder" and isinstance(e.payload, StateChange)
    ]
    assert changes
    assert all(c.diff and c.before_sha256 and c.after_sha256 for c in changes)
    # Causation is explicit: a coder's change names the coder's decision that chose it, a
    # revert the rejection, and the reviewer's checks the change they judge.
    for e in events:
        if not isinstance(e.payload, StateChange) or e.agent_role not in ("coder", "reviewer"):
            continue
        cause = by_id[e.causation_id]
        assert cause.agent_id == e.agent_id
        assert isinstance(cause.payload, AgentDecision)
        expected = "propose ruff's" if e.agent_role == "coder" else "reject item"
        assert expected in cause.payload.choice
    reviewed = {
        e.event_id for e in events if e.agent_role == "coder" and isinstance(e.payload, StateChange)
    }
    checks = [e for e in events if e.agent_role == "reviewer" and isinstance(e.payload, ToolRun)]
    assert any(e.causation_id in reviewed for e in checks)
    verify_chain(events)


@async_test
async def test_the_swarm_fixes_safe_findings_and_rejects_the_trap(tmp_path: Path) -> None:
    journal = MemoryJournal()
    config = _config(tmp_path, journal=journal)
    seen: list[str] = []
    summary = await run_swarm(config, on_progress=lambda p: seen.append(p.role))
    events = await _events(journal, summary.run_id)
    assert 0 < summary.events <= len(events)  # the stop signals come after the count
    _check_run(events, summary)
    assert summary.items == 3  # two safe (F in calc.py, F in util.py) and the trap
    assert summary.escalated == 1
    assert summary.rejected >= 1
    assert summary.reverted >= 1
    assert summary.findings_after < summary.findings_before
    workspace = config.workspace
    calc = (workspace / "calc.py").read_text()
    assert "flag == True" in calc  # the trap was reverted
    assert "import os" not in calc
    assert 'f"label"' not in calc
    assert "import json" not in (workspace / "util.py").read_text()
    assert "l = x * 2" in (workspace / "util.py").read_text()  # E741: no fix, not touched
    assert summary.patch is not None
    assert "-import json" in summary.patch.read_text()
    assert {"architect", "coder", "reviewer"} <= set(seen)


@async_test
async def test_on_the_embedded_default_the_journal_is_jetstream_and_stays(tmp_path: Path) -> None:
    config = _config(tmp_path, nats="embedded", coders=2)
    summary = await run_swarm(config)
    # The run's JetStream store outlives the run: a node on the same directory reads it.
    data = str(config.run_dir / "journal")
    async with ActorSystem(nats="embedded", cluster=Cluster(data_dir=data)) as system:
        assert isinstance(system.journal, JetStreamJournal)
        events = await _events(system.journal, summary.run_id)
    _check_run(events, summary)
    assert summary.escalated == 1


@async_test
async def test_a_brain_that_misbehaves_still_ends_with_a_summary(tmp_path: Path) -> None:
    brain = ScriptedBrain(
        [
            "",  # the plan: empty
            "{not json",  # the reviews: malformed, oversized, the wrong JSON
            "x" * (MAX_ANSWER_BYTES + 1),
            '{"verdict": "maybe"}',
            '{"verdict": "maybe"}',
        ]
    )
    journal = MemoryJournal()
    config = _config(tmp_path, journal=journal, brain=brain, coders=2)
    summary = await run_swarm(config)
    assert summary.ok
    assert summary.approved == 0
    assert summary.items == 3
    assert summary.escalated + summary.skipped == 3
    assert any(e.startswith("BrainReplyError") for e in summary.errors)
    for name, text in FILES.items():  # every change was reverted
        assert (config.workspace / name).read_text() == text
    events = await _events(journal, summary.run_id)
    architect = _decisions(events, "architect")
    assert "unusable" in architect[0][1].rationale
    unusable = [d for _, d in _decisions(events, "reviewer") if "unusable" in d.rationale]
    assert unusable
    assert all(d.choice.startswith("escalate") for d in unusable)


@async_test
async def test_a_test_failing_before_the_run_blocks_only_new_failures(tmp_path: Path) -> None:
    config = _config(tmp_path, coders=1)
    (config.workspace / "tests" / "test_known.py").write_text(
        "import unittest\n\n\nclass Known(unittest.TestCase):\n"
        "    def test_known_bug(self):\n        self.assertEqual(1, 2)\n"
    )
    summary = await run_swarm(config)
    assert not summary.ok  # the known failure is still there at the end
    assert summary.tests_before == summary.tests_after == 4
    assert summary.tests_failing_after == 1
    assert summary.approved == 2  # the safe fixes break nothing that passed
    assert summary.escalated == 1  # the trap breaks a test that passed
    assert "flag == True" in (config.workspace / "calc.py").read_text()


@async_test
async def test_a_spent_step_budget_ends_the_run_with_a_summary(tmp_path: Path) -> None:
    summary = await run_swarm(_config(tmp_path, max_steps=2, coders=1))
    assert summary.stopped_by == "max_steps"
    assert summary.approved + summary.escalated + summary.skipped == summary.items
    assert summary.escalated >= 1
    assert summary.ok


@async_test
async def test_a_worker_in_another_process_handles_the_items(
    tmp_path: Path, nats_server: object, nats_client: Client
) -> None:
    url = nats_server.url  # type: ignore[attr-defined]
    script = (
        "import asyncio, sys\n"
        "from swarm_actors.swarm import run_worker\n"
        "print('ready', flush=True)\n"
        "asyncio.run(run_worker(role='coder', nats_url=sys.argv[1], coders=2))\n"
    )
    async with ready_process("-c", script, url) as worker:
        # No coder here: every item must be done by the worker's coders.
        summary = await run_swarm(_config(tmp_path, nats=url, coders=0))
        async with asyncio.timeout(30):
            assert await worker.wait() == 0
    journal = JetStreamJournal(nats_client, configure=False)
    events = await _events(journal, summary.run_id)
    _check_run(events, summary)
    coders = {e.agent_id for e in events if e.agent_role == "coder"}
    assert coders
    assert all(c.startswith("/worker-") for c in coders)


@async_test
async def test_a_worker_killed_holding_an_item_and_the_turn_gives_them_back(
    tmp_path: Path, nats_server: object, nats_client: Client
) -> None:
    # The first worker's coder is SIGKILLed right after it takes the review turn (its first
    # read of a file under the turn): the architect, watching it, puts its item back in the
    # bag and gives the turn back, so a second worker finishes the run.
    url = nats_server.url  # type: ignore[attr-defined]
    killer = (
        "import asyncio, os, signal, sys\n"
        "from swarm_actors.swarm import Coder, run_worker\n"
        "from swarm_actors.tools import Workspace\n"
        "class Dies(Workspace):\n"
        "    reads = 0\n"
        "    async def read_text(self, path, *args, **kwargs):\n"
        "        Dies.reads += 1\n"
        "        if Dies.reads == 2:  # the read under the turn\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        return await super().read_text(path, *args, **kwargs)\n"
        "class Killed(Coder):\n"
        "    def open_workspace(self, recorder):\n"
        "        ws = super().open_workspace(recorder)\n"
        "        ws.__class__ = Dies\n"
        "        return ws\n"
        "print('ready', flush=True)\n"
        "asyncio.run(run_worker(role='coder', nats_url=sys.argv[1], coder=Killed))\n"
    )
    healthy = (
        "import asyncio, sys\n"
        "from swarm_actors.swarm import run_worker\n"
        "print('ready', flush=True)\n"
        "asyncio.run(run_worker(role='coder', nats_url=sys.argv[1]))\n"
    )
    run = asyncio.ensure_future(run_swarm(_config(tmp_path, nats=url, coders=0, max_seconds=90)))
    try:
        async with ready_process("-c", killer, url) as worker:
            async with asyncio.timeout(60):
                assert await worker.wait() == -signal.SIGKILL
        async with ready_process("-c", healthy, url) as worker:
            summary = await asyncio.wait_for(run, 90)
            async with asyncio.timeout(30):
                assert await worker.wait() == 0
    finally:
        run.cancel()
    assert summary.stopped_by == ""  # every item ended, not the clock
    assert summary.ok
    journal = JetStreamJournal(nats_client, configure=False)
    events = await _events(journal, summary.run_id)
    _check_run(events, summary)
    returned = [d for _, d in _decisions(events, "architect") if d.choice.startswith("return")]
    assert len(returned) == 1
    assert "the review turn given back" in returned[0].rationale


def test_the_rules_plan_and_review_from_facts_alone() -> None:
    findings = [
        {"file": "a.py", "code": "F401", "line": 1, "fix": "safe"},
        {"file": "a.py", "code": "F541", "line": 3, "fix": "safe"},
        {"file": "a.py", "code": "E712", "line": 5, "fix": "unsafe"},
        {"file": "b.py", "code": "E741", "line": 2, "fix": ""},
    ]
    body = {"task": "swarm.plan", "goal": "g", "findings": findings}
    plan = plan_rule(BrainRequest(messages=(user(msgspec.json.encode(body).decode()),)))
    assert plan is not None
    assert [(i["file"], i["rules"], i["unsafe"]) for i in plan["items"]] == [
        ("a.py", ["F401", "F541"], False),
        ("a.py", ["E712"], True),
    ]
    assert len(plan["skipped"]) == 1
    tests = {"exit_status": 1, "passed": 3, "failed": 1, "errors": 0, "passed_before": 4}
    failing = review_rule(review_request({"tests": tests, "lint": {"before": 1, "remaining": 0}}))
    assert failing is not None
    assert failing["verdict"] == "reject"
    tests = {**tests, "exit_status": 0, "passed": 4, "failed": 0}
    passing = review_rule(review_request({"tests": tests, "lint": {"before": 1, "remaining": 0}}))
    assert passing is not None
    assert passing["verdict"] == "approve"
    assert plan_rule(BrainRequest(messages=(user("hello"),))) is None


def test_the_test_command_is_detected(tmp_path: Path) -> None:
    assert detect_test_cmd(tmp_path)[1:3] == ("-m", "unittest")
    (tmp_path / "conftest.py").write_text("")
    pytest_cmd = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert detect_test_cmd(tmp_path) == (*pytest_cmd, "-c", os.devnull, "--rootdir", ".")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    assert detect_test_cmd(tmp_path) == pytest_cmd  # its own configuration is used


def test_a_project_inside_another_is_tested_without_the_outer_configuration(
    tmp_path: Path,
) -> None:
    # The outer project's configuration would fail every run of the inner one's tests.
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\naddopts = ["--no-such-option"]\n'
    )
    inner = tmp_path / "vendored" / "lib"
    inner.mkdir(parents=True)
    (inner / "conftest.py").write_text("")
    (inner / "test_lib.py").write_text("def test_one():\n    assert True\n")
    result = subprocess.run(
        detect_test_cmd(inner), cwd=inner, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@async_test
async def test_bad_settings_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="max_attempts"):
        SwarmConfig(workspace=tmp_path, run_dir=tmp_path, max_attempts=0)
    with pytest.raises(InvalidArgumentError, match="test_cmd"):
        SwarmConfig(workspace=tmp_path, run_dir=tmp_path, test_cmd="pytest -q")
    with pytest.raises(InvalidArgumentError, match="nats=URL"):
        await run_swarm(SwarmConfig(workspace=tmp_path, run_dir=tmp_path, coders=0, nats=None))
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        await run_swarm(SwarmConfig(workspace=tmp_path / "none", run_dir=tmp_path, nats=None))


@async_test
async def test_a_check_that_hangs_is_killed_and_its_change_escalated(tmp_path: Path) -> None:
    # The "tests" hang only once the trap's fix is in: its review times out.
    hang = "import time\nif 'if flag:' in open('calc.py').read():\n    time.sleep(60)\n"
    config = _config(tmp_path, test_cmd=(sys.executable, "-c", hang), check_timeout=3.0, coders=1)
    summary = await run_swarm(config)
    assert summary.ok
    assert summary.approved == 2
    assert summary.escalated == 1
    assert any(e.startswith("CheckTimeoutError") for e in summary.errors)
    assert "flag == True" in (config.workspace / "calc.py").read_text()
