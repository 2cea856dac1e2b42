-- Archive DDL for event schema version 2 (swarm_actors.events.SCHEMA_VERSION == 2).
-- A later schema version adds ddl/v<N>.sql holding only what changed (ALTER TABLE ... ADD
-- COLUMN for appended fields): the table is append-only, columns are only ever added.
-- {db} is the archive's database. Statements are separated by a line holding only ";".

-- One wide table, one row per event, every payload kind's fields flattened into columns
-- (those of the other kinds keep their defaults). ReplacingMergeTree: rows with the same
-- sorting key are one event (its kind, role and time are fixed by its id), merged away in the
-- background; `FINAL` reads as if merged. The archiver also skips ids already stored when
-- NATS hands out a batch again after a crash, so `count()` is right without FINAL too.
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id String,
    run_id LowCardinality(String),
    timestamp DateTime64(9, 'UTC'),
    kind LowCardinality(String),
    agent_role LowCardinality(String),
    agent_id String,
    sequence UInt64,
    causation_id String,
    trace_id String,
    span_id String,
    schema_version UInt16,
    stream_sequence UInt64,
    stored_at DateTime64(9, 'UTC'),
    archived_at DateTime64(3, 'UTC') DEFAULT now64(3),
    decision_choice String,
    decision_confidence Float64,
    decision_rationale String,
    decision_input_trigger String,
    decision_context_hash String,
    decision_rejected_alternatives Array(String),
    decision_memory_ids Array(String),
    change_target_type LowCardinality(String),
    change_target_resource String,
    change_form LowCardinality(String),
    change_content_type LowCardinality(String),
    change_reversible Bool,
    change_prev_hash String,
    change_hash String,
    change_data_bytes UInt64,
    change_data String CODEC(ZSTD(3)),
    signal_kind LowCardinality(String),
    signal_detail String,
    signal_error_type String,
    signal_restart_count UInt32,
    signal_health LowCardinality(String),
    signal_cpu_load_percent Float64,
    signal_memory_bytes UInt64,
    signal_mailbox_depth UInt64,
    model_provider LowCardinality(String),
    model_name LowCardinality(String),
    model_request_digest String,
    model_prompt_ref String,
    model_response_ref String,
    model_prompt_preview String,
    model_response_preview String,
    model_tokens_in UInt64,
    model_tokens_out UInt64,
    model_latency_ns UInt64,
    model_cache_hit Bool,
    model_attempts UInt32,
    model_error_type String,
    model_error_message String,
    model_cost Float64,
    model_speculative Bool,
    model_winner Bool,
    model_finish_reason LowCardinality(String),
    tool_name LowCardinality(String),
    tool_argv Array(String),
    tool_cwd String,
    tool_exit_status Int32,
    tool_duration_ns UInt64,
    tool_timed_out Bool,
    tool_passed UInt32,
    tool_failed UInt32,
    tool_errors UInt32,
    tool_skipped UInt32,
    tool_summary String,
    tool_output_ref String,
    tool_output_bytes UInt64,
    tool_truncated Bool,
    tool_output_preview String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
-- The shipped queries filter on the kind first (decisions, changes, model calls), then group
-- by role or agent over a time window; event_id last makes the key one row per event.
ORDER BY (kind, agent_role, timestamp, event_id)
;
-- What could not be archived: events of a newer schema version, bytes that are no event.
-- Kept with the reason and the bytes, one row per stream message.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    stream LowCardinality(String),
    stream_sequence UInt64,
    subject String,
    stored_at DateTime64(9, 'UTC'),
    archived_at DateTime64(3, 'UTC') DEFAULT now64(3),
    reason String,
    schema_version Nullable(UInt32),
    data String
)
ENGINE = ReplacingMergeTree
ORDER BY (stream, stream_sequence)
