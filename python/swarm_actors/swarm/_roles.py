"""The roles: ``Architect`` plans, ``Coder`` changes files, ``Reviewer`` checks and decides.

The work items are a bag of tasks in the coordinator's tuple space (lane ``"item"``): the
architect puts them there, coders in the same process pull them (``space.take``), coders of
other processes (``run_worker``) pull them through the architect (``TakeWork``), and the
reviewer puts a rejected item back with its feedback. Pulling, rather than a pool pushing, is
the seed's design and what makes coders free to come and go: an idle coder takes the next item
the moment it is free, a slow one never holds a queue, a retry is just another tuple, and a
coder from another host needs no registration with anyone. One change is under review at a
time (the ``"turn"`` tuple): the tests judge one change, not a mix of several.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from swarm_actors import Actor, Terminated, handler
from swarm_actors._log import get_logger
from swarm_actors.brains import Brain, BrainResponse
from swarm_actors.errors import (
    ActorDeadError,
    BrainError,
    NotConnectedError,
    RemoteError,
    ToolError,
)
from swarm_actors.events import BlobStore, Payload, SwarmEvent
from swarm_actors.memory import (
    APPROVED,
    REJECTED,
    MemoryEntry,
    MemoryStore,
    change_key,
    change_key_of_diff,
    failure_signatures,
)
from swarm_actors.swarm._brainio import (
    LintFinding,
    PlanAnswer,
    ask,
    parse_plan,
    parse_review,
    plan_request,
    plan_rule,
    review_request,
)
from swarm_actors.swarm._ledger import Ledger
from swarm_actors.swarm._messages import (
    GiveTurn,
    Review,
    TakeTurn,
    TakeWork,
    Verdict,
    Working,
    WorkItem,
)
from swarm_actors.swarm._toolkit import Toolkit
from swarm_actors.tools import CheckResult, Checks, EventRecorder, GitRun, Workspace

__all__ = [
    "ARCHITECT_NAME",
    "REVIEWER_NAME",
    "Architect",
    "Coder",
    "Join",
    "Joined",
    "Plan",
    "Planned",
    "Reviewer",
    "RunContext",
    "Survey",
]

log = get_logger("swarm_actors.swarm")

ARCHITECT_NAME = "swarm-architect"
"""The architect's name in the cluster (``run_worker`` finds the swarm by it)."""
REVIEWER_NAME = "swarm-reviewer"
"""The reviewer's name in the cluster."""

_CHECK_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}  # checks leave no __pycache__ in the workspace
ITEM = ("item", str, bytes)
TURN = ("turn",)
_ENC = msgspec.msgpack.Encoder()
_ITEM = msgspec.msgpack.Decoder(WorkItem)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Recorder:
    """Records the tools' events as the actor's, keeping the last one (its id gets cited)."""

    def __init__(self, actor: Actor, ledger: Ledger | None) -> None:
        self.actor = actor
        self.ledger = ledger
        self.last: SwarmEvent | None = None
        self.cause: SwarmEvent | str | None = None
        """What the events recorded now were caused by (``caused_by``)."""

    @contextlib.contextmanager
    def caused_by(self, cause: SwarmEvent | str | None) -> Iterator[None]:
        """Record the tools' events of this block as caused by ``cause`` (a decision).

        The role's handlers run one at a time, so the block's events are the tool's own.
        """
        previous, self.cause = self.cause, cause
        try:
            yield
        finally:
            self.cause = previous

    def record(self, payload: Payload) -> SwarmEvent:
        event = self.actor.record_event(payload, cause=self.cause)
        self.last = event
        if self.ledger is not None:
            self.ledger.events += 1
        return event


@dataclass
class RunContext:
    """What the coordinator's roles share: the run's settings, tools, brain and book."""

    workspace: str
    run_id: str
    goal: str
    brain: Brain
    toolkit: Toolkit
    ledger: Ledger
    blobs: BlobStore | None
    max_attempts: int
    check_timeout: float
    git: GitRun | None = None
    findings: dict[str, list[LintFinding]] = field(default_factory=dict)
    """The architect's findings, by file."""
    reviewer: Any = None
    """The reviewer's ref, once it is started."""
    memory: MemoryStore | None = None
    """Long-term memory of earlier runs (``None``: the run remembers nothing)."""
    outcomes: list[MemoryEntry] = field(default_factory=list)
    """The reviewer's verdicts as memory entries (stored at the run's end)."""


# --- messages of the coordinator ---------------------------------------------------------


class Plan(msgspec.Struct, frozen=True):
    """Ask the architect to plan the goal into the bag; answered with ``Planned``."""

    goal: str


