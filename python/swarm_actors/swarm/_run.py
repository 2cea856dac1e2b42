"""``run_swarm`` (a whole run, to its summary) and ``run_worker`` (coders from elsewhere)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from swarm_actors import ActorSystem
from swarm_actors._log import get_logger
from swarm_actors._runjournal import clear_live_url, write_live_url
from swarm_actors.brains import Brain, RecordingBrain
from swarm_actors.cluster import Cluster, NatsOptions
from swarm_actors.errors import InvalidArgumentError
from swarm_actors.events import BlobStore, MemoryJournal
from swarm_actors.swarm._brainio import default_brain
from swarm_actors.swarm._config import Progress, SwarmConfig, SwarmSummary, new_run_id
from swarm_actors.swarm._ledger import Ledger
from swarm_actors.swarm._messages import Working
from swarm_actors.swarm._roles import (
    ARCHITECT_NAME,
    ITEM,
    REVIEWER_NAME,
    TURN,
    Architect,
    Baseline,
    Coder,
    Join,
    Joined,
    LocalBag,
    Plan,
    RemoteBag,
    Reviewer,
    RunContext,
    Survey,
    TestCount,
)
from swarm_actors.swarm._toolkit import Toolkit
from swarm_actors.tools import (
    GitRun,
    JournalRecorder,
    git_command,
    is_repository,
    snapshot_change,
    store_snapshot,
    take_snapshot,
)

__all__ = ["run_swarm", "run_worker"]

log = get_logger("swarm_actors.swarm")


def _same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _prepare(config: SwarmConfig) -> tuple[Path, Path]:
    """The workspace (resolved, checked) and the run's directory (made)."""
    workspace = Path(config.workspace).resolve()
    if not workspace.is_dir():
        raise InvalidArgumentError(f"the workspace {workspace} is not a directory")
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return workspace, run_dir


async def _git_for(workspace: Path) -> GitRun | None:
    """The workspace's own checkout as the run's ``GitRun`` when it is a repository's top."""
    if not await is_repository(workspace):
        return None
    _, top = await git_command(workspace, "rev-parse", "--show-toplevel")
    if not _same_path(top.strip(), workspace):
        return None
    code, branch = await git_command(
        workspace, "symbolic-ref", "--quiet", "--short", "HEAD", ok_codes=(0, 1)
    )
    _, base = await git_command(workspace, "rev-parse", "HEAD")
    return GitRun(
        top.strip(),
        str(workspace),
        branch.strip() if code == 0 else "",
        base.strip(),
        timeout=60.0,
        author=("swarm-actors", "swarm-actors@localhost"),
    )


def _system(config: SwarmConfig, run_id: str) -> ActorSystem:
    if config.nats is None:
        journal = config.journal if config.journal is not None else MemoryJournal()
        return ActorSystem(journal=journal, run_id=run_id)
    if config.nats == "embedded":
        data = config.journal_dir or config.run_dir / "journal"
        data.mkdir(parents=True, exist_ok=True)
        return ActorSystem(nats="embedded", cluster=Cluster(data_dir=str(data)), run_id=run_id)
    return ActorSystem(nats=config.nats, run_id=run_id)


@contextlib.asynccontextmanager
async def _announced(system: ActorSystem, run_dir: Path | None) -> AsyncIterator[None]:
    """While the run goes on, its directory names its embedded server (``live.json``).

    Readers (``replay``, ``dashboard``, a ``worker`` joining the run) find it there; the file
    is removed when the run ends.
    """
    url = system.nats_url if run_dir is not None else None
    if url is None or run_dir is None:
        yield
        return
    await asyncio.to_thread(write_live_url, run_dir, url)
    try:
        yield
    finally:
        await asyncio.to_thread(clear_live_url, run_dir)


