"""Replay with zero model calls, counted at the model; rerun forks a new run that calls again.

One run of the swarm on the tiny sample, its brain an ``OpenAIBrain`` against the fake
OpenAI-compatible server on loopback, answering as the rules would (a model of sorts). The
run records every call (``ModelCall`` events, contents in its blobs); the replay needs
nothing but the run's directory and makes no request to the server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fake_openai import FakeOpenAI, fake_openai
from swarm_actors._runjournal import open_run_journal
from swarm_actors._runs import RunPaths, new_run
from swarm_actors.brains import BrainRequest, Message, OpenAIBrain
from swarm_actors.events import ModelCall
from swarm_actors.replay import (
    file_changes,
    final_hashes,
    load_run,
    replay_run,
    rerun,
    verify_run,
)
from swarm_actors.swarm import SwarmConfig, SwarmSummary, plan_rule, review_rule, run_swarm
from swarm_sample import SELECT, write_sample

pytestmark = [pytest.mark.timeout(240)]
async_test = pytest.mark.asyncio


def _answer(body: dict[str, Any]) -> str:
    """What the fake model says: the rules' plan or verdict, as JSON."""
    request = BrainRequest(
        messages=tuple(Message(m["role"], m["content"]) for m in body["messages"]),
        json_output=True,
    )
    answer = plan_rule(request) or review_rule(request)
    return json.dumps(answer) if answer is not None else "{}"


@dataclass
class Recorded:
    data: Path
    paths: RunPaths
    summary: SwarmSummary
    server: FakeOpenAI
    calls: int


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    data = tmp_path_factory.mktemp("replay-run-data")
    with fake_openai(keep_bodies=False) as server:
        server.respond = _answer
        paths = new_run(data)
        write_sample(paths.workspace)

        async def record() -> SwarmSummary:
            async with OpenAIBrain(model="fake-model", base_url=server.url, api_key="") as brain:
                config = SwarmConfig(
                    workspace=paths.workspace,
                    run_dir=paths.root,
                    run_id=paths.run_id,
                    select=SELECT,
                    coders=2,
                    brain=brain,
                    journal_dir=paths.journal,
                )
                return await run_swarm(config)

        summary = asyncio.run(record())
        yield Recorded(data, paths, summary, server, server.requests)


async def _entries(paths: RunPaths) -> list[Any]:
    async with open_run_journal(paths) as rj:
        return await rj.load()


@async_test
async def test_the_run_records_each_model_call(recorded: Recorded) -> None:
    assert recorded.summary.ok
    assert recorded.summary.approved >= 1
    calls = [e.event.payload for e in await _entries(recorded.paths)]
    calls = [c for c in calls if isinstance(c, ModelCall)]
    assert recorded.calls >= 2  # a plan and reviews
    assert len(calls) == recorded.calls
    assert all(c.response_ref and c.prompt_ref and not c.error_type for c in calls)


@async_test
async def test_a_replay_makes_no_model_call_and_ends_as_recorded(recorded: Recorded) -> None:
    before = recorded.server.requests
    # Nothing but the run's directory: its answers, its blobs, and how it ran its tools.
    outcome = await replay_run(run=recorded.paths.run_id, data_dir=recorded.data)
    assert recorded.server.requests == before  # counted at the model: not one request
    # Every brain call served from the recording. (Not always as many as recorded: coders side by
    # side may order a file's items otherwise, and a retried item may come out as the same
    # change, which needs no review.)
    assert outcome.answers >= 1
    assert outcome.identical, outcome.differences
    assert outcome.replay_of == recorded.paths.run_id
    # The final hashes, from each run's own journal, are the same.
    want = final_hashes(
        file_changes([(e.sequence, e.event) for e in await _entries(recorded.paths)])
    )
    got = final_hashes(file_changes([(e.sequence, e.event) for e in await _entries(outcome.run)]))
    assert got == want
    summary = json.loads(outcome.run.summary.read_text())
    assert summary["replay_of"] == recorded.paths.run_id
    assert verify_run(await load_run(outcome.run)).ok