class Planned(msgspec.Struct, frozen=True):
    items: int
    findings: int
    decision_id: str


class Survey(msgspec.Struct, frozen=True):
    """Ask the architect for the linter's findings now (their count)."""


class Settle(msgspec.Struct, frozen=True):
    """Ask the reviewer to answer once what it was handling before is done (it answers in order)."""


class Join(msgspec.Struct, frozen=True):
    """A worker asks the architect what run it joins."""


class Joined(msgspec.Struct, frozen=True):
    run_id: str
    workspace: str
    check_timeout: float


class Baseline(msgspec.Struct, frozen=True):
    """Ask the reviewer to run the tests as they are (before or after the run)."""

    when: str


class TestCount(msgspec.Struct, frozen=True):
    passed: int
    failing: int
    ok: bool
    run_id: str


def _brain_tokens(ledger: Ledger | None, response: BrainResponse) -> None:
    if ledger is not None:
        ledger.spend_tokens(response.usage.total_tokens)


def _known(entries: list[MemoryEntry], path: str, rules: tuple[str, ...]) -> list[MemoryEntry]:
    """The entries about ``path`` and one of ``rules``."""
    return [e for e in entries if e.path == path and set(e.rules) & set(rules)]


def _said(entry: MemoryEntry) -> str:
    what = f"{entry.kind} in run {entry.run_id} ({entry.id})"
    return f"{what}: {entry.reason}" if entry.reason else what


# --- architect ---------------------------------------------------------------------------


