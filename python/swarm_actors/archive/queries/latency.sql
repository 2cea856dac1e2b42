-- Handling latency per role: from an event to the event it caused (causation_id), i.e. how
-- long the role took to act on what it was handed; p50, p95 and max in milliseconds.
-- Parameters: run ('' for every run).
SELECT
    effect.agent_role AS role,
    count() AS handled,
    round(quantileExact(0.5)(dateDiff('microsecond', cause.timestamp, effect.timestamp)) / 1000, 1) AS p50_ms,
    round(quantileExact(0.95)(dateDiff('microsecond', cause.timestamp, effect.timestamp)) / 1000, 1) AS p95_ms,
    round(max(dateDiff('microsecond', cause.timestamp, effect.timestamp)) / 1000, 1) AS max_ms
FROM
    (SELECT agent_role, timestamp, causation_id FROM events FINAL
     WHERE causation_id != '' AND ({run:String} = '' OR run_id = {run:String})) AS effect
INNER JOIN
    (SELECT event_id, timestamp FROM events FINAL
     WHERE {run:String} = '' OR run_id = {run:String}) AS cause
    ON effect.causation_id = cause.event_id
GROUP BY role
ORDER BY p95_ms DESC, role
