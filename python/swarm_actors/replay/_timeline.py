"""A run's timeline: one ``TimelineRow`` per journal entry, and the filters over them."""

from __future__ import annotations

import datetime
import fnmatch
from collections.abc import Iterable

import msgspec

from swarm_actors.events import (
    AgentDecision,
    JournalEntry,
    ModelCall,
    StateChange,
    SystemSignal,
    ToolRun,
)
from swarm_actors.tools import (
    FILE_CHANGE_TYPE,
    SNAPSHOT_TYPE,
    FileChange,
    decode_file_change,
    decode_snapshot_ref,
)

__all__ = ["TimelineRow", "file_change_of", "filter_rows", "format_time", "row_of"]

_KIND = {
    AgentDecision: "decision",
    StateChange: "state_change",
    SystemSignal: "system_signal",
    ModelCall: "model_call",
    ToolRun: "tool_run",
}
_SUMMARY_CHARS = 160


class TimelineRow(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a run, as a line of its timeline (``swarm-actors replay list``)."""

    seq: int
    """Journal sequence: the event's place in the run (what ``show`` and ``checkout`` take)."""
    time: str
    """When it happened: ISO 8601 UTC, microseconds."""
    time_ns: int
    """The same, in nanoseconds since the Unix epoch."""
    agent_role: str
    """The agent's role (``architect``, ``coder``, ``reviewer``, ``system``, ``swarm``...)."""
    agent_id: str
    """The agent's id (its actor path)."""
    agent_seq: int
    """The agent's own sequence number of the event."""
    kind: str
    """``decision``, ``state_change``, ``system_signal``, ``model_call`` or ``tool_run``."""
    resource: str
    """What it concerns: the file of a change, the tool of a run, the model of a call."""
    summary: str
    """One line saying what happened."""
    event_id: str
    """The event's id."""
    causation_id: str = ""
    """Id of the event that caused it, or empty."""
    trace_id: str = ""
    """OpenTelemetry trace id, or empty."""


def format_time(ns: int) -> str:
    """``ns`` (since the epoch) as ISO 8601 UTC with microseconds and a ``Z``."""
    when = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= _SUMMARY_CHARS else first[: _SUMMARY_CHARS - 1] + "…"


def file_change_of(change: StateChange) -> FileChange | None:
    """The ``FileChange`` a workspace ``StateChange`` carries, or ``None`` (another change)."""
    if change.content_type != FILE_CHANGE_TYPE:
        return None
    try:
        return decode_file_change(change.data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def _diff_counts(diff: str) -> tuple[int, int]:
    added = removed = 0
    for line in diff.split("\n"):
        if line.startswith("+") and not line.startswith("+++ "):
            added += 1
        elif line.startswith("-") and not line.startswith("--- "):
            removed += 1
    return added, removed


def _change_summary(change: StateChange) -> str:
    file = file_change_of(change)
    if file is not None:
        target = f"{file.path} -> {file.to_path}" if file.op == "move" else file.path
        if file.diff:
            added, removed = _diff_counts(file.diff)
            return f"{file.op} {target} (+{added} -{removed} lines)"
        return f"{file.op} {target} ({file.before_size} -> {file.after_size} bytes)"
    if change.content_type == SNAPSHOT_TYPE:
        try:
            ref = decode_snapshot_ref(change.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return "workspace snapshot (unreadable reference)"
        return f"workspace snapshot: {ref.files} files, {ref.size} bytes"
    return f"{change.form.name.lower()} of {change.target_type} {change.target_resource}".strip()


def _summary(payload: object) -> tuple[str, str]:
    """``(resource, summary)`` of a payload."""
    if type(payload) is StateChange:
        return payload.target_resource, _change_summary(payload)
    if type(payload) is AgentDecision:
        return "", _line(payload.choice or payload.rationale)
    if type(payload) is ToolRun:
        status = "timed out" if payload.timed_out else f"exit {payload.exit_status}"
        text = payload.summary or payload.output_preview
        return payload.tool, _line(f"{payload.tool} {status}: {text}" if text else status)
    if type(payload) is ModelCall:
        tokens = f"{payload.tokens_in}+{payload.tokens_out} tokens"
        what = payload.error_type or payload.response_preview
        return payload.model, _line(f"{payload.model} {tokens}: {what}")
    if type(payload) is SystemSignal:
        name = payload.kind.name.lower()
        return "", _line(f"{name}: {payload.detail}" if payload.detail else name)
    return "", type(payload).__name__


def row_of(entry: JournalEntry) -> TimelineRow:
    """The timeline row of one journal entry."""
    event = entry.event
    resource, summary = _summary(event.payload)
    return TimelineRow(
        seq=entry.sequence,
        time=format_time(event.timestamp_ns),
        time_ns=event.timestamp_ns,
        agent_role=event.agent_role,
        agent_id=event.agent_id,
        agent_seq=event.sequence,
        kind=_KIND.get(type(event.payload), type(event.payload).__name__),
        resource=resource,
        summary=summary,
        event_id=event.event_id,
        causation_id=event.causation_id,
        trace_id=event.trace_id,
    )


def _match(pattern: str | None, value: str) -> bool:
    return pattern is None or fnmatch.fnmatchcase(value, pattern)


def filter_rows(
    rows: Iterable[TimelineRow],
    *,
    agent: str | None = None,
    role: str | None = None,
    kind: str | None = None,
    resource: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> list[TimelineRow]:
    """The rows that match every filter given (shell-style patterns: ``coder-*``, ``*.py``).

    ``agent`` matches the agent id (with or without its leading ``/``); ``role``, ``kind`` and
    ``resource`` their fields; ``since_ns`` and ``until_ns`` bound the time (inclusive).
    """
    return [
        row
        for row in rows
        if (agent is None or _match(agent, row.agent_id) or _match(agent, row.agent_id[1:]))
        and _match(role, row.agent_role)
        and _match(kind, row.kind)
        and _match(resource, row.resource)
        and (since_ns is None or row.time_ns >= since_ns)
        and (until_ns is None or row.time_ns <= until_ns)
    ]