class Architect(Actor, role="architect"):
    """Plans the goal into work items in the bag (lane ``"item"`` of the tuple space).

    It runs the linter on the workspace, asks its brain for a plan (``plan_request``), and
    records each planning choice as an ``AgentDecision`` (rationale, rejected alternatives,
    confidence, the linter run it looked at). A plan the brain got wrong (a typed
    ``BrainReplyError``) is recorded and replaced by ``plan_rule``'s. It also hands items and
    the review turn to coders of other processes (``TakeWork``, ``TakeTurn``, ``GiveTurn``).
    Subclass it to plan differently: override ``plan_items``.
    """

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.checks: Checks | None = None
        self.recorder: _Recorder | None = None
        # Remote coders (run_worker) take items and the turn by asking: who holds what, so
        # that a worker that dies gives them back (watched; see ``coder_gone``).
        self._holders: dict[str, Any] = {}
        """Item id -> the remote coder that took it last."""
        self._items: dict[str, bytes] = {}
        """Item id -> its encoded ``WorkItem`` (to put it back in the bag)."""
        self._turn: Any = None
        """The remote coder holding the review turn, if one does."""
        self._watched: set[Any] = set()

    async def on_start(self) -> None:
        self.recorder = _Recorder(self, self.context.ledger)
        self.checks = Checks(
            self.context.workspace,
            recorder=self.recorder,
            blobs=self.context.blobs,
            timeout=self.context.check_timeout,
            env=_CHECK_ENV,
        )

    def _note(self, activity: str, events: int = 0) -> None:
        self.context.ledger.note(self.ref.path, "architect", activity, events)

    async def plan_items(self, goal: str, findings: list[LintFinding]) -> tuple[PlanAnswer, str]:
        """The plan of ``findings`` for ``goal``, and where it came from.

        The source is ``"brain"``, or the error that made ``plan_rule`` plan instead.
        """
        ledger = self.context.ledger
        ledger.step()
        try:
            response = await ask(self.context.brain, plan_request(goal, findings))
            _brain_tokens(ledger, response)
            return parse_plan(response), "brain"
        except BrainError as exc:
            text = ledger.error(exc)
            answer = plan_rule(plan_request(goal, findings))
            assert answer is not None
            return msgspec.convert(answer, PlanAnswer), text

    @handler
    async def plan(self, msg: Plan) -> Planned:
        ctx, ledger = self.context, self.context.ledger
        assert self.checks is not None
        assert self.recorder is not None
        self._note("running the linter")
        findings = (await ctx.toolkit.lint(self.checks))[1]
        lint_event = self.recorder.last
        for finding in findings:
            ctx.findings.setdefault(finding.file, []).append(finding)
        consulted = await self.recall(msg.goal, findings)
        self._note(f"planning {len(findings)} findings")
        answer, source = await self.plan_items(msg.goal, findings)
        inputs = (lint_event.event_id,) if lint_event is not None else ()
        rationale = answer.rationale
        if source != "brain":
            rationale = f"the brain's plan was unusable ({source}); planned by rule: {rationale}"
        known = {f.file for f in findings}
        items: list[WorkItem] = []
        dropped: list[str] = []
        for planned in answer.items:
            if planned.file not in known or not planned.rules:
                dropped.append(f"{planned.file} {planned.rules}: not a file the linter reported")
                continue
            items.append(
                WorkItem(
                    id=str(len(items) + 1),
                    path=planned.file,
                    rules=tuple(planned.rules),
                    unsafe=planned.unsafe,
                    why=planned.why,
                )
            )
        overall = self.decide(
            f"plan {len(items)} work items from {len(findings)} findings",
            rationale=rationale + (f"; dropped: {'; '.join(dropped)}" if dropped else ""),
            alternatives=tuple(answer.alternatives) + tuple(answer.skipped),
            confidence=answer.confidence if source == "brain" else min(answer.confidence, 0.5),
            trigger=msg.goal,
            memory_ids=inputs + tuple(e.id for e in consulted),
        )
        ledger.add_items(len(items))
        for item in items:
            recalled = _known(consulted, item.path, item.rules)
            choice = self.decide(
                f"item {item.id}: {'unsafe ' if item.unsafe else ''}fixes of "
                f"{','.join(item.rules)} in {item.path}",
                rationale=item.why + "".join(f"; memory: {_said(e)}" for e in recalled),
                alternatives=(
                    ("apply it with the safe fixes",) if item.unsafe else ("one item per finding",)
                ),
                confidence=0.6 if item.unsafe else 0.9,
                trigger=msg.goal,
                memory_ids=inputs + tuple(e.id for e in recalled),
                cause=overall,
            )
            self.space.out(
                ("item", item.id, _ENC.encode(msgspec.structs.replace(item, cause=choice.event_id)))
            )
        self._note(f"planned {len(items)} items", events=1 + len(items))
        ledger.plan_done()
        return Planned(len(items), len(findings), overall.event_id)

    async def recall(self, goal: str, findings: list[LintFinding]) -> list[MemoryEntry]:
        """What memory holds about these findings: outcomes of earlier runs, to cite.

        Every stored outcome on a (file, rule) the linter reports now, found by exact keys,
        and the best of a hybrid search on the goal and the findings' messages.
        """
        memory = self.context.memory
        if memory is None or not findings:
            return []
        self._note("consulting memory")
        pairs = sorted({(f.file, f.code) for f in findings})
        query = goal + "\n" + "\n".join(f"{f.code} {f.file}: {f.message}" for f in findings)

        def consult() -> list[MemoryEntry]:
            found = {e.id: e for p, r in pairs for e in memory.lookup(f"path:{p}", f"rule:{r}")}
            for hit in memory.search(query, k=5):
                found.setdefault(hit.id, hit.entry)
            return list(found.values())

        consulted = await asyncio.to_thread(consult)
        log.info("architect consulted memory", entries=len(consulted))
        return consulted

    @handler
    async def survey(self, msg: Survey) -> int:
        assert self.checks is not None
        self._note("running the linter (final)")
        _, findings = await self.context.toolkit.lint(self.checks)
        return len(findings)

    @handler
    async def join(self, msg: Join) -> Joined:
        ctx = self.context
        return Joined(ctx.run_id, ctx.workspace, ctx.check_timeout)

    @handler
    async def take_work(self, msg: TakeWork) -> WorkItem | str | None:
        ledger = self.context.ledger
        if ledger.finished.is_set() or ledger.stopped_by:
            return ""
        found = self.space.take_nowait(ITEM)
        if found is None:
            return None
        if found[1] == "":  # a local coder's stop pill: not for remote coders
            self.space.out(found)
            return ""
        if not ledger.step():
            self.space.out(found)
            return ""
        coder = self._watch_coder()
        if coder is not None:
            self._holders[found[1]] = coder
            self._items[found[1]] = found[2]
        return _ITEM.decode(found[2])

    @handler
    async def take_turn(self, msg: TakeTurn) -> bool:
        if self.space.take_nowait(TURN) is None:
            return False
        self._turn = self._watch_coder()
        return True

    @handler
    async def give_turn(self, msg: GiveTurn) -> None:
        self._turn = None
        self.space.out(TURN)

    def _watch_coder(self) -> Any:
        """The remote coder asking (watched from its first ask), or ``None`` if not known."""
        coder = self.sender
        if coder is None:
            return None
        if coder not in self._watched:
            self._watched.add(coder)
            self.watch(coder)
        return coder

    @handler
    async def coder_gone(self, msg: Terminated) -> None:
        """A remote coder ended: its unfinished items back in the bag, the turn given back.

        The turn only once the reviewer has settled what it was reviewing for that coder (it
        answers in order), so that no other change is written under a review still running.
        """
        gone = msg.ref
        self._watched.discard(gone)
        ledger = self.context.ledger
        returned = []
        for item_id, holder in list(self._holders.items()):
            if holder != gone:
                continue
            del self._holders[item_id]
            data = self._items.pop(item_id)
            queued = self.space.read_nowait(("item", item_id, bytes)) is not None
            if item_id not in ledger.outcomes and not queued:
                self.space.out(("item", item_id, data))
                returned.append(item_id)
        held_turn = self._turn is not None and self._turn == gone
        if returned or held_turn:
            self.decide(
                f"return the work of coder {gone.path} ({msg.reason})",
                rationale=f"items back in the bag: {', '.join(returned) or 'none'}; "
                f"{'the review turn given back' if held_turn else 'it held no turn'}",
                trigger=f"Terminated {gone.path}",
                confidence=1.0,
            )
        if held_turn:
            self._turn = None
            reviewer = self.context.reviewer
            if reviewer is not None:
                with contextlib.suppress(Exception):
                    await reviewer.ask(Settle(), timeout=self.context.check_timeout * 2 + 60)
            self.space.out(TURN)


