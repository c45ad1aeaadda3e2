-- Named queries run by the manager, Healdec and the workers.
-- Each block: `-- name: <name>`, a description line, then the statement.

-- name: insert_supervision_event
-- A supervision event (started, exited, restarted, backoff, failed, paused, resumed, killed_hung).
INSERT INTO supervision_events (worker_name, occurred_at, event, pid, detail)
VALUES (%s, to_timestamp(%s), %s, %s, %s);

-- name: prune_history
-- Drops supervision events, cycle runs and errors older than the retention period (seconds).
WITH e AS (DELETE FROM supervision_events WHERE occurred_at < now() - make_interval(secs => %(keep_s)s)),
     c AS (DELETE FROM cycle_runs WHERE finished_at < now() - make_interval(secs => greatest(%(keep_s)s, 3600)))
DELETE FROM worker_errors WHERE occurred_at < now() - make_interval(secs => %(keep_s)s);

-- name: recent_supervision_events
-- The newest supervision events of one worker (also those from before this manager booted).
SELECT occurred_at, event, pid, detail FROM supervision_events
WHERE worker_name = %s ORDER BY occurred_at DESC, id DESC LIMIT %s;

-- name: recent_worker_errors
-- The newest per-item and per-cycle errors of one worker.
SELECT occurred_at, item_key, message FROM worker_errors
WHERE worker_name = %s ORDER BY occurred_at DESC, id DESC LIMIT %s;

-- name: heartbeat_snapshot
-- Every worker's heartbeat with ages measured on the database clock, plus its last-hour cycle counts.
SELECT h.worker_name, h.pid, h.phase,
       extract(epoch FROM clock_timestamp() - h.beat_at)::float8 AS heartbeat_age_s,
       extract(epoch FROM h.last_run)::float8 AS last_run,
       extract(epoch FROM h.last_success)::float8 AS last_success,
       extract(epoch FROM clock_timestamp() - h.last_success)::float8 AS success_age_s,
       h.last_cycle_ok, h.last_error, h.items_processed,
       extract(epoch FROM h.rate_limited_until - clock_timestamp())::float8 AS rate_limited_for_s,
       h.detail,
       coalesce(c.total, 0) AS cycles_last_hour, coalesce(c.failed, 0) AS failed_last_hour,
       coalesce(c.total_all, 0) AS cycles_total, coalesce(c.items_all, 0) AS items_total
FROM worker_heartbeats h
LEFT JOIN LATERAL (
  SELECT count(*) FILTER (WHERE finished_at > clock_timestamp() - interval '1 hour') AS total,
         count(*) FILTER (WHERE finished_at > clock_timestamp() - interval '1 hour' AND NOT ok) AS failed,
         count(*) AS total_all, sum(items) AS items_all
  FROM cycle_runs WHERE worker_name = h.worker_name
) c ON true;

-- name: list_flags
-- All feature flags.
SELECT flag_name, enabled, description, updated_at, updated_by FROM feature_flags ORDER BY flag_name;

-- name: flag_states
-- Only what the supervisor needs: which flags are on.
SELECT flag_name, enabled FROM feature_flags;

-- name: seed_flag
-- Creates a flag from the config only where no row exists: the database always wins.
INSERT INTO feature_flags (flag_name, enabled, description) VALUES (%s, %s, %s)
ON CONFLICT (flag_name) DO NOTHING;

-- name: set_flag
-- Sets (or creates) a flag; returns the row.
INSERT INTO feature_flags (flag_name, enabled) VALUES (%s, %s)
ON CONFLICT (flag_name) DO UPDATE SET enabled = EXCLUDED.enabled
RETURNING flag_name, enabled, description, updated_at, updated_by;

-- name: list_settings
-- All settings.
SELECT key, value, updated_at, updated_by FROM settings ORDER BY key;

