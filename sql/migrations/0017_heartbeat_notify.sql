-- Healdec sleeps until there is something to read (issue 13): every heartbeat and every finished
-- cycle is announced on channel `worker_heartbeats`, so the manager reads the heartbeats when one
-- was written instead of polling the table every second. Statement-level and without a payload:
-- Postgres folds identical notifications of one transaction into one.
CREATE OR REPLACE FUNCTION notify_worker_heartbeat() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('worker_heartbeats', '');
  RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS worker_heartbeats_notify ON worker_heartbeats;
CREATE TRIGGER worker_heartbeats_notify AFTER INSERT OR UPDATE ON worker_heartbeats
  FOR EACH STATEMENT EXECUTE FUNCTION notify_worker_heartbeat();

DROP TRIGGER IF EXISTS cycle_runs_notify ON cycle_runs;
CREATE TRIGGER cycle_runs_notify AFTER INSERT ON cycle_runs
  FOR EACH STATEMENT EXECUTE FUNCTION notify_worker_heartbeat();
