-- Rejected changes and the reasons given: decisions whose choice rejects something, with the
-- resource of the change they answered (their causation) when it is archived.
-- Parameters: run ('' for every run), limit.
SELECT
    d.timestamp AS timestamp,
    d.run_id AS run_id,
    d.agent_id AS agent,
    d.decision_choice AS choice,
    d.decision_rationale AS reason,
    c.change_target_resource AS resource
FROM
    (SELECT * FROM events FINAL
     WHERE kind = 'decision' AND match(decision_choice, '(?i)^\s*(reject|revert|deny|refuse)')
         AND ({run:String} = '' OR run_id = {run:String})) AS d
LEFT JOIN
    (SELECT event_id, change_target_resource FROM events FINAL
     WHERE kind = 'state_change' AND ({run:String} = '' OR run_id = {run:String})) AS c
    ON d.causation_id = c.event_id
ORDER BY timestamp
LIMIT {limit:UInt32}
