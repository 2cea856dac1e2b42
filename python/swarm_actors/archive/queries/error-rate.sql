-- Error rate per agent over a window: errors / events, errors being crashes (system signals),
-- failed model calls, and tool runs that timed out or reported errors.
-- Parameters: window (e.g. '30d', '12h'), agent ('' for every agent), run ('' for every run).
SELECT
    agent_id,
    any(agent_role) AS role,
    count() AS events,
    countIf(
        (kind = 'system_signal' AND signal_kind = 'CRASHED')
        OR (kind = 'model_call' AND model_error_type != '')
        OR (kind = 'tool_run' AND (tool_timed_out OR tool_errors > 0))
    ) AS errors,
    round(errors / events, 4) AS error_rate
FROM events FINAL
WHERE timestamp >= now64(9) - toIntervalSecond({window_seconds:UInt64})
    AND ({agent:String} = '' OR agent_id = {agent:String} OR agent_role = {agent:String})
    AND ({run:String} = '' OR run_id = {run:String})
GROUP BY agent_id
ORDER BY error_rate DESC, agent_id