async def run_swarm(
    config: SwarmConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    toolkit: Toolkit | None = None,
    architect: type[Architect] = Architect,
    coder: type[Coder] = Coder,
    reviewer: type[Reviewer] = Reviewer,
) -> SwarmSummary:
    """Run the swarm on ``config.workspace`` until every work item ends; the summary.

    The architect plans the linter's findings into items, ``config.coders`` coders (and any
    that ``run_worker`` adds) apply the fixes, the reviewer checks each change with the tests
    and the linter and approves (a commit when the workspace is a git checkout) or rejects it
    (reverted; the item back in the bag until ``max_attempts``, then escalated). Every
    decision, change and check is an event of ``run_id`` in the journal (JetStream with
    ``nats=``, else a ``MemoryJournal``). The run always ends with a summary: a budget spent
    (``max_steps``, ``max_tokens``, ``max_seconds``) or a brain's bad answer escalates what is
    left. ``toolkit`` replaces the tools (tests, a benchmark's stubs); ``architect``,
    ``coder`` and ``reviewer`` are the role classes (subclasses of the defaults).
    """
    started = time.perf_counter()
    if config.coders == 0:
        if config.nats is None or config.nats == "embedded":
            raise InvalidArgumentError(
                "coders=0 needs coders from other processes (run_worker), which need a NATS "
                "server they can reach: pass nats=URL, or coders >= 1"
            )
        log.warning("no coder in this process: waiting for workers", nats=config.nats)
    workspace, run_dir = await asyncio.to_thread(_prepare, config)
    run_id = config.run_id or new_run_id()
    blobs = BlobStore(run_dir / "blobs")
    ledger = Ledger(
        max_steps=config.max_steps, max_tokens=config.max_tokens, on_progress=on_progress
    )
    tools = toolkit or Toolkit(
        test_cmd=config.test_cmd, select=config.select, timeout=config.check_timeout
    )
    brain: Brain = config.brain if config.brain is not None else default_brain()
    git = await _git_for(workspace)
    context = RunContext(
        workspace=str(workspace),
        run_id=run_id,
        goal=config.goal,
        brain=brain,
        toolkit=tools,
        ledger=ledger,
        blobs=blobs,
        max_attempts=config.max_attempts,
        check_timeout=config.check_timeout,
        git=git,
        memory=config.memory,
    )
    system = _system(config, run_id)
    async with system, _announced(system, run_dir if config.nats == "embedded" else None):
        await _record_baseline(system, workspace, blobs, run_id)
        if (
            config.brain is not None
            and config.brain.provider != "deterministic"
            and system.journal is not None
        ):
            # A model's answers are events of the run (ModelCall, contents in its blobs): a
            # replay answers from them alone. Rules (the deterministic brain, given or by
            # default) are no model call: a replay runs them again.
            context.brain = RecordingBrain(brain, system.journal, blobs=blobs, run_id=run_id)
        planner = await system.start(architect, context, name=ARCHITECT_NAME)
        checker = await system.start(reviewer, context, name=REVIEWER_NAME)
        context.reviewer = checker
        ask_timeout = config.check_timeout * 2 + 60
        before: TestCount = await checker.ask(Baseline("before"), timeout=ask_timeout)
        system.space.out(TURN)
        coders = [
            await system.start(
                coder,
                str(workspace),
                LocalBag(system.space, ledger),
                checker,
                tools,
                ledger=ledger,
                blobs=blobs,
                review_timeout=ask_timeout * 2,
                memory=config.memory,
                name=f"coder-{n + 1}",
            )
            for n in range(config.coders)
        ]
        working = [asyncio.ensure_future(c.ask(Working(), timeout=None)) for c in coders]
        try:
            planned = await planner.ask(Plan(config.goal), timeout=ask_timeout)
            log.info("swarm planned", run_id=run_id, items=planned.items)
            await _until_finished(ledger, system, config.max_seconds, started, working)
            for _ in coders:
                system.space.out(("item", "", b""))
            if working:
                await asyncio.wait(working, timeout=ask_timeout)  # they finish what they hold
            findings_after = await planner.ask(Survey(), timeout=ask_timeout)
            after: TestCount = await checker.ask(Baseline("after"), timeout=ask_timeout)
        finally:
            for task in working:
                task.cancel()
        patch = await _patch(git, ledger, run_dir)
        journal = system.journal
        events = 0
        if journal is not None:
            await journal.flush()
            async for entry in journal.read():
                events += entry.event.run_id == run_id
    remembered = 0
    if config.memory is not None and context.outcomes:  # the run's verdicts, for the next
        added = await asyncio.to_thread(config.memory.add_many, context.outcomes)
        remembered = len(added.stored)
    return SwarmSummary(
        run_id=run_id,
        items=ledger.items,
        approved=ledger.counts["approved"],
        rejected=ledger.counts["rejected"],
        reverted=ledger.counts["reverted"],
        escalated=ledger.counts["escalated"],
        skipped=ledger.counts["skipped"],
        tests_before=before.passed,
        tests_after=after.passed,
        tests_failing_after=after.failing,
        findings_before=planned.findings,
        findings_after=findings_after,
        events=events,
        seconds=time.perf_counter() - started,
        branch=git.branch or None if git is not None else None,
        patch=patch,
        ok=after.ok,
        stopped_by=ledger.stopped_by,
        errors=tuple(ledger.errors),
        remembered=remembered,
    )


