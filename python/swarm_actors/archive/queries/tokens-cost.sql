-- Tokens and cost of model calls per run and agent (a row per run with agent '' is the run's
-- total), cache hits and failures beside them.
-- Parameters: run ('' for every run).
SELECT
    run_id,
    if(grouping(agent_id) = 1, '', agent_id) AS agent,
    count() AS calls,
    sum(model_tokens_in) AS tokens_in,
    sum(model_tokens_out) AS tokens_out,
    round(sum(model_cost), 6) AS cost,
    countIf(model_cache_hit) AS cache_hits,
    countIf(model_error_type != '') AS failures
FROM events FINAL
WHERE kind = 'model_call' AND ({run:String} = '' OR run_id = {run:String})
GROUP BY GROUPING SETS ((run_id, agent_id), (run_id))
ORDER BY run_id, agent = '', cost DESC, agent
