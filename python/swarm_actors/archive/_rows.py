"""Events as rows of the archive's wide ``events`` table, built column-wise as Arrow.

One row per event: the envelope, then every payload kind's fields flattened into columns
named ``<kind prefix>_<field>`` (``decision_``, ``change_``, ``signal_``, ``model_``,
``tool_``). A row fills its own kind's columns and leaves the others at their defaults
(empty, 0, false), which ClickHouse stores in a few bytes per column part: one wide table, as
Langfuse keeps it, instead of a table per kind and joins.

Rows are built as tuples (envelope + five payload parts, four of them a shared default
tuple) and transposed into an Arrow table: one ``insert_arrow`` per batch, the same call for
chDB and a ClickHouse server. ``COLUMNS`` must list ``ddl/v<SCHEMA_VERSION>.sql``'s columns
in order (``archived_at`` aside, filled by the server); ``tests/test_archive.py`` checks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from swarm_actors._events._schema import (
    AgentDecision,
    ModelCall,
    StateChange,
    SwarmEvent,
    SystemSignal,
    ToolRun,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["COLUMNS", "DEAD_COLUMNS", "dead_table", "event_row", "events_table"]

_S, _F, _U, _I, _B, _L, _T, _Y = "str", "f64", "u64", "i32", "bool", "list", "ts", "bytes"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", _S),
    ("run_id", _S),
    ("timestamp", _T),
    ("kind", _S),
    ("agent_role", _S),
    ("agent_id", _S),
    ("sequence", _U),
    ("causation_id", _S),
    ("trace_id", _S),
    ("span_id", _S),
    ("schema_version", _U),
    ("stream_sequence", _U),
    ("stored_at", _T),
    # decision
    ("decision_choice", _S),
    ("decision_confidence", _F),
    ("decision_rationale", _S),
    ("decision_input_trigger", _S),
    ("decision_context_hash", _S),
    ("decision_rejected_alternatives", _L),
    ("decision_memory_ids", _L),
    # state change
    ("change_target_type", _S),
    ("change_target_resource", _S),
    ("change_form", _S),
    ("change_content_type", _S),
    ("change_reversible", _B),
    ("change_prev_hash", _S),
    ("change_hash", _S),
    ("change_data_bytes", _U),
    ("change_data", _Y),
    # system signal
    ("signal_kind", _S),
    ("signal_detail", _S),
    ("signal_error_type", _S),
    ("signal_restart_count", _U),
    ("signal_health", _S),
    ("signal_cpu_load_percent", _F),
    ("signal_memory_bytes", _U),
    ("signal_mailbox_depth", _U),
    # model call
    ("model_provider", _S),
    ("model_name", _S),
    ("model_request_digest", _S),
    ("model_prompt_ref", _S),
    ("model_response_ref", _S),
    ("model_prompt_preview", _S),
    ("model_response_preview", _S),
    ("model_tokens_in", _U),
    ("model_tokens_out", _U),
    ("model_latency_ns", _U),
    ("model_cache_hit", _B),
    ("model_attempts", _U),
    ("model_error_type", _S),
    ("model_error_message", _S),
    ("model_cost", _F),
    ("model_speculative", _B),
    ("model_winner", _B),
    ("model_finish_reason", _S),
    # tool run
    ("tool_name", _S),
    ("tool_argv", _L),
    ("tool_cwd", _S),
    ("tool_exit_status", _I),
    ("tool_duration_ns", _U),
    ("tool_timed_out", _B),
    ("tool_passed", _U),
    ("tool_failed", _U),
    ("tool_errors", _U),
    ("tool_skipped", _U),
    ("tool_summary", _S),
    ("tool_output_ref", _S),
    ("tool_output_bytes", _U),
    ("tool_truncated", _B),
    ("tool_output_preview", _S),
)
"""The ``events`` columns the archiver writes, in table order, with their Arrow kind."""

DEAD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("stream", _S),
    ("stream_sequence", _U),
    ("subject", _S),
    ("stored_at", _T),
    ("reason", _S),
    ("schema_version", "u32?"),
    ("data", _Y),
)
"""The ``dead_letters`` columns the archiver writes."""

_NO_DECISION = ("", 0.0, "", "", "", (), ())
_NO_CHANGE = ("", "", "", "", False, "", "", 0, b"")
_NO_SIGNAL = ("", "", "", 0, "", 0.0, 0, 0)
_NO_MODEL = ("", "", "", "", "", "", "", 0, 0, 0, False, 0, "", "", 0.0, False, False, "")
_NO_TOOL = ("", (), "", 0, 0, False, 0, 0, 0, 0, "", "", 0, False, "")
_DEFAULTS = _NO_DECISION + _NO_CHANGE + _NO_SIGNAL + _NO_MODEL + _NO_TOOL


def _payload(p: object) -> tuple[str, tuple[Any, ...]]:
    """The kind name and the payload columns (all five kinds' parts) of a payload."""
    t = type(p)
    if t is AgentDecision:
        assert isinstance(p, AgentDecision)
        d = (
            p.choice,
            p.confidence_score,
            p.rationale,
            p.input_trigger,
            p.context_hash,
            p.rejected_alternatives,
            p.memory_ids,
        )
        return "decision", d + _DEFAULTS[7:]
    if t is StateChange:
        assert isinstance(p, StateChange)
        c = (
            p.target_type,
            p.target_resource,
            p.form.name,
            p.content_type,
            p.is_reversible,
            p.prev_hash.hex(),
            p.hash.hex(),
            len(p.data),
            p.data,
        )
        return "state_change", _NO_DECISION + c + _DEFAULTS[16:]
    if t is SystemSignal:
        assert isinstance(p, SystemSignal)
        s = (
            p.kind.name,
            p.detail,
            p.error_type,
            p.restart_count,
            p.health.name,
            p.cpu_load_percent,
            p.memory_bytes,
            p.mailbox_depth,
        )
        return "system_signal", _DEFAULTS[:16] + s + _NO_MODEL + _NO_TOOL
    if t is ModelCall:
        assert isinstance(p, ModelCall)
        m = (
            p.provider,
            p.model,
            p.request_digest,
            p.prompt_ref,
            p.response_ref,
            p.prompt_preview,
            p.response_preview,
            p.tokens_in,
            p.tokens_out,
            p.latency_ns,
            p.cache_hit,
            p.attempts,
            p.error_type,
            p.error_message,
            p.cost,
            p.speculative,
            p.winner,
            p.finish_reason,
        )
        return "model_call", _DEFAULTS[:24] + m + _NO_TOOL
    assert isinstance(p, ToolRun)
    r = (
        p.tool,
        p.argv,
        p.cwd,
        p.exit_status,
        p.duration_ns,
        p.timed_out,
        p.passed,
        p.failed,
        p.errors,
        p.skipped,
        p.summary,
        p.output_ref,
        p.output_bytes,
        p.truncated,
        p.output_preview,
    )
    return "tool_run", _DEFAULTS[:42] + r


def event_row(event: SwarmEvent, stream_sequence: int = 0, stored_ns: int = 0) -> tuple[Any, ...]:
    """The ``events`` row of one event, in ``COLUMNS`` order."""
    kind, payload = _payload(event.payload)
    return (
        event.event_id,
        event.run_id,
        event.timestamp_ns,
        kind,
        event.agent_role,
        event.agent_id,
        event.sequence,
        event.causation_id,
        event.trace_id,
        event.span_id,
        event.schema_version,
        stream_sequence,
        stored_ns,
        *payload,
    )


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {
        _S: pa.string(),
        _F: pa.float64(),
        _U: pa.uint64(),
        _I: pa.int32(),
        _B: pa.bool_(),
        _L: pa.list_(pa.string()),
        _T: pa.timestamp("ns", tz="UTC"),
        _Y: pa.binary(),
        "u32?": pa.uint32(),
    }[kind]


def _table(rows: Iterable[tuple[Any, ...]], columns: tuple[tuple[str, str], ...]) -> pa.Table:
    import pyarrow as pa

    rows = list(rows)
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays = [
        pa.array(col, type=_arrow_type(kind)) for col, (_, kind) in zip(cols, columns, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=[name for name, _ in columns])


def events_table(rows: Iterable[tuple[Any, ...]]) -> pa.Table:
    """An Arrow table of ``events`` rows (from :func:`event_row`)."""
    return _table(rows, COLUMNS)


def dead_table(rows: Iterable[tuple[Any, ...]]) -> pa.Table:
    """An Arrow table of ``dead_letters`` rows (``DEAD_COLUMNS`` order)."""
    return _table(rows, DEAD_COLUMNS)
