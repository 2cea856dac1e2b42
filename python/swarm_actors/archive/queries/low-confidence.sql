-- Decisions taken with a confidence under a threshold, least confident first.
-- Parameters: threshold (0.0-1.0), run ('' for every run), limit.
SELECT
    timestamp,
    run_id,
    agent_id,
    decision_confidence AS confidence,
    decision_choice AS choice,
    decision_rationale AS rationale
FROM events FINAL
WHERE kind = 'decision'
    AND decision_confidence < {threshold:Float64}
    AND ({run:String} = '' OR run_id = {run:String})
ORDER BY confidence, timestamp
LIMIT {limit:UInt32}
