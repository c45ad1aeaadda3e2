-- Core schema: flags, settings, their audit trail and change notifications, and what the
-- manager and Healdec need (heartbeats, cycle runs, errors, supervision events, sync cursors).

-- Who made a change: the manager sets `manager.actor` for API and CLI writes; raw SQL is
-- attributed to the database role and its application_name.
CREATE OR REPLACE FUNCTION manager_actor() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('manager.actor', true), ''),
    session_user || coalesce(' (' || nullif(current_setting('application_name', true), '') || ')', '')
  )
$$;

CREATE TABLE IF NOT EXISTS feature_flags (
  flag_name   text PRIMARY KEY,
  enabled     boolean NOT NULL,
  description text NOT NULL DEFAULT '',
  updated_at  timestamptz NOT NULL DEFAULT now(),
  updated_by  text NOT NULL DEFAULT manager_actor()
);

CREATE TABLE IF NOT EXISTS settings (
  key         text PRIMARY KEY,
  value       jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  updated_by  text NOT NULL DEFAULT manager_actor()
);

-- Append-only: one row per change to a flag or a setting, however it was made.
CREATE TABLE IF NOT EXISTS config_audit (
  id               bigserial PRIMARY KEY,
  changed_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  kind             text NOT NULL CHECK (kind IN ('flag', 'setting')),
  key              text NOT NULL,
  operation        text NOT NULL,
  old_value        jsonb,
  new_value        jsonb,
  actor            text NOT NULL,
  db_role          text NOT NULL DEFAULT session_user,
  application_name text NOT NULL DEFAULT coalesce(current_setting('application_name', true), '')
);
CREATE INDEX IF NOT EXISTS config_audit_key_idx ON config_audit (kind, key, changed_at DESC);

-- Stamps updated_at/updated_by on every write, unless the writer set updated_by itself.
CREATE OR REPLACE FUNCTION stamp_config_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  IF TG_OP = 'INSERT' OR NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by THEN
    NEW.updated_by := manager_actor();
  END IF;
  RETURN NEW;
END $$;

-- Writes the audit row and announces the change to LISTENers on channel `config_changed`.
CREATE OR REPLACE FUNCTION audit_and_notify_config() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  kind text := CASE TG_TABLE_NAME WHEN 'feature_flags' THEN 'flag' ELSE 'setting' END;
  k text;
  old_v jsonb;
  new_v jsonb;
BEGIN
  IF TG_TABLE_NAME = 'feature_flags' THEN
    k := coalesce(NEW.flag_name, OLD.flag_name);
    IF TG_OP <> 'INSERT' THEN old_v := to_jsonb(OLD.enabled); END IF;
    IF TG_OP <> 'DELETE' THEN new_v := to_jsonb(NEW.enabled); END IF;
  ELSE
    k := coalesce(NEW.key, OLD.key);
    IF TG_OP <> 'INSERT' THEN old_v := OLD.value; END IF;
    IF TG_OP <> 'DELETE' THEN new_v := NEW.value; END IF;
  END IF;
  IF TG_OP = 'UPDATE' AND old_v IS NOT DISTINCT FROM new_v THEN
    RETURN NULL;  -- a no-op write (e.g. only description) is neither audited nor announced
  END IF;
  INSERT INTO config_audit (kind, key, operation, old_value, new_value, actor)
  VALUES (kind, k, TG_OP, old_v, new_v,
          CASE WHEN TG_OP = 'DELETE' THEN manager_actor() ELSE NEW.updated_by END);
  PERFORM pg_notify('config_changed', json_build_object('kind', kind, 'key', k)::text);
  RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS feature_flags_stamp ON feature_flags;
CREATE TRIGGER feature_flags_stamp BEFORE INSERT OR UPDATE ON feature_flags
  FOR EACH ROW EXECUTE FUNCTION stamp_config_row();
DROP TRIGGER IF EXISTS feature_flags_audit ON feature_flags;
CREATE TRIGGER feature_flags_audit AFTER INSERT OR UPDATE OR DELETE ON feature_flags
  FOR EACH ROW EXECUTE FUNCTION audit_and_notify_config();
DROP TRIGGER IF EXISTS settings_stamp ON settings;
CREATE TRIGGER settings_stamp BEFORE INSERT OR UPDATE ON settings
  FOR EACH ROW EXECUTE FUNCTION stamp_config_row();
DROP TRIGGER IF EXISTS settings_audit ON settings;
CREATE TRIGGER settings_audit AFTER INSERT OR UPDATE OR DELETE ON settings
  FOR EACH ROW EXECUTE FUNCTION audit_and_notify_config();

-- One row per worker, overwritten by each heartbeat; stamped with the database clock so that
-- heartbeat ages never depend on the clocks of the worker or manager hosts.
CREATE TABLE IF NOT EXISTS worker_heartbeats (
  worker_name     text PRIMARY KEY,
  pid             integer NOT NULL,
  beat_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
  started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  phase           text NOT NULL DEFAULT 'running',   -- running | waiting | idle | stopping
  last_run        timestamptz,
  last_success    timestamptz,
  last_cycle_ok   boolean,
  last_error      text,
  last_error_at   timestamptz,
  items_processed bigint NOT NULL DEFAULT 0,
  rate_limited_until timestamptz,
  detail          jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS cycle_runs (
  id          bigserial PRIMARY KEY,
  worker_name text NOT NULL,
  pid         integer NOT NULL,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  ok          boolean NOT NULL,
  items       integer NOT NULL DEFAULT 0,
  item_errors integer NOT NULL DEFAULT 0,
  error       text
);
CREATE INDEX IF NOT EXISTS cycle_runs_worker_time_idx ON cycle_runs (worker_name, finished_at DESC);

CREATE TABLE IF NOT EXISTS worker_errors (
  id          bigserial PRIMARY KEY,
  worker_name text NOT NULL,
  occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  item_key    text,
  message     text NOT NULL
);
CREATE INDEX IF NOT EXISTS worker_errors_worker_time_idx ON worker_errors (worker_name, occurred_at DESC);

CREATE TABLE IF NOT EXISTS supervision_events (
  id          bigserial PRIMARY KEY,
  worker_name text NOT NULL,
  occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  event       text NOT NULL,
  pid         integer,
  detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS supervision_events_worker_time_idx
  ON supervision_events (worker_name, occurred_at DESC);

-- Per-worker resumable positions (a fid's last cast, a chain's last block, ...). Written in the
-- same transaction as the rows they cover.
CREATE TABLE IF NOT EXISTS sync_cursors (
  worker_name text NOT NULL,
  cursor_key  text NOT NULL,
  value       jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (worker_name, cursor_key)
);
