-- Named queries of the admin console (same format as sql/queries.sql; candidates to move there).

-- name: cycle_trends
-- Cycles, failed cycles, items and item errors per worker and minute since a start minute.
SELECT worker_name,
       extract(epoch FROM date_trunc('minute', finished_at))::float8 AS minute,
       count(*) AS cycles,
       count(*) FILTER (WHERE NOT ok) AS failed,
       coalesce(sum(items), 0) AS items,
       coalesce(sum(item_errors), 0) AS item_errors
FROM cycle_runs
WHERE finished_at >= to_timestamp(%(since)s)
  AND (%(worker)s::text IS NULL OR worker_name = %(worker)s)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: database_now
-- The database clock, so that trend minutes line up with the times the rows were stamped with.
SELECT extract(epoch FROM clock_timestamp())::float8;
