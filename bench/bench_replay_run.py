"""Replay with zero model calls (issue 15): a recorded demo run, replayed, against the recording.

``swarm-actors demo --brain openai`` on the shipped sample, its model the fake
OpenAI-compatible server of ``tests/fake_openai.py`` answering as the swarm's rules would
(each call counted at the server); then ``swarm-actors replay run`` of that run, in a process
of its own that has nothing but the run's directory. Reported side by side: wall time, model
calls counted at the server, and whether the replay ended with every file as recorded.

Run: python bench/bench_replay_run.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, progress, table

sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import fake_openai
from swarm_actors.brains import BrainRequest, Message
from swarm_actors.swarm import plan_rule, review_rule


def answer(body: dict[str, object]) -> str:
    """The fake model's answer: the rules' plan or verdict, as JSON."""
    messages = body["messages"]
    assert isinstance(messages, list)
    request = BrainRequest(
        messages=tuple(Message(m["role"], m["content"]) for m in messages), json_output=True
    )
    return json.dumps(plan_rule(request) or review_rule(request) or {})


def cli(*args: str) -> tuple[dict[str, object], float]:
    env = {**os.environ, "OPENAI_API_KEY": ""}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "swarm_actors._cli", *args, "-q", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"{args[0]} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout), time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, fake_openai(keep_bodies=False) as server:
        server.respond = answer
        data = str(Path(tmp) / "data")
        progress("recording: swarm-actors demo --brain openai (the fake model)")
        recorded, rec_s = cli(
            "demo",
            "--data-dir",
            data,
            "--brain",
            "openai",
            "--model",
            "m",
            "--base-url",
            server.url,
        )
        calls = server.requests
        progress("replaying: swarm-actors replay run")
        replayed, rep_s = cli("replay", "run", "--data-dir", data, "--run", str(recorded["run_id"]))
        replay_calls = server.requests - calls
    rows = [
        ["demo --brain openai (recording)", f"{rec_s:.1f} s", calls, "", ""],
        [
            "replay run",
            f"{rep_s:.1f} s",
            replay_calls,
            replayed["answers"],
            "identical" if replayed["identical"] else f"DIFFERS: {replayed['differences']}",
        ],
    ]
    print("## Replay with zero model calls (issue 15): `python bench/bench_replay_run.py`\n")
    print(machine() + "\n")
    print(
        table(["run", "wall", "model calls (at the server)", "answers replayed", "outcome"], rows)
    )


if __name__ == "__main__":
    main()
