"""Hypothesis strategies for swarm events (shared by the event, proto and journal tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from swarm_actors._events._schema import (
    AgentDecision,
    ChangeForm,
    HealthStatus,
    ModelCall,
    SignalKind,
    StateChange,
    SwarmEvent,
    SystemSignal,
    ToolRun,
)

# Any Unicode that UTF-8 (msgpack, protobuf) can carry: no lone surrogates.
text = st.text(st.characters(codec="utf-8"), max_size=12)
texts = st.lists(text, max_size=3).map(tuple)
roles = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
# Small and boundary values matter more than the middle of the range.
u64s = st.one_of(st.integers(0, 300), st.sampled_from([2**32, 2**63, 2**64 - 1]), u64)

decisions = st.builds(
    AgentDecision,
    context_hash=text,
    input_trigger=text,
    rationale=text,
    rejected_alternatives=texts,
    memory_ids=texts,
    confidence_score=st.floats(0.0, 1.0),
    choice=text,
)
changes = st.builds(
    StateChange,
    target_type=text,
    target_resource=text,
    prev_hash=st.binary(max_size=32),
    hash=st.binary(max_size=32),
    data=st.binary(max_size=40),
    is_reversible=st.booleans(),
    form=st.sampled_from(ChangeForm),
    content_type=text,
)
signals = st.builds(
    SystemSignal,
    kind=st.sampled_from(SignalKind),
    detail=text,
    error_type=text,
    restart_count=u32,
    health=st.sampled_from(HealthStatus),
    cpu_load_percent=st.floats(min_value=0.0, allow_nan=False, allow_infinity=True),
    memory_bytes=u64s,
    mailbox_depth=u64s,
)
i32 = st.integers(-(2**31), 2**31 - 1)
model_calls = st.builds(
    ModelCall,
    provider=text,
    model=text,
    request_digest=text,
    prompt_ref=text,
    response_ref=text,
    prompt_preview=text,
    response_preview=text,
    tokens_in=u64s,
    tokens_out=u64s,
    latency_ns=u64s,
    cache_hit=st.booleans(),
    attempts=u32,
    error_type=text,
    error_message=text,
    cost=st.floats(min_value=0.0, allow_nan=False, allow_infinity=True),
    speculative=st.booleans(),
    winner=st.booleans(),
    finish_reason=text,
)
tool_runs = st.builds(
    ToolRun,
    tool=text,
    argv=texts,
    cwd=text,
    exit_status=st.one_of(st.integers(-64, 255), i32),
    duration_ns=u64s,
    timed_out=st.booleans(),
    passed=u32,
    failed=u32,
    errors=u32,
    skipped=u32,
    summary=text,
    output_ref=text,
    output_bytes=u64s,
    truncated=st.booleans(),
    output_preview=text,
)
payloads = st.one_of(decisions, changes, signals, model_calls, tool_runs)


def events(payload: st.SearchStrategy[object] = payloads) -> st.SearchStrategy[SwarmEvent]:
    """Valid events of every payload kind (state changes not sealed: any hash)."""
    return st.builds(
        SwarmEvent,
        event_id=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
        timestamp_ns=u64s,
        trace_id=text,
        span_id=text,
        agent_role=roles,
        agent_id=text,
        sequence=u64s,
        causation_id=text,
        payload=payload,
        run_id=st.one_of(st.just(""), text),
    )