async def _record_baseline(
    system: ActorSystem, workspace: Path, blobs: BlobStore, run_id: str
) -> None:
    """Record the workspace as the run starts: one ``SNAPSHOT`` event of agent ``/swarm``.

    Replay rebuilds the workspace at any later event from it and the ``FileChange`` events
    (``swarm_actors.replay``); it is recorded before any actor starts, so before any change.
    """
    journal = system.journal
    if journal is None:
        return
    ref = await asyncio.to_thread(lambda: store_snapshot(take_snapshot(workspace, blobs), blobs))
    recorder = JournalRecorder(journal, role="swarm", agent_id="/swarm", run_id=run_id)
    recorder.record(snapshot_change(ref))
    log.info("workspace baseline recorded", run_id=run_id, files=ref.files, size=ref.size)


async def _until_finished(
    ledger: Ledger,
    system: ActorSystem,
    max_seconds: float | None,
    started: float,
    working: list[asyncio.Task[Any]],
) -> None:
    """Wait for every item to end; on a budget or the deadline, escalate what is left."""
    deadline = None if max_seconds is None else started + max_seconds
    while not ledger.finished.is_set():
        if ledger.stopped_by:
            _escalate_bag(ledger, system)
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            ledger.stop("max_seconds")
            _escalate_bag(ledger, system)
            for item_id in [str(n) for n in range(1, ledger.items + 1)]:
                ledger.finish(item_id, "escalated")
            return
        wait = 0.5 if left is None else min(left, 0.5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ledger.finished.wait(), wait)
        for task in [t for t in working if t.done()]:
            working.remove(task)
            if not task.cancelled() and task.exception() is not None:
                ledger.error(task.exception())  # type: ignore[arg-type]
                log.error("a coder stopped", error=repr(task.exception()))


def _escalate_bag(ledger: Ledger, system: ActorSystem) -> None:
    while True:
        found = system.space.take_nowait(ITEM)
        if found is None:
            return
        if found[1]:
            ledger.finish(found[1], "escalated")


async def _patch(git: GitRun | None, ledger: Ledger, run_dir: Path) -> Path | None:
    """The approved changes as one patch file (``None`` when none was approved)."""
    if not ledger.counts["approved"]:
        return None
    if git is not None:
        _, text = await git_command(git.path, "diff", f"{git.base}..HEAD")
    else:
        text = "".join(d if d.endswith("\n") else d + "\n" for d in ledger.approved_diffs)
    path = run_dir / "approved.patch"
    await asyncio.to_thread(path.write_text, text, "utf-8")
    return path


async def run_worker(
    *,
    role: str,
    nats_url: str | NatsOptions,
    coders: int = 1,
    brain: Brain | None = None,
    toolkit: Toolkit | None = None,
    join_timeout: float = 30.0,
    coder: type[Coder] = Coder,
) -> None:
    """Join ``coders`` coders to the swarm on ``nats_url`` until it ends (or this is cancelled).

    ``nats_url``: the server's URL, or ``NatsOptions`` (credentials, TLS); for a demo run on its
    embedded server, ``swarm_actors._runjournal.live_options(run_dir)``. ``coder``: the coder
    class (a subclass of ``Coder``). A worker that dies gives its items and the review turn back
    (the architect watches the coders that ask it for work).

    The workspace must be reachable here at the path the swarm uses (the same
    machine, or a shared file system). ``role`` is ``"coder"``: the only role that scales
    out. ``brain`` is accepted for coders that think with one (the deterministic coder uses
    none).
    """
    if role != "coder":
        raise InvalidArgumentError(
            f"run_worker joins coders only: role must be 'coder', not {role!r}"
        )
    if coders < 1:
        raise InvalidArgumentError(f"coders must be >= 1, got {coders}")
    del brain
    async with ActorSystem(nats=nats_url, journal=None) as probe:
        architect = await probe.resolve(ARCHITECT_NAME, timeout=join_timeout)
        joined: Joined = await architect.ask(Join(), timeout=join_timeout)
    if not await asyncio.to_thread(os.path.isdir, joined.workspace):
        raise InvalidArgumentError(
            f"the swarm's workspace {joined.workspace} is not reachable here: run the worker "
            "on the same machine or share the directory at the same path"
        )
    tools = toolkit or Toolkit(timeout=joined.check_timeout)
    async with ActorSystem(nats=nats_url, run_id=joined.run_id) as system:
        architect = await system.resolve(ARCHITECT_NAME, timeout=join_timeout)
        reviewer = await system.resolve(REVIEWER_NAME, timeout=join_timeout)
        node = os.getpid()
        refs = [
            await system.start(
                coder,
                joined.workspace,
                RemoteBag(architect, f"worker-{node}-{n + 1}"),
                reviewer,
                tools,
                review_timeout=joined.check_timeout * 4 + 120,
                name=f"worker-{node}-{n + 1}",
            )
            for n in range(coders)
        ]
        log.info("worker joined", run_id=joined.run_id, coders=coders)
        await asyncio.gather(*(r.ask(Working(), timeout=None) for r in refs))
        log.info("worker done", run_id=joined.run_id)
