-- Incremental derived state (issue 20): one summary per saga (src/db/summary.rs), the facts its state is derived
-- from, merged with each batch's new events instead of re-reading all of the saga's events. JSON, times in
-- microseconds since the epoch; removed with its `sagas` row (archive).
CREATE TABLE saga_summaries (
    saga_id TEXT  PRIMARY KEY REFERENCES sagas (saga_id) ON DELETE CASCADE,
    summary JSONB NOT NULL
);

-- Backfill from the stored events: the same folds as Summary::of_events (min/max/union per saga and step).
-- Forward outcomes rank STARTED 1 < SUCCEEDED 2 < FAILED 3, compensations COMPENSATION_STARTED 1 < COMPENSATED 2
-- < COMPENSATION_FAILED 3; (attempt, outcome) is maximised, ties of the forward pair keep the earliest time.
WITH ev AS (
    SELECT saga_id, event_id, saga_type, step, attempt, order_id, service, step_index, step_count, compensable,
           (extract(epoch FROM recorded_at) * 1000000)::int8 AS at,
           CASE status WHEN 'STARTED' THEN 1 WHEN 'SUCCEEDED' THEN 2 WHEN 'FAILED' THEN 3 END AS fwd,
           CASE status WHEN 'COMPENSATION_STARTED' THEN 1 WHEN 'COMPENSATED' THEN 2
                       WHEN 'COMPENSATION_FAILED' THEN 3 END AS comp
    FROM saga_events
    WHERE saga_id IN (SELECT saga_id FROM sagas)
), fwd AS (
    SELECT DISTINCT ON (saga_id, step) saga_id, step, attempt, fwd, at
    FROM ev WHERE fwd IS NOT NULL
    ORDER BY saga_id, step, attempt DESC, fwd DESC, at
), comp AS (
    SELECT DISTINCT ON (saga_id, step) saga_id, step, attempt, comp
    FROM ev WHERE comp IS NOT NULL
    ORDER BY saga_id, step, attempt DESC, comp DESC
), steps AS (
    SELECT saga_id, step, bool_or(coalesce(compensable, false)) AS k FROM ev GROUP BY saga_id, step
), step_json AS (
    SELECT s.saga_id,
           jsonb_object_agg(s.step, jsonb_build_object(
               'f', CASE WHEN f.fwd IS NULL THEN NULL ELSE jsonb_build_array(f.attempt, f.fwd, f.at) END,
               'c', CASE WHEN c.comp IS NULL THEN NULL ELSE jsonb_build_array(c.attempt, c.comp) END,
               'k', s.k)) AS steps
    FROM steps s
        LEFT JOIN fwd f ON f.saga_id = s.saga_id AND f.step = s.step
        LEFT JOIN comp c ON c.saga_id = s.saga_id AND c.step = s.step
    GROUP BY s.saga_id
), pos AS (
    SELECT DISTINCT ON (saga_id, step_index) saga_id, step_index, at, event_id, step
    FROM ev WHERE step_index IS NOT NULL
    ORDER BY saga_id, step_index, at, event_id
), pos_json AS (
    SELECT saga_id, jsonb_object_agg(step_index::text, jsonb_build_array(at, event_id, step)) AS pos
    FROM pos GROUP BY saga_id
), firsts AS (
    SELECT DISTINCT ON (saga_id) saga_id, at, event_id, saga_type FROM ev ORDER BY saga_id, at, event_id
), orders AS (
    SELECT DISTINCT ON (saga_id) saga_id, at, event_id, order_id
    FROM ev WHERE order_id IS NOT NULL ORDER BY saga_id, at, event_id
), totals AS (
    SELECT saga_id, count(*) AS n, max(at) AS last, max(step_count) AS count,
           jsonb_agg(DISTINCT service) AS services
    FROM ev GROUP BY saga_id
)
INSERT INTO saga_summaries (saga_id, summary)
SELECT t.saga_id, jsonb_build_object(
    'n', t.n,
    'first', jsonb_build_array(fi.at, fi.event_id, fi.saga_type),
    'last', t.last,
    'order', CASE WHEN o.saga_id IS NULL THEN NULL ELSE jsonb_build_array(o.at, o.event_id, o.order_id) END,
    'count', t.count,
    'services', t.services,
    'steps', sj.steps,
    'pos', coalesce(pj.pos, '{}'::jsonb))
FROM totals t
    JOIN firsts fi ON fi.saga_id = t.saga_id
    JOIN step_json sj ON sj.saga_id = t.saga_id
    LEFT JOIN orders o ON o.saga_id = t.saga_id
    LEFT JOIN pos_json pj ON pj.saga_id = t.saga_id;
