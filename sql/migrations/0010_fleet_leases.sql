-- Many managers on one database: who is alive, who runs which worker, and the fence that keeps a
-- worker whose manager lost its lease from committing after the new owner started it.

-- One row per running manager, upserted by its lease renewal (every lease_ttl_s / 3). `backend_pid`
-- and `backend_start` name the database session that renews: when it is gone from
-- pg_stat_activity the manager is dead (a SIGKILL closes its socket), and its leases can be taken
-- without waiting out the TTL. `statuses` is what it last reported about the workers it runs, so
-- any manager can show the whole fleet from memory.
CREATE TABLE IF NOT EXISTS managers (
  id            text PRIMARY KEY,
  host          text NOT NULL,
  pid           integer NOT NULL,
  labels        text[] NOT NULL DEFAULT '{}',
  api_url       text,
  workers       text[] NOT NULL DEFAULT '{}',   -- the workers its config can run
  statuses      jsonb NOT NULL DEFAULT '{}',
  backend_pid   integer,
  backend_start timestamptz,
  started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row per worker that was ever placed. Never deleted: `epoch` only grows, so a process from
-- an earlier placement can never pass the fence again. Released = expires_at in the past.
CREATE TABLE IF NOT EXISTS worker_leases (
  worker_name text PRIMARY KEY,
  owner       text NOT NULL,        -- managers.id, or `run-worker:<host>:<pid>`
  host        text NOT NULL,
  pid         integer NOT NULL,     -- the owning manager's pid
  epoch       bigint NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  expires_at  timestamptz NOT NULL
);

-- Operator actions on a worker another manager runs travel here (and on channel worker_commands).
CREATE TABLE IF NOT EXISTS worker_commands (
  id           bigserial PRIMARY KEY,
  worker_name  text NOT NULL,
  action       text NOT NULL CHECK (action IN ('start', 'stop', 'restart')),
  target       text NOT NULL,       -- managers.id of the owner when it was sent
  requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  done_at      timestamptz
);
CREATE INDEX IF NOT EXISTS worker_commands_pending_idx ON worker_commands (target) WHERE done_at IS NULL;

-- The fence. Called inside a worker's data transaction (with its cursor write): locks the lease
-- row FOR SHARE until commit and refuses (SQLSTATE WL001) when the epoch moved on. Acquiring a
-- lease bumps the epoch with an UPDATE, which waits for that share lock: a stale transaction
-- either commits before the new owner is granted the worker, or is refused here.
CREATE OR REPLACE FUNCTION check_worker_lease(p_worker text, p_epoch bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  current_epoch bigint;
  current_owner text;
BEGIN
  SELECT epoch, owner INTO current_epoch, current_owner
  FROM worker_leases WHERE worker_name = p_worker FOR SHARE;
  IF current_epoch IS DISTINCT FROM p_epoch THEN
    RAISE EXCEPTION 'lease of worker % is at epoch %, this process runs epoch % (owner now %)',
      p_worker, coalesce(current_epoch::text, 'none'), p_epoch, coalesce(current_owner, 'nobody')
      USING ERRCODE = 'WL001';
  END IF;
END $$;
