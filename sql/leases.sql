-- Named queries of the lease keeper (manager/leases.py) and the worker fence (workers/lease.py).
-- Each block: `-- name: <name>`, a description line, then the statement.

-- name: lease_tick
-- The keeper's whole tick at rest in one round trip: upsert this manager's row (liveness, its session, its workers' statuses), extend the leases it holds at the epochs it holds, take its pending commands, and read every manager and lease. One statement sees one snapshot, taken before its own writes, so this manager's row and the leases it extended come from the writes' RETURNING.
WITH me AS (
  INSERT INTO managers AS m (id, host, pid, labels, api_url, workers, statuses, backend_pid, backend_start, heartbeat_at)
  VALUES (%(id)s, %(host)s, %(pid)s, %(labels)s, %(api_url)s, %(workers)s, %(statuses)s, pg_backend_pid(),
          (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()), clock_timestamp())
  ON CONFLICT (id) DO UPDATE SET
    labels = EXCLUDED.labels, api_url = EXCLUDED.api_url, workers = EXCLUDED.workers,
    statuses = EXCLUDED.statuses, backend_pid = EXCLUDED.backend_pid,
    backend_start = EXCLUDED.backend_start, heartbeat_at = EXCLUDED.heartbeat_at
  RETURNING m.id, m.host, m.pid, m.labels, m.api_url, m.workers, m.statuses
), renewed AS (
  UPDATE worker_leases SET expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)
  WHERE owner = %(id)s
    AND (worker_name, epoch) IN (SELECT * FROM unnest(%(names)s::text[], %(epochs)s::bigint[]))
  RETURNING worker_name, expires_at
), commands AS (
  UPDATE worker_commands SET done_at = clock_timestamp()
  WHERE target = %(id)s AND done_at IS NULL
  RETURNING worker_name, action
)
SELECT
  (SELECT coalesce(json_agg(worker_name), '[]') FROM renewed) AS renewed,
  (SELECT json_agg(f) FROM (
     SELECT id, host, pid, labels, api_url, workers, statuses, true AS fresh, true AS connected FROM me
     UNION ALL
     SELECT m.id, m.host, m.pid, m.labels, m.api_url, m.workers, m.statuses,
            m.heartbeat_at > clock_timestamp() - make_interval(secs => %(ttl)s),
            EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = m.backend_pid AND a.backend_start = m.backend_start)
     FROM managers m WHERE m.id <> %(id)s
  ) f) AS managers,
  (SELECT coalesce(json_agg(f), '[]') FROM (
     SELECT l.worker_name, l.owner, l.host, l.pid, l.epoch,
            extract(epoch FROM coalesce(r.expires_at, l.expires_at) - clock_timestamp())::float8 AS expires_in_s
     FROM worker_leases l LEFT JOIN renewed r USING (worker_name)
  ) f) AS leases,
  (SELECT coalesce(json_agg(json_build_array(worker_name, action)), '[]') FROM commands) AS commands;

-- name: fleet_managers
-- Every manager row (`run-worker` reads it; the keeper reads it within lease_tick): fresh = renewed within the TTL; connected = its renewing session still exists.
SELECT m.id, m.host, m.pid, m.labels, m.api_url, m.workers, m.statuses,
       m.heartbeat_at > clock_timestamp() - make_interval(secs => %(ttl)s) AS fresh,
       EXISTS (SELECT 1 FROM pg_stat_activity a
               WHERE a.pid = m.backend_pid AND a.backend_start = m.backend_start) AS connected
FROM managers m;

-- name: acquire_leases
-- Takes each named worker whose lease is free (expired, released, or its owner's session is gone), bumping the epoch; returns what it got.
INSERT INTO worker_leases AS l (worker_name, owner, host, pid, epoch, acquired_at, expires_at)
SELECT w, %(id)s, %(host)s, %(pid)s, 1, clock_timestamp(), clock_timestamp() + make_interval(secs => %(ttl)s)
FROM unnest(%(names)s::text[]) AS w
ON CONFLICT (worker_name) DO UPDATE SET
  owner = EXCLUDED.owner, host = EXCLUDED.host, pid = EXCLUDED.pid, epoch = l.epoch + 1,
  acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= clock_timestamp() OR l.owner = EXCLUDED.owner OR l.owner = ANY(%(dead)s::text[])
RETURNING worker_name, epoch;

-- name: release_leases
-- Gives up leases this manager holds (expired at once, epoch kept) and tells the others.
WITH r AS (
  UPDATE worker_leases SET expires_at = clock_timestamp()
  WHERE owner = %(id)s AND worker_name = ANY(%(names)s::text[])
  RETURNING worker_name
)
SELECT pg_notify('worker_leases', 'released:' || coalesce(string_agg(worker_name, ','), '')) FROM r;

-- name: forget_manager
-- A manager that stopped cleanly removes its row and tells the others to rebalance.
WITH d AS (DELETE FROM managers WHERE id = %(id)s)
SELECT pg_notify('worker_leases', 'left:' || %(id)s);

-- name: announce_manager
-- A manager that joined tells the others to rebalance now rather than at their next tick.
SELECT pg_notify('worker_leases', 'joined:' || %(id)s);

-- name: send_worker_command
-- An operator action for the manager that runs the worker; NOTIFY wakes it.
WITH c AS (INSERT INTO worker_commands (worker_name, action, target) VALUES (%(name)s, %(action)s, %(target)s))
SELECT pg_notify('worker_commands', %(target)s);

-- name: check_worker_lease
-- The fence: inside the worker's transaction, refuse (SQLSTATE WL001) unless it holds the current epoch.
SELECT check_worker_lease(%s, %s);

-- name: renew_one_lease
-- `run-worker`'s renewal of the one lease it holds; no row back = it lost the lease.
UPDATE worker_leases SET expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)
WHERE worker_name = %(name)s AND owner = %(id)s AND epoch = %(epoch)s
RETURNING epoch;

-- name: set_desired_state
-- An operator stopped (true) or started/restarted (false) a worker: kept for whichever manager runs it next.
INSERT INTO worker_desired_state (worker_name, stopped) VALUES (%(name)s, %(stopped)s)
ON CONFLICT (worker_name) DO UPDATE SET stopped = excluded.stopped, set_at = clock_timestamp();

-- name: stopped_by_operator
-- Of the given workers, those an operator stopped and nobody started since.
SELECT worker_name FROM worker_desired_state WHERE worker_name = ANY(%(names)s::text[]) AND stopped;

-- name: record_error_fenced
-- A leased worker's error record: one statement, refused (WL001) unless it holds the current epoch.
INSERT INTO worker_errors (worker_name, item_key, message)
SELECT %(name)s, %(item_key)s, %(message)s FROM (SELECT check_worker_lease(%(name)s, %(epoch)s)) AS fence;
