"""What the page sees of an event: a compact row for the log and the graph, and its details.

A row is a small JSON object with one-letter keys (100,000 of them are about 20 MB of JSON,
which Chromium parses in a fraction of a second); the whole event, decoded, is fetched only
when the user selects it (:func:`event_details`). Everything the agent graph draws comes from
explicit links carried by the events themselves: ``causation_id`` (``c``) and a decision's
``memory_ids`` (``m``, the events it cites), never from timing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import msgspec

from swarm_actors.events import (
    AgentDecision,
    BlobStore,
    HealthStatus,
    JournalEntry,
    ModelCall,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    ToolRun,
)
from swarm_actors.replay._timeline import file_change_of
from swarm_actors.tools import SNAPSHOT_TYPE, FileChange

__all__ = ["KIND_NAMES", "event_details", "file_change_of", "row_of", "unified_diff"]

KIND_NAMES: dict[type, str] = {
    AgentDecision: "decision",
    StateChange: "state_change",
    SystemSignal: "system_signal",
    ModelCall: "model_call",
    ToolRun: "tool_run",
}
"""The payload type's kind name (the last token of the event's subject)."""

_SUMMARY_CHARS = 160
_MAX_DIFF_LINES = 20_000  # a diff of blobs longer than this is cut (the page shows text)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


def row_of(
    entry: JournalEntry, sequence_of: Callable[[str], int | None] = lambda _: None
) -> dict[str, Any]:
    """The log's and graph's row for ``entry``.

    Keys: ``s`` journal sequence, ``t`` time (ms since the epoch), ``r`` role, ``a`` agent,
    ``k`` kind, ``c`` the journal sequence of the event that caused it (``sequence_of`` its
    causation id: a number is a fifth of an event id's bytes, and the page needs no id index),
    ``tr`` trace id, ``res`` the resource (a file, a tool, a model), ``sum`` a one-line
    summary, and where they apply ``m`` the sequences of the events a decision cites, ``sig``
    a signal's kind (``health_<verdict>`` for a health report), ``op`` a workspace file
    change's operation, ``x`` a model call's figures (tokens in and out, latency in ms, cache
    hit).
    """
    event = entry.event
    payload = event.payload
    row: dict[str, Any] = {
        "s": entry.sequence,
        "t": event.timestamp_ns // 1_000_000,
        "r": event.agent_role,
        "a": event.agent_id,
        "k": KIND_NAMES[type(payload)],
    }
    if event.causation_id and (cause := sequence_of(event.causation_id)) is not None:
        row["c"] = cause
    if event.trace_id:
        row["tr"] = event.trace_id
    resource, summary = "", ""
    if isinstance(payload, AgentDecision):
        summary = payload.choice or payload.rationale
        cited = [c for c in map(sequence_of, payload.memory_ids) if c is not None]
        if cited:
            row["m"] = cited
    elif isinstance(payload, StateChange):
        resource = payload.target_resource
        change = file_change_of(payload)
        if change is not None:
            row["op"] = change.op
        if change is not None:
            summary = f"{change.op} {change.path}" + (
                f" -> {change.to_path}" if change.to_path else ""
            )
        elif payload.content_type == SNAPSHOT_TYPE:
            summary = "the workspace as the run started (snapshot)"
        else:
            summary = f"{payload.target_type} {payload.target_resource}"
    elif isinstance(payload, SystemSignal):
        row["sig"] = SignalKind(payload.kind).name.lower()
        if payload.kind == SignalKind.HEALTH:  # the verdict colours the agent: health_ok...
            row["sig"] += "_" + HealthStatus(payload.health).name.lower()
        summary = row["sig"] + (f": {payload.detail}" if payload.detail else "")
    elif isinstance(payload, ModelCall):
        resource = payload.model
        row["x"] = [
            payload.tokens_in,
            payload.tokens_out,
            round(payload.latency_ns / 1e6, 1),
            int(payload.cache_hit),
        ]
        summary = payload.error_type or payload.response_preview or payload.prompt_preview
    else:
        resource = payload.tool
        summary = f"{payload.tool}: {payload.summary or f'exit {payload.exit_status}'}"
    if resource:
        row["res"] = resource
    if summary:
        row["sum"] = _short(summary)
    return row


def unified_diff(change: FileChange, blobs: BlobStore | None) -> str:
    """The unified diff of ``change``: inline, or made from its blobs (empty when unavailable)."""
    if change.diff or change.binary:
        return change.diff
    if blobs is None or not (change.before_blob or change.after_blob):
        return ""
    sides: list[list[str]] = []
    for key in (change.before_blob, change.after_blob):
        try:
            text = blobs.get(key).decode("utf-8") if key else ""
        except (KeyError, OSError, ValueError):
            return ""
        sides.append(text.splitlines(keepends=True))
    target = change.to_path or change.path
    lines = list(difflib.unified_diff(sides[0], sides[1], f"a/{change.path}", f"b/{target}", n=3))
    if len(lines) > _MAX_DIFF_LINES:
        lines = [*lines[:_MAX_DIFF_LINES], f"... {len(lines) - _MAX_DIFF_LINES} more lines\n"]
    return "".join(lines)


def _plain(value: object) -> Any:
    """JSON-ready: bytes as hex, enums by name."""
    if isinstance(value, bytes):
        return value.hex()
    return msgspec.to_builtins(value, enc_hook=lambda v: v.hex() if isinstance(v, bytes) else v)


def event_details(
    entry: JournalEntry,
    *,
    verdicts: list[SwarmEvent],
    blobs: BlobStore | None,
    cause_sequence: int | None = None,
) -> dict[str, Any]:
    """Everything about one event for the page.

    Envelope and payload; the decisions it caused (``verdicts``: the reviewer's on a change);
    for a file change its unified diff and before/after hashes.
    """
    event = entry.event
    payload = event.payload
    fields = {f: getattr(payload, f) for f in payload.__struct_fields__}
    if isinstance(payload, StateChange):
        fields.pop("data")
        fields["data_bytes"] = len(payload.data)
    if isinstance(payload, SystemSignal):
        fields["kind"] = SignalKind(payload.kind).name.lower()
    details: dict[str, Any] = {
        "sequence": entry.sequence,
        "subject": entry.subject,
        "stored_ns": entry.stored_ns,
        "event_id": event.event_id,
        "timestamp_ns": event.timestamp_ns,
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "agent_role": event.agent_role,
        "agent_id": event.agent_id,
        "agent_sequence": event.sequence,
        "causation_id": event.causation_id,
        "cause_sequence": cause_sequence,
        "run_id": event.run_id,
        "kind": KIND_NAMES[type(payload)],
        "payload": {k: _plain(v) for k, v in fields.items()},
        "verdicts": [
            {
                "event_id": v.event_id,
                "agent_id": v.agent_id,
                "choice": v.payload.choice,
                "rationale": v.payload.rationale,
                "confidence": v.payload.confidence_score,
            }
            for v in verdicts
            if isinstance(v.payload, AgentDecision)
        ],
    }
    if isinstance(payload, StateChange) and (change := file_change_of(payload)) is not None:
        details["file_change"] = {
            "op": change.op,
            "path": change.path,
            "to_path": change.to_path,
            "before_sha256": change.before_sha256,
            "after_sha256": change.after_sha256,
            "before_size": change.before_size,
            "after_size": change.after_size,
            "binary": change.binary,
            "diff": unified_diff(change, blobs),
        }
    return details
