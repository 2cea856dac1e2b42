"""Synthetic swarm events for the dashboard's tests and benchmark: a plan, a model call, a file
change, a check and a verdict per item, linked by causation ids and citations as a real run's."""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Iterator

import msgspec

from swarm_actors.events import (
    AgentDecision,
    ChangeForm,
    ModelCall,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    ToolRun,
    new_event,
)
from swarm_actors.tools import FILE_CHANGE_TYPE, FILE_SYSTEM, FileChange

RUN_ID = "20261202T000000Z-dash01"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Agent:
    def __init__(self, role: str, agent_id: str, run_id: str) -> None:
        self.role, self.agent_id, self.run_id, self.sequence = role, agent_id, run_id, 0

    def emit(self, payload: object, *, cause: str = "", trace: str = "") -> SwarmEvent:
        self.sequence += 1
        return new_event(
            payload,  # type: ignore[arg-type]
            agent_role=self.role,
            agent_id=self.agent_id,
            sequence=self.sequence,
            causation_id=cause,
            trace_id=trace,
            span_id=os.urandom(8).hex() if trace else "",
            run_id=self.run_id,
        )


def file_change(path: str, before: str, after: str) -> StateChange:
    """A workspace write of ``path`` from ``before`` to ``after``, as the tools record it."""
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            f"a/{path}",
            f"b/{path}",
        )
    )
    change = FileChange(
        op="write" if before else "create",
        path=path,
        before_sha256=_sha(before) if before else "",
        after_sha256=_sha(after),
        before_size=len(before),
        after_size=len(after),
        diff=diff,
    )
    return StateChange(
        target_type=FILE_SYSTEM,
        target_resource=path,
        data=msgspec.msgpack.encode(change),
        form=ChangeForm.DELTA,
        content_type=FILE_CHANGE_TYPE,
        is_reversible=True,
    )


def synthetic_events(items: int, *, coders: int = 4, run_id: str = RUN_ID) -> Iterator[SwarmEvent]:
    """Events of a run with ``items`` work items: 5 events an item, plus lifecycle signals.

    Each item: the architect plans (a decision), a coder asks a model (caused by the plan) and
    writes a file (caused by the call), the reviewer runs the tests (caused by the change) and
    approves or rejects (caused by the change, citing the test run). Every third item is
    rejected. One trace id per item.
    """
    architect = _Agent("architect", "/architect", run_id)
    reviewer = _Agent("reviewer", "/reviewer", run_id)
    pool = [_Agent("coder", f"/coder-{i + 1}", run_id) for i in range(coders)]
    for agent in (architect, reviewer, *pool):
        yield agent.emit(SystemSignal(kind=SignalKind.STARTED))
    versions: dict[str, str] = {}
    for n in range(items):
        trace = hashlib.md5(f"{run_id}/{n}".encode()).hexdigest()
        path = f"pkg/module_{n % 50}.py"
        coder = pool[n % coders]
        plan = architect.emit(
            AgentDecision(
                choice=f"item {n}: fix {path}", rationale="lint findings", confidence_score=0.8
            ),
            trace=trace,
        )
        yield plan
        call = coder.emit(
            ModelCall(
                provider="fake",
                model="tiny-1",
                tokens_in=200 + n % 97,
                tokens_out=40 + n % 13,
                latency_ns=(50 + n % 200) * 1_000_000,
                cache_hit=n % 5 == 0,
                response_preview="a fix",
            ),
            cause=plan.event_id,
            trace=trace,
        )
        yield call
        before = versions.get(path, "")
        after = before + f"value_{n} = {n}\n"
        versions[path] = after
        change = coder.emit(file_change(path, before, after), cause=call.event_id, trace=trace)
        yield change
        rejected = n % 3 == 2
        tests = reviewer.emit(
            ToolRun(tool="pytest", exit_status=int(rejected), passed=20, failed=int(rejected)),
            cause=change.event_id,
            trace=trace,
        )
        yield tests
        yield reviewer.emit(
            AgentDecision(
                choice=f"{'reject' if rejected else 'approve'} item {n}",
                rationale="a test fails" if rejected else "the tests pass",
                memory_ids=(tests.event_id,),
                confidence_score=0.9,
            ),
            cause=change.event_id,
            trace=trace,
        )