-- name: set_setting
-- Sets (or creates) a setting; returns the row.
INSERT INTO settings (key, value) VALUES (%s, %s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
RETURNING key, value, updated_at, updated_by;

-- name: delete_setting
-- Removes a setting (audited by the trigger like any other change).
DELETE FROM settings WHERE key = %s;

-- name: config_audit
-- The newest changes to flags and settings, optionally for one key.
SELECT changed_at, kind, key, operation, old_value, new_value, actor, db_role, application_name
FROM config_audit WHERE (%(key)s::text IS NULL OR key = %(key)s)
ORDER BY changed_at DESC, id DESC LIMIT %(limit)s;

-- name: set_actor
-- Names who is making the changes in this transaction (read by the audit trigger).
SELECT set_config('manager.actor', %s, true);

-- name: worker_flag
-- A worker's own flag (no row: enabled).
SELECT enabled FROM feature_flags WHERE flag_name = %s;

-- name: worker_feature_flags
-- A worker's flags (`<name>_<feature>_enabled`, and its own), read by `Worker.flag`.
SELECT flag_name, enabled FROM feature_flags WHERE left(flag_name, length(%(prefix)s)) = %(prefix)s;

-- name: worker_last_run
-- When a worker last finished a cycle (kept across restarts): where a cron schedule resumes from.
SELECT last_run FROM worker_heartbeats WHERE worker_name = %s;

-- name: run_now
-- Asks a running worker to start a cycle at once (heard by its listener, workers/listen.py).
SELECT pg_notify('worker_run_now', %s);

-- name: worker_settings
-- The settings rows that override one worker's config: keys `<name>_<key>`.
SELECT substr(key, length(%(prefix)s) + 1) AS setting, value FROM settings
WHERE left(key, length(%(prefix)s)) = %(prefix)s;

-- name: heartbeat
-- A worker's heartbeat, stamped with the database clock.
INSERT INTO worker_heartbeats AS h
  (worker_name, pid, beat_at, started_at, phase, last_error, last_error_at, rate_limited_until, detail)
VALUES (%(name)s, %(pid)s, clock_timestamp(), to_timestamp(%(started_at)s), %(phase)s, %(last_error)s,
        CASE WHEN %(last_error)s::text IS NULL THEN NULL ELSE clock_timestamp() END,
        clock_timestamp() + make_interval(secs => %(rate_limited_s)s), %(detail)s)
ON CONFLICT (worker_name) DO UPDATE SET
  pid = EXCLUDED.pid, beat_at = EXCLUDED.beat_at, started_at = EXCLUDED.started_at,
  phase = EXCLUDED.phase, rate_limited_until = EXCLUDED.rate_limited_until, detail = EXCLUDED.detail,
  last_error = coalesce(EXCLUDED.last_error, h.last_error),
  last_error_at = coalesce(EXCLUDED.last_error_at, h.last_error_at);

-- name: record_cycle
-- The end of a cycle: a cycle_runs row and the heartbeat's run/success/error/items fields.
WITH run AS (
  INSERT INTO cycle_runs (worker_name, pid, started_at, ok, items, item_errors, error)
  VALUES (%(name)s, %(pid)s, to_timestamp(%(started_at)s), %(ok)s, %(items)s, %(item_errors)s, %(error)s)
)
UPDATE worker_heartbeats SET
  beat_at = clock_timestamp(),
  last_run = clock_timestamp(),
  last_success = CASE WHEN %(ok)s THEN clock_timestamp() ELSE last_success END,
  last_cycle_ok = %(ok)s,
  last_error = CASE WHEN %(ok)s THEN NULL ELSE %(error)s END,  -- lastError is the current trouble;
  last_error_at = CASE WHEN %(ok)s THEN NULL ELSE clock_timestamp() END,  -- history is in worker_errors
  items_processed = items_processed + %(items)s,
  phase = 'running'
WHERE worker_name = %(name)s;

-- name: record_error
-- One failed item or cycle, kept for the worker's detail view.
INSERT INTO worker_errors (worker_name, item_key, message) VALUES (%s, %s, %s);

-- name: get_cursor
-- A worker's resumable position for one key.
SELECT value FROM sync_cursors WHERE worker_name = %s AND cursor_key = %s;

-- name: set_cursor
-- Moves a cursor; run inside the transaction that wrote the rows it covers.
INSERT INTO sync_cursors (worker_name, cursor_key, value) VALUES (%s, %s, %s)
ON CONFLICT (worker_name, cursor_key) DO UPDATE SET value = EXCLUDED.value, updated_at = clock_timestamp();

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

-- name: insert_alert_delivery
-- One attempt to deliver an alert (the URL already masked).
INSERT INTO alert_deliveries (worker_name, event, url, attempt, status_code, error, delivered)
VALUES (%s, %s, %s, %s, %s, %s, %s);

-- name: recent_alert_deliveries
-- The newest delivery attempts, of one worker or (worker null) of all.
SELECT worker_name, event, url, attempt, status_code, error, delivered, occurred_at FROM alert_deliveries
WHERE %(worker)s::text IS NULL OR worker_name = %(worker)s
ORDER BY occurred_at DESC, id DESC LIMIT %(limit)s;

-- name: prune_alert_deliveries
-- Drops delivery records older than the retention period (seconds).
DELETE FROM alert_deliveries WHERE occurred_at < now() - make_interval(secs => %(keep_s)s);