# --- coder -------------------------------------------------------------------------------


class Bag(Protocol):
    """Where a coder gets items and the review turn: the space here, or the architect."""

    async def take(self) -> WorkItem | None: ...
    async def acquire_turn(self) -> None: ...
    async def release_turn(self) -> None: ...


class LocalBag:
    """The bag in this process's tuple space (coders next to the architect)."""

    def __init__(self, space: Any, ledger: Ledger) -> None:
        self.space = space
        self.ledger = ledger

    async def take(self) -> WorkItem | None:
        while True:
            _, item_id, data = await self.space.take(ITEM)
            if item_id == "":
                return None  # stop pill
            if not self.ledger.step():
                self.space.out(("item", item_id, data))
                return None
            return _ITEM.decode(data)

    async def acquire_turn(self) -> None:
        await self.space.take(TURN)

    async def release_turn(self) -> None:
        self.space.out(TURN)


class RemoteBag:
    """The bag through the architect (coders of another process, ``run_worker``)."""

    def __init__(self, architect: Any, coder: str, timeout: float = 30.0) -> None:
        self.architect = architect
        self.coder = coder
        self.timeout = timeout

    async def take(self) -> WorkItem | None:
        wait = 0.01
        while True:
            try:
                answer = await self.architect.ask(TakeWork(self.coder), timeout=self.timeout)
            except (ActorDeadError, TimeoutError, NotConnectedError, RemoteError) as exc:
                log.info("the swarm is gone: the coder stops", coder=self.coder, error=repr(exc))
                return None
            if isinstance(answer, WorkItem):
                return answer
            if answer == "":
                return None
            await asyncio.sleep(wait)  # nothing in the bag now: ask again, backing off
            wait = min(wait * 2, 0.5)

    async def acquire_turn(self) -> None:
        wait = 0.005
        while not await self.architect.ask(TakeTurn(self.coder), timeout=self.timeout):
            await asyncio.sleep(wait)
            wait = min(wait * 2, 0.2)

    async def release_turn(self) -> None:
        await self.architect.ask(GiveTurn(self.coder), timeout=self.timeout)


