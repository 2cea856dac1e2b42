-- The resources changed most often (files, actor state...), with how many agents changed them.
-- Parameters: run ('' for every run), limit.
SELECT
    change_target_resource AS resource,
    any(change_target_type) AS type,
    count() AS changes,
    uniqExact(agent_id) AS agents,
    max(timestamp) AS last_changed
FROM events FINAL
WHERE kind = 'state_change' AND ({run:String} = '' OR run_id = {run:String})
GROUP BY resource
ORDER BY changes DESC, resource
LIMIT {limit:UInt32}
