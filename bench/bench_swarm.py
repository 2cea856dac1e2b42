"""The role swarm at scale: 1,000 work items, 32 coders, the deterministic brain.

A synthetic workspace of many small files (each with one unused import), so that the measure
is the framework rather than ruff or a test suite: the tools are stubs that answer at once
(``StubToolkit``: the linter reports one safe finding per file, the fixer drops the first line,
the tests pass), still recording their ``ToolRun`` events like the real ones. The brain is the
real ``default_brain()`` (rules, no model). Everything else is the real swarm: the architect's
plan and decisions, the bag of tasks in the tuple space, coders writing through a
``Workspace`` (diff, hashes, a ``StateChange`` each; ``durable=False``: no fsync), the review
turn, the reviewer's asks, decisions and ledger, the journal.

Reported: items/s and journal events/s (wall clock), and the framework's own time per item:
the CPU time of the event loop's thread over the work phase (from the plan to the last
verdict) minus the CPU time measured inside the tool stubs and the brain (which run on that
thread), over the items. What is left is what the actors, messages, space, ledger, journal
and the workspace's event bookkeeping cost; the workspace's file reads and writes run in
worker threads and are not in it (the wall time per item, beside it, includes everything,
waits for those threads and for a CPU shared with other processes included). CPU time rather
than wall time: wall time minus tool time double-counts the tool calls that overlap (coders
read files concurrently) and swings with the machine's load.

Run: python bench/bench_swarm.py [--items 1000] [--coders 32] [--nats]

With ``--nats`` also on the embedded JetStream journal: as it is by default (events gather for
10 ms, then a chunk is published as atomic batches, one acknowledgement per batch), without
batches (one acknowledgement per event: the journal before them), with the former default
linger of 2 ms, and without a linger (each chunk at once), the rounds interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

from _common import machine, progress, table
from swarm_actors._nats import _jetstream
from swarm_actors.brains import Brain, BrainRequest, BrainResponse
from swarm_actors.events import JetStreamJournal, MemoryJournal, ToolRun
from swarm_actors.swarm import (
    Coder,
    LintFinding,
    Progress,
    SwarmConfig,
    Toolkit,
    default_brain,
    run_swarm,
)
from swarm_actors.tools import CheckResult, Checks, CheckSummary, EventRecorder, Workspace

FILE = "import os\n\n\ndef f{n}():\n    return {n}\n"


class Clock:
    """Time spent inside tools and the brain."""

    tools = 0.0
    brain = 0.0


class StubToolkit(Toolkit):
    """Tools that answer at once and record their runs like the real ones."""

    def __init__(self, files: int) -> None:
        super().__init__()
        self.files = files

    def _run(self, checks: Checks, tool: str, passed: int = 0) -> CheckResult:
        result = CheckResult(
            tool=tool,
            argv=(tool,),
            cwd=".",
            exit_status=0,
            duration=0.0,
            timed_out=False,
            stdout=b"",
            stderr=b"",
            truncated=False,
            network_isolated=False,
            summary=CheckSummary(passed=passed),
        )
        if checks.recorder is not None:
            checks.recorder.record(ToolRun(tool=tool, argv=(tool,), passed=passed))
        return result

    async def lint(
        self, checks: Checks, *paths: str, rules: Sequence[str] | None = None
    ) -> tuple[CheckResult, list[LintFinding]]:
        started = time.thread_time()
        result = self._run(checks, "ruff")
        found = (
            []
            if paths
            else [
                LintFinding(file=f"m{n:05d}.py", code="F401", line=1, fix="safe")
                for n in range(self.files)
            ]
        )
        Clock.tools += time.thread_time() - started
        return result, found

    async def fix(
        self, root: str, path: str, text: str, rules: Sequence[str], *, unsafe: bool
    ) -> tuple[str, ToolRun]:
        started = time.thread_time()
        new = text.split("\n", 1)[1] if text.startswith("import") else text
        run = ToolRun(tool="ruff-fix", argv=("ruff", "--fix", path))
        Clock.tools += time.thread_time() - started
        return new, run

    async def compile(self, checks: Checks, path: str) -> CheckResult:
        started = time.thread_time()
        result = self._run(checks, "compile")
        Clock.tools += time.thread_time() - started
        return result

    async def test(self, checks: Checks) -> CheckResult:
        started = time.thread_time()
        result = self._run(checks, "tests", passed=1)
        Clock.tools += time.thread_time() - started
        return result


class BenchCoder(Coder):
    def open_workspace(self, recorder: EventRecorder) -> Workspace:
        return Workspace(
            self.root, recorder=recorder, blobs=self.blobs, agent_id=self.ref.path, durable=False
        )


class TimedBrain:
    """The deterministic brain, timed."""

    def __init__(self, brain: Brain) -> None:
        self.brain = brain

    @property
    def provider(self) -> str:
        return self.brain.provider

    async def complete(self, request: BrainRequest) -> BrainResponse:
        started = time.thread_time()
        try:
            return await self.brain.complete(request)
        finally:
            Clock.brain += time.thread_time() - started


async def one_run(
    items: int, coders: int, nats: str | None, linger: float | None = None, batches: bool = True
) -> dict[str, float]:
    """One run; ``linger`` overrides the JetStream journal's default (the system makes it).

    ``batches=False``: as if the server took no atomic batches (one acknowledgement per event).
    """
    defaults = JetStreamJournal.__init__.__kwdefaults__
    saved = defaults["linger"]
    if linger is not None:
        defaults["linger"] = linger
    try:
        if batches:
            return await _one_run(items, coders, nats)
        with mock.patch.object(_jetstream, "server_batches", return_value=False):
            return await _one_run(items, coders, nats)
    finally:
        defaults["linger"] = saved


async def _one_run(items: int, coders: int, nats: str | None) -> dict[str, float]:
    base = "/dev/shm" if await asyncio.to_thread(os.path.isdir, "/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="bench-swarm-", dir=base) as tmp:
        root = Path(tmp) / "workspace"
        root.mkdir()
        for n in range(items):
            (root / f"m{n:05d}.py").write_text(FILE.format(n=n))
        Clock.tools = Clock.brain = 0.0
        marks: dict[str, float] = {}

        def on_progress(p: Progress) -> None:
            if p.items_pending and "first" not in marks and p.activity.startswith("planned"):
                marks["first"] = time.perf_counter()
                marks["cpu0"] = time.thread_time()
                marks["tools0"], marks["brain0"] = Clock.tools, Clock.brain
            if p.items_done == items and "last" not in marks:
                marks["last"] = time.perf_counter()
                marks["cpu1"] = time.thread_time()
                marks["tools1"], marks["brain1"] = Clock.tools, Clock.brain

        config = SwarmConfig(
            workspace=root,
            run_dir=Path(tmp) / "run",
            coders=coders,
            brain=TimedBrain(default_brain()),
            nats=nats,
            journal=MemoryJournal() if nats is None else None,
            max_steps=10 * items + 10,
        )
        summary = await run_swarm(
            config, on_progress=on_progress, toolkit=StubToolkit(items), coder=BenchCoder
        )
        assert summary.approved == items, summary
        wall = marks["last"] - marks["first"]
        cpu = marks["cpu1"] - marks["cpu0"]
        tools = marks["tools1"] - marks["tools0"]
        brain = marks["brain1"] - marks["brain0"]
        return {
            "items": items,
            "wall": wall,
            "total": summary.seconds,
            "events": summary.events,
            "tools": tools,
            "brain": brain,
            "cpu": cpu,
            "overhead_ms": (cpu - tools - brain) / items * 1e3,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--coders", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nats", action="store_true", help="also on the embedded NATS default")
    args = parser.parse_args()
    configs: list[tuple[str, str | None, float | None, bool]] = [
        ("in-process (MemoryJournal)", None, None, True)
    ]
    if args.nats:
        configs += [
            ("embedded NATS (JetStream), linger 0", "embedded", 0.0, True),
            ("embedded NATS (JetStream), linger 2 ms", "embedded", 0.002, True),
            ("embedded NATS (JetStream), one ack per event", "embedded", None, False),
            ("embedded NATS (JetStream), default (batches, linger 10 ms)", "embedded", None, True),
        ]
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, *_ in configs}
    for r in range(args.repeats):  # rounds interleave the configurations: noise hits them all
        for label, nats, linger, batches in configs:
            progress(f"swarm: {args.items} items, {args.coders} coders, {label} ({r + 1})")
            run = one_run(args.items, args.coders, nats, linger, batches)
            runs[label].append(asyncio.run(run))
    rows = []
    for label, *_ in configs:
        best = min(runs[label], key=lambda x: x["overhead_ms"])
        rows.append(
            (
                label,
                args.items,
                args.coders,
                f"{best['items'] / best['wall']:.0f}",
                f"{best['events'] / best['total']:.0f}",
                best["events"],
                f"{best['tools'] / best['items'] * 1e3:.3f}",
                f"{best['brain'] / best['items'] * 1e3:.3f}",
                f"{best['wall'] / best['items'] * 1e3:.3f}",
                f"{best['overhead_ms']:.3f}",
                f"{statistics.median(r['overhead_ms'] for r in runs[label]):.3f}",
                f"{best['total']:.2f}",
            )
        )
    print(f"{machine()}\n")
    print(
        table(
            (
                "journal",
                "items",
                "coders",
                "items/s",
                "events/s",
                "events",
                "tools ms/item",
                "brain ms/item",
                "wall ms/item",
                "framework ms/item",
                "(median)",
                "run s",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