class Coder(Actor, role="coder"):
    """Takes items from the bag and applies the linter's fixes for them, then asks for review.

    Each change is written through a ``Workspace`` (a ``StateChange`` with the diff and the
    before/after hashes, recorded as this coder's), with the fixer's run a ``ToolRun``. An
    attempt whose result was rejected before is not written again (``"no_progress"``), nor
    is a change that memory says an earlier run saw rejected (the same ``change_key`` on the
    same file, never approved since). A retry consults memory with the failure signature of
    the rejection and cites what it found. Subclass it to change how an item is done:
    override ``propose``.
    """

    def __init__(
        self,
        workspace: str,
        bag: Bag,
        reviewer: Any,
        toolkit: Toolkit,
        *,
        ledger: Ledger | None = None,
        blobs: BlobStore | None = None,
        review_timeout: float = 900.0,
        memory: MemoryStore | None = None,
    ) -> None:
        self.root = workspace
        self.memory = memory
        self.bag = bag
        self.reviewer = reviewer
        self.toolkit = toolkit
        self.ledger = ledger
        self.blobs = blobs
        self.review_timeout = review_timeout
        self.recorder: _Recorder | None = None
        self.workspace: Workspace | None = None
        self.handled = 0

    async def on_start(self) -> None:
        self.recorder = _Recorder(self, self.ledger)
        self.workspace = self.open_workspace(self.recorder)

    def open_workspace(self, recorder: EventRecorder) -> Workspace:
        """The ``Workspace`` this coder changes files through, recording with ``recorder``."""
        return Workspace(self.root, recorder=recorder, blobs=self.blobs, agent_id=self.ref.path)

    async def on_stop(self) -> None:
        if self.workspace is not None:
            self.workspace.close()

    def _note(self, activity: str, events: int = 0) -> None:
        if self.ledger is not None:
            self.ledger.note(self.ref.path, "coder", activity, events)

    async def propose(self, item: WorkItem, text: str) -> str:
        """The new content of ``item.path`` (now ``text``): ruff's fixes for the item's rules."""
        assert self.recorder is not None
        new, run = await self.toolkit.fix(
            self.root, item.path, text, item.rules, unsafe=item.unsafe
        )
        self.recorder.record(run)
        return new

    @handler
    async def work(self, msg: Working) -> int:
        while True:
            item = await self.bag.take()
            if item is None:
                return self.handled
            try:
                await self.attempt(item)
            except Exception as exc:  # the item must still end: the reviewer escalates it
                log.error("coder attempt failed", item=item.id, error=repr(exc))
                failed = Review(
                    item=item,
                    kind="failed",
                    coder=self.ref.path,
                    diff=f"{type(exc).__name__}: {exc}",
                )
                await self._review(failed)
            self.handled += 1

    async def attempt(self, item: WorkItem) -> Verdict:
        """Do ``item`` once and hand the result to the reviewer; its verdict."""
        assert self.workspace is not None
        assert self.recorder is not None
        self._note(f"item {item.id}: fixing {','.join(item.rules)} in {item.path}", 0)
        try:
            text = await self.workspace.read_text(item.path)
            new = await self.propose(item, text)
        except (ToolError, OSError, UnicodeDecodeError) as exc:
            return await self._review(
                Review(
                    item=item, kind="noop", coder=self.ref.path, diff=f"{type(exc).__name__}: {exc}"
                )
            )
        fix_run = self.recorder.last.event_id if self.recorder.last else ""
        known, cited = await self.recall(item, text, new)
        proposal = self._decide(item, text, new, fix_run, known, cited)
        await self.bag.acquire_turn()
        try:
            now = await self.workspace.read_text(item.path)
            if now != text:  # another item changed the file meanwhile: fix what is there now
                text, new = now, await self.propose(item, now)
                fix_run = self.recorder.last.event_id if self.recorder.last else ""
                known, cited = await self.recall(item, text, new)
                proposal = self._decide(item, text, new, fix_run, known, cited)
            after = _sha(new)
            if new == text:
                return await self._review(
                    Review(item=item, kind="noop", coder=self.ref.path, fix_run=fix_run)
                )
            if known is not None and new != text:
                return await self._review(
                    Review(
                        item=item,
                        kind="no_progress",
                        coder=self.ref.path,
                        after_hash=after,
                        diff=f"rejected in run {known.run_id}: {known.reason}",
                        fix_run=fix_run,
                        memory_ids=(known.id,),
                    )
                )
            if after in item.rejected:
                return await self._review(
                    Review(
                        item=item,
                        kind="no_progress",
                        coder=self.ref.path,
                        after_hash=after,
                        fix_run=fix_run,
                    )
                )
            with self.recorder.caused_by(proposal):  # the change is what the decision chose
                change = await self.workspace.write(item.path, new.encode())
            event = self.recorder.last
            self._note(f"item {item.id}: changed {item.path}, asking for review")
            return await self._review(
                Review(
                    item=item,
                    kind="change",
                    coder=self.ref.path,
                    change_id=event.event_id if event else "",
                    before_hash=_sha(text),
                    before=text,
                    after_hash=after,
                    diff=change.diff,
                    fix_run=fix_run,
                    # From the diff the workspace made already (a second difflib pass cost
                    # about 0.15 ms an item); without one (a large or binary file), compared.
                    change_key=(
                        change_key_of_diff(item.path, change.diff)
                        if change.diff
                        else change_key(item.path, text, new)
                    ),
                )
            )
        finally:
            await self.bag.release_turn()

    async def recall(
        self, item: WorkItem, text: str, new: str
    ) -> tuple[MemoryEntry | None, tuple[str, ...]]:
        """What memory says of changing ``item.path`` from ``text`` to ``new``.

        The earlier rejection of this very change (same file, same ``change_key``) unless an
        approval of it followed, and the ids of the entries consulted: the change's own, and
        on a retry those sharing a failure signature with the reviewer's feedback.
        """
        memory = self.memory
        if memory is None or new == text:
            return None, ()
        key = change_key(item.path, text, new)

        def consult() -> tuple[MemoryEntry | None, tuple[str, ...]]:
            same = memory.lookup(f"path:{item.path}", f"change:{key}")
            cited = [e.id for e in same]
            signatures = set(failure_signatures(item.feedback))
            if signatures:
                for hit in memory.search(item.feedback, k=5):
                    if signatures & set(hit.entry.signatures) and hit.id not in cited:
                        cited.append(hit.id)
            last = same[-1] if same else None
            return (last if last is not None and last.kind == REJECTED else None), tuple(cited)

        return await asyncio.to_thread(consult)

    def _decide(
        self,
        item: WorkItem,
        text: str,
        new: str,
        fix_run: str,
        known: MemoryEntry | None = None,
        cited: tuple[str, ...] = (),
    ) -> SwarmEvent:
        """Record what this attempt proposes, and why; the decision."""
        if new == text:
            choice = f"item {item.id}: propose nothing for {item.path}"
            why = "the fixes change nothing in the file as it is now"
        elif known is not None:
            choice = f"item {item.id}: skip the fixes of {','.join(item.rules)} in {item.path}"
            why = (
                f"memory: this same change was rejected in run {known.run_id} "
                f"({known.id}): {known.reason}"
            )
        elif _sha(new) in item.rejected:
            choice = f"item {item.id}: give up on {item.path}"
            why = "the fixes give the content already rejected: proposing it again is no progress"
        else:
            kind = "unsafe " if item.unsafe else ""
            choice = f"item {item.id}: propose ruff's {kind}fixes of {','.join(item.rules)}"
            why = item.why or "the linter's own fixes for the item's rules"
            if item.feedback:
                why += f"; attempt {item.attempt} after: {item.feedback}"
        decision = self.decide(
            choice,
            rationale=why,
            alternatives=("leave the file as it is", "edit beyond the linter's fixes"),
            confidence=0.5 if item.unsafe else 0.9,
            trigger=item.id,
            memory_ids=((fix_run,) if fix_run else ()) + cited,
            cause=item.cause or None,
        )
        self._note(choice, 1)
        return decision

    async def _review(self, review: Review) -> Verdict:
        verdict: Verdict = await self.reviewer.ask(review, timeout=self.review_timeout)
        return verdict


