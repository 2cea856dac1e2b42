"""Memory in the role swarm: two real demo runs of the sample in one data directory.

The first run stores its verdicts; the second consults them (the architect cites them) and
skips the changes the first saw rejected. Then ``swarm-actors memory search/stats`` on them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import swarm_actors
from swarm_actors._cli import main
from swarm_actors.events import AgentDecision, SwarmEvent, ToolRun
from swarm_actors.memory import APPROVED, REJECTED, MemoryStore, change_key, memory_dir
from swarm_actors.swarm import Coder, WorkItem
from test_cli_demo import decisions, journal_of


def demo(data_dir: Path) -> dict[str, Any]:
    package = Path(swarm_actors.__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "swarm_actors._cli", "demo", "--json", "-q", "--data-dir",
         str(data_dir)],
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
        env={**os.environ, "PYTHONPATH": str(package)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report: dict[str, Any] = json.loads(run.stdout)
    return report


class Runs:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.first = demo(data_dir)
        self.second = demo(data_dir)
        self.events = [
            asyncio.run(journal_of(data_dir, r["run_id"])) for r in (self.first, self.second)
        ]
        self.memory = MemoryStore(memory_dir(data_dir), embedder=None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tmp_path_factory.mktemp("memory-runs"))


def mem_ids(decision: AgentDecision) -> list[str]:
    return [i for i in decision.memory_ids if i.startswith("mem-")]


@pytest.mark.timeout(400)
def test_the_second_run_skips_the_changes_the_first_saw_rejected(runs: Runs) -> None:
    first, second = runs.first, runs.second
    assert first["rejected"] >= 1
    assert second["rejected"] == 0 < first["rejected"]
    assert second["approved"] == first["approved"]
    assert second["tests_after"] == first["tests_after"]
    skips = [
        (e, d) for e, d in decisions(runs.events[1], "coder") if " skip the fixes of " in d.choice
    ]
    skipped = {d.choice.split(":")[0] for _, d in skips}  # a skip is decided again when the
    assert len(skipped) == first["rejected"]  # file changed before the coder's turn
    for _, decision in skips:  # each skip cites the first run's rejection of that change
        (cited,) = mem_ids(decision)
        entry = runs.memory.get(cited)
        assert entry is not None
        assert entry.kind == REJECTED
        assert entry.run_id == first["run_id"]
        assert entry.reason in decision.rationale
    escalations = [
        d for _, d in decisions(runs.events[1], "reviewer") if "earlier run" in d.rationale
    ]
    assert len(escalations) == len(skipped) == second["escalated"]


@pytest.mark.timeout(400)
def test_a_run_stores_its_verdicts_with_their_evidence(runs: Runs) -> None:
    first, second = runs.first, runs.second
    assert first["remembered"] == first["approved"] + first["rejected"]
    assert second["remembered"] == 0  # the same outcomes again: duplicates, not stored twice
    entries = runs.memory.entries()
    assert len(entries) == first["remembered"]
    by_id: dict[str, SwarmEvent] = {e.event_id: e for e in runs.events[0]}
    for entry in entries:
        assert entry.run_id == first["run_id"]
        decision = by_id[entry.decision_id].payload
        assert isinstance(decision, AgentDecision)
        if entry.kind == APPROVED:  # evidence: check runs of that run that passed, tests among them
            runs_cited = [by_id[i].payload for i in entry.evidence]
            assert all(isinstance(r, ToolRun) and r.exit_status == 0 for r in runs_cited)
            assert any(isinstance(r, ToolRun) and r.tool == "tests" for r in runs_cited)
        else:
            assert entry.kind == REJECTED
            assert entry.reason == decision.rationale
            assert any("::" in s for s in entry.signatures)  # the failing tests' ids
            assert all(s in entry.reason or "Error" in s for s in entry.signatures if "::" in s)


@pytest.mark.timeout(400)
def test_the_architect_consults_memory_before_planning_and_cites_it(runs: Runs) -> None:
    plans = [
        next(d for _, d in decisions(events, "architect") if d.choice.startswith("plan "))
        for events in runs.events
    ]
    assert mem_ids(plans[0]) == []  # nothing to recall yet
    cited = mem_ids(plans[1])
    assert cited
    assert all(runs.memory.get(i) is not None for i in cited)
    assert {e.id for e in runs.memory.entries() if e.kind == REJECTED} <= set(cited)
    items = [d for _, d in decisions(runs.events[1], "architect") if " fixes of " in d.choice]
    for item in items:  # an item cites what memory holds on its file and rules
        for i in mem_ids(item):
            entry = runs.memory.get(i)
            assert entry is not None
            assert entry.path in item.choice
            assert f"memory: {entry.kind} in run {first_id(runs)}" in item.rationale


def first_id(runs: Runs) -> str:
    return str(runs.first["run_id"])


@pytest.mark.timeout(400)
def test_memory_search_and_stats_on_the_command_line(
    runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(runs.data_dir)
    assert main(["memory", "stats", "--json", "--data-dir", data]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == len(runs.memory)
    assert stats["runs"] == 1
    assert stats["by_kind"] == {
        "approved": runs.first["approved"],
        "rejected": runs.first["rejected"],
    }
    rejected = [e for e in runs.memory.entries() if e.kind == REJECTED]
    failing_test = next(s for s in rejected[0].signatures if "::" in s)
    assert main(["memory", "search", failing_test, "--json", "--data-dir", data, "-k", "3"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["hits"][0]["id"] == rejected[0].id
    assert found["hits"][0]["ranks"]["keys"] == 1
    assert main(["memory", "search", "unused import", "--data-dir", data]) == 0
    assert "mem-" in capsys.readouterr().out
    assert main(["memory", "search", "x", "--key", "kind:nothing", "--data-dir", data]) == 0
    assert "nothing in memory" in capsys.readouterr().out


def test_memory_commands_refuse_an_empty_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["memory", "stats", "--data-dir", str(tmp_path)]) == 2
    assert "swarm-actors demo --data-dir" in capsys.readouterr().err
    assert main(["memory", "search", " ", "--data-dir", str(tmp_path)]) == 2


@pytest.mark.asyncio
async def test_a_retrying_coder_consults_memory_with_the_failure_signature(tmp_path: Path) -> None:
    memory = MemoryStore(tmp_path / "m", embedder=None)
    before, after = "x = [1]\ny = 2\n", "x = (1,)\ny = 2\n"
    past = [
        {"path": "a.py", "change": "other", "sig": "tests/test_a.py::T::test_x"},
        {"path": "b.py", "change": "other", "sig": "tests/test_b.py::T::test_z"},
        {
            "path": "a.py",
            "change": change_key("a.py", before, after),
            "sig": "tests/test_a.py::T::t",
        },
    ]
    from swarm_actors.memory import MemoryEntry

    entries = [
        MemoryEntry(
            kind=REJECTED, text=f"fix in {p['path']}", path=p["path"], rules=("C409",),
            reason=f"the tests fail ({p['sig']})", signatures=(p["sig"],), change_key=p["change"],
        )
        for p in past
    ]  # fmt: skip
    memory.add_many(entries)
    coder = Coder(str(tmp_path), None, None, None, memory=memory)  # type: ignore[arg-type]
    retry = WorkItem(
        id="1", path="a.py", rules=("C409",), attempt=2,
        feedback="the tests fail (1 failing: tests/test_a.py::T::test_x)",
    )  # fmt: skip
    known, cited = await coder.recall(retry, before, "x = [1, 2]\ny = 2\n")
    assert known is None  # a change memory has not seen rejected
    assert cited == (entries[0].id,)  # the same failure signature; not b.py's
    known, cited = await coder.recall(retry, before, after)
    assert known is not None
    assert known.id == entries[2].id
    assert cited[0] == entries[2].id