@async_test
async def test_rerun_forks_a_new_run_that_calls_the_brain_again(recorded: Recorded) -> None:
    entries = await _entries(recorded.paths)
    first = file_changes([(e.sequence, e.event) for e in entries])[0]
    before = recorded.server.requests
    async with OpenAIBrain(model="fake-model", base_url=recorded.server.url, api_key="") as brain:
        new, summary = await rerun(
            first.sequence, run=recorded.paths, data_dir=recorded.data, brain=brain, select=SELECT
        )
    assert recorded.server.requests > before  # a rerun asks the model again
    assert new.run_id != recorded.paths.run_id
    assert new.root.parent == recorded.paths.root.parent
    report = json.loads(new.summary.read_text())
    assert report["forked_from"] == {"run": recorded.paths.run_id, "sequence": first.sequence}
    # It started from the workspace right after that change: the change is in, and so not
    # to be made again by the new run's coders.
    assert summary.ok
    changed = list(file_changes([(e.sequence, e.event) for e in await _entries(new)]))
    assert all(r.change.before_sha256 != first.change.before_sha256 for r in changed)


def test_the_cli_replays_in_another_process_with_no_model_call(recorded: Recorded) -> None:
    before = recorded.server.requests
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm_actors._cli",
            "replay",
            "run",
            "--data-dir",
            str(recorded.data),
            "--run",
            recorded.paths.run_id,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["identical"] is True
    assert report["answers"] >= 1
    assert report["replay_of"] == recorded.paths.run_id
    assert recorded.server.requests == before


@async_test
async def test_a_request_not_recorded_exactly_is_answered_by_its_subject() -> None:
    from swarm_actors.brains import RecordingBrain, ScriptedBrain
    from swarm_actors.errors import ReplayMissError
    from swarm_actors.events import BlobStore, MemoryJournal
    from swarm_actors.replay import RunReplayBrain
    from swarm_actors.swarm import review_request

    item = {"file": "a.py", "rules": ["F401"], "unsafe": False}
    journal, blobs = MemoryJournal(), BlobStore()
    recorder = RecordingBrain(ScriptedBrain(["first", "second"]), journal, blobs=blobs)
    asked = review_request({"item": item, "tests": {"output_tail": "4 passed in 0.51s"}})
    await recorder.complete(asked)
    await recorder.complete(review_request({"item": item, "tests": {"output_tail": "x"}}))
    brain = RunReplayBrain.from_events((e.event for e in journal.entries()), blobs)
    assert brain.recorded == 2

    # Exactly as recorded; then the same subject with other timings: the next answer.
    assert (await brain.complete(asked)).text == "first"
    again = review_request({"item": item, "tests": {"output_tail": "4 passed in 0.73s"}})
    assert (await brain.complete(again)).text == "second"
    assert (brain.calls, brain.exact) == (2, 1)
    # Another item was never asked about: a miss, never a guess.
    other = review_request({"item": {**item, "file": "b.py"}, "tests": {}})
    with pytest.raises(ReplayMissError):
        await brain.complete(other)


def test_the_cli_reruns_asking_the_model_again(recorded: Recorded) -> None:
    import os

    before = recorded.server.requests
    env = {**os.environ, "OPENAI_API_KEY": ""}  # the fake needs no key
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm_actors._cli",
            "replay",
            "rerun",
            "0",
            "--brain",
            "openai",
            "--model",
            "fake-model",
            "--base-url",
            recorded.server.url,
            "--data-dir",
            str(recorded.data),
            "--run",
            recorded.paths.run_id,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["forked_from"] == {"run": recorded.paths.run_id, "sequence": 0}
    assert report["ok"] is True
    assert recorded.server.requests > before


@async_test
async def test_a_replay_that_ends_otherwise_says_which_files_differ(recorded: Recorded) -> None:
    # Tests that fail once calc.py changes: the replay's reviewer rejects what the run approved.
    import hashlib

    from swarm_sample import FILES

    digest = hashlib.sha256(FILES["calc.py"].encode()).hexdigest()
    guard = (
        "import hashlib, sys; "
        f"sys.exit(hashlib.sha256(open('calc.py', 'rb').read()).hexdigest() != '{digest}')"
    )
    before = recorded.server.requests
    outcome = await replay_run(
        run=recorded.paths, data_dir=recorded.data, test_cmd=[sys.executable, "-c", guard]
    )
    assert recorded.server.requests == before
    assert not outcome.identical
    assert "calc.py" in outcome.differences