# --- reviewer ----------------------------------------------------------------------------


class Reviewer(Actor, role="reviewer"):
    """Checks each change with the workspace's tests and the linter, and decides.

    It approves (a commit on the run's branch when the workspace is a git repository) or
    rejects; either way an ``AgentDecision`` cites the ``ToolRun`` events it relied on
    (``memory_ids``) and the change (``cause``). A rejected change is reverted (a new
    ``StateChange``) and its item goes back to the bag with the feedback, up to
    ``max_attempts``; then it is escalated. The verdict is its brain's (``review_request``),
    but a change the tests fail with is never approved. Subclass it to check more: override
    ``check``.
    """

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.recorder: _Recorder | None = None
        self.checks: Checks | None = None
        self.workspace: Workspace | None = None
        self.before: CheckResult | None = None
        """The tests' run before the swarm changed anything."""
        self.passing: list[str] = []
        """The ``ToolRun`` event ids of the last ``check``'s runs that passed."""

    async def on_start(self) -> None:
        ctx = self.context
        self.recorder = _Recorder(self, ctx.ledger)
        self.checks = Checks(
            ctx.workspace,
            recorder=self.recorder,
            blobs=ctx.blobs,
            timeout=ctx.check_timeout,
            env=_CHECK_ENV,
        )
        self.workspace = Workspace(
            ctx.workspace, recorder=self.recorder, blobs=ctx.blobs, agent_id=self.ref.path
        )

    async def on_stop(self) -> None:
        if self.workspace is not None:
            self.workspace.close()

    def _note(self, activity: str, events: int = 0) -> None:
        self.context.ledger.note(self.ref.path, "reviewer", activity, events)

    @handler
    async def settle(self, msg: Settle) -> None:
        """Answered once what came before it was handled (a review in progress, say)."""

    @handler
    async def baseline(self, msg: Baseline) -> TestCount:
        assert self.checks is not None
        assert self.recorder is not None
        self._note(f"running the tests ({msg.when})")
        result = await self.context.toolkit.test(self.checks)
        run_id = self.recorder.last.event_id if self.recorder.last else ""
        if msg.when == "before":
            self.before = result
        failing = result.summary.failed + result.summary.errors
        return TestCount(
            result.summary.passed, failing, result.exit_status == 0 and not failing, run_id
        )

    async def check(self, review: Review) -> tuple[dict[str, Any], list[str], bool]:
        """Run the checks on the change: a compile of the file, the tests, the linter.

        Returns the facts for the brain, the ``ToolRun`` event ids to cite, and whether the
        change keeps the tests as they were before the run (no test that passed fails, none
        goes missing; the tests that failed before may still fail).
        """
        assert self.checks is not None
        assert self.recorder is not None
        item, ctx = review.item, self.context
        cited: list[str] = []
        compiled = await ctx.toolkit.compile(self.checks, item.path)
        if self.recorder.last is not None:
            cited.append(self.recorder.last.event_id)
        self._note(f"item {item.id}: running the tests")
        tests = await ctx.toolkit.test(self.checks)
        if self.recorder.last is not None:
            cited.append(self.recorder.last.event_id)
        self._note(f"item {item.id}: running the linter")
        _, left = await ctx.toolkit.lint(self.checks, item.path, rules=item.rules)
        if self.recorder.last is not None:
            cited.append(self.recorder.last.event_id)
        before = sum(1 for f in ctx.findings.get(item.path, ()) if f.code in item.rules)
        s, base = tests.summary, self.before
        failing = set(s.items)
        new_failures = sorted(failing - set(base.summary.items)) if base else sorted(failing)
        if base is None:
            kept = tests.exit_status == 0 and s.failed + s.errors == 0
        else:
            b = base.summary
            kept = (
                not new_failures
                and s.failed + s.errors <= b.failed + b.errors
                and s.passed >= b.passed
                and (tests.exit_status == 0 or tests.exit_status == base.exit_status)
            )
        self.passing = [cited[0]] if compiled.exit_status == 0 and cited else []
        if kept and len(cited) > 1:
            self.passing.append(cited[1])
        facts = {
            "item": {"file": item.path, "rules": list(item.rules), "unsafe": item.unsafe},
            "compile": {"exit_status": compiled.exit_status},
            "tests": {
                "exit_status": tests.exit_status,
                "exit_status_before": base.exit_status if base else 0,
                "passed": s.passed,
                "failed": s.failed,
                "errors": s.errors,
                "passed_before": base.summary.passed if base else 0,
                "failing_before": base.summary.failed + base.summary.errors if base else 0,
                "failing": list(s.items[:10]),
                "new_failures": new_failures[:10],
                "output_tail": tests.stdout[-1500:].decode("utf-8", "replace"),
            },
            "lint": {"before": before, "remaining": len(left)},
            "diff": review.diff[:20000],
        }
        return facts, cited, kept and compiled.exit_status == 0

    @handler
    async def review(self, review: Review) -> Verdict:
        ctx, ledger, item = self.context, self.context.ledger, review.item
        cause = review.change_id or item.cause or None
        if review.kind == "noop":
            why = review.diff or "the fixes change nothing in the file as it is now"
            decision = self.decide(
                f"item {item.id}: nothing to review",
                rationale=f"{why} (another item may have fixed it)",
                confidence=0.9,
                trigger=review.coder,
                memory_ids=(review.fix_run,) if review.fix_run else (),
                cause=cause,
            )
            ledger.finish(item.id, "skipped")
            self._note(f"item {item.id}: nothing to do", 1)
            return Verdict(outcome="skipped", reason=why, decision_id=decision.event_id)
        if review.kind == "failed":
            ledger.error(review.diff)
            return self._escalate(item, f"the coder failed: {review.diff}", cause, ())
        if review.kind == "no_progress":
            earlier = f"an earlier run ({review.diff})" if review.memory_ids else "before"
            return self._escalate(
                item,
                "the same change was proposed again (content hash "
                f"{review.after_hash[:12]} was rejected {earlier}): no progress",
                cause,
                ((review.fix_run,) if review.fix_run else ()) + review.memory_ids,
            )
        if not ledger.step():
            await self._revert(item, review)
            return self._escalate(item, f"budget spent ({ledger.stopped_by})", cause, ())
        try:
            assert self.recorder is not None
            with self.recorder.caused_by(cause):  # the checks run on the change under review
                facts, cited, tests_pass = await self.check(review)
        except (ToolError, TimeoutError) as exc:  # a check that hangs or cannot start
            text = ledger.error(exc)
            await self._revert(item, review)
            return self._escalate(item, f"the checks could not judge the change: {text}", cause, ())
        try:
            response = await ask(ctx.brain, review_request(facts))
            _brain_tokens(ledger, response)
            answer = parse_review(response)
        except BrainError as exc:
            text = ledger.error(exc)
            await self._revert(item, review)
            return self._escalate(item, f"the brain's verdict is unusable: {text}", cause, cited)
        approve = answer.verdict == "approve" and tests_pass
        if approve:
            commit = None
            if ctx.git is not None:
                try:
                    commit = await ctx.git.commit(
                        f"swarm: fix {','.join(item.rules)} in {item.path}\n\n"
                        f"{answer.reason}\n\nrun {ctx.run_id}, item {item.id}",
                        item.path,
                    )
                except ToolError as exc:  # approved all the same: the change is in the workspace
                    ledger.error(exc)
            decision = self.decide(
                f"approve item {item.id}" + (f" (commit {commit[:12]})" if commit else ""),
                rationale=answer.reason,
                alternatives=("reject",),
                confidence=answer.confidence,
                trigger=review.coder,
                memory_ids=cited,
                cause=cause,
            )
            self._remember(APPROVED, review, answer.reason, facts, decision, self.passing)
            ledger.approved_diffs.append(review.diff)
            ledger.finish(item.id, "approved")
            self._note(f"item {item.id}: approved", 1)
            return Verdict(outcome="approved", reason=answer.reason, decision_id=decision.event_id)
        reason = answer.reason
        if answer.verdict == "approve":
            reason = f"the brain approved, but the checks fail: {reason}"
        decision = self.decide(
            f"reject item {item.id}",
            rationale=reason,
            alternatives=("approve",),
            confidence=answer.confidence,
            trigger=review.coder,
            memory_ids=cited,
            cause=cause,
        )
        ledger.count("rejected")
        self._remember(REJECTED, review, reason, facts, decision, cited)
        await self._revert(item, review, decision)
        if item.attempt >= ctx.max_attempts:
            return self._escalate(
                item, f"rejected {item.attempt} times (max_attempts): {reason}", decision, cited
            )
        again = msgspec.structs.replace(
            item,
            attempt=item.attempt + 1,
            feedback=reason,
            rejected=(*item.rejected, review.after_hash),
            cause=decision.event_id,
        )
        self.space.out(("item", item.id, _ENC.encode(again)))
        self._note(f"item {item.id}: rejected, back in the bag (attempt {again.attempt})", 1)
        return Verdict(outcome="rejected", reason=reason, decision_id=decision.event_id)

    def _remember(
        self,
        kind: str,
        review: Review,
        reason: str,
        facts: dict[str, Any],
        decision: SwarmEvent,
        evidence: list[str],
    ) -> None:
        """Keep the verdict as a memory entry, stored at the run's end (``outcomes``)."""
        item = review.item
        after = _apply_diff_text(review.diff)
        tests = facts["tests"]
        failing = "\n".join(tests["new_failures"]) + "\n" + tests["output_tail"]
        unsafe = "unsafe " if item.unsafe else ""
        self.context.outcomes.append(
            MemoryEntry(
                kind=kind,
                text=(
                    f"{kind}: ruff's {unsafe}fixes of {', '.join(item.rules)} in {item.path}. "
                    f"{item.why}\n{after}"
                )[:2000],
                path=item.path,
                rules=item.rules,
                signatures=failure_signatures(reason + "\n" + failing) if kind == REJECTED else (),
                change_key=review.change_key,
                before_hash=review.before_hash,
                after_hash=review.after_hash,
                reason=reason,
                evidence=tuple(evidence),
                run_id=self.context.run_id,
                decision_id=decision.event_id,
            )
        )

    async def _revert(
        self, item: WorkItem, review: Review, cause: SwarmEvent | None = None
    ) -> None:
        if review.kind != "change":
            return
        assert self.workspace is not None
        original = await self._original(review)
        if original is None:
            return
        assert self.recorder is not None
        with self.recorder.caused_by(cause):  # the rejection that reverts it, when there is one
            await self.workspace.write(item.path, original.encode())
        self.context.ledger.count("reverted")
        self._note(f"item {item.id}: reverted {item.path}")

    async def _original(self, review: Review) -> str | None:
        """The file's content before the change (``None``: it cannot be restored safely)."""
        assert self.workspace is not None
        now = await self.workspace.read_text(review.item.path)
        if _sha(now) != review.after_hash or _sha(review.before) != review.before_hash:
            log.error("file changed under review; not reverted", path=review.item.path)
            return None
        return review.before

    def _escalate(
        self, item: WorkItem, reason: str, cause: SwarmEvent | str | None, cited: Any
    ) -> Verdict:
        decision = self.decide(
            f"escalate item {item.id}",
            rationale=reason,
            alternatives=("try again",),
            confidence=0.9,
            memory_ids=tuple(cited),
            cause=cause,
        )
        self.context.ledger.finish(item.id, "escalated")
        self._note(f"item {item.id}: escalated", 1)
        return Verdict(outcome="escalated", reason=reason, decision_id=decision.event_id)


def _apply_diff_text(diff: str) -> str:
    """A diff's changed lines only (what the change did, for search), at most 40."""
    lines = [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return "\n".join(lines[:40])
