-- Replicas that claim work (workers/claims.py), and the audit of which instance of a worker ran when.

-- One row per item a replicated worker must process, per queue (`<worker>:<stream>`, e.g. `ai:posts`).
-- Replicas claim ready rows with FOR UPDATE SKIP LOCKED (state -> claimed, attempts + 1, a claim
-- deadline), process them outside any transaction, then complete them in the transaction that
-- writes their results: the completion matches (item_id, attempts, claimed_by), so a claim that
-- expired and was taken by another replica can no longer complete. `version` is the source row's
-- updated_at when it was queued: a newer version makes a done item ready again. After
-- `max_attempts` claims that did not complete, an item is parked as `failed` with its last error.
CREATE TABLE IF NOT EXISTS work_queue (
  queue            text NOT NULL,
  item_id          bigint NOT NULL,
  version          timestamptz NOT NULL,
  state            text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'claimed', 'done', 'failed')),
  attempts         smallint NOT NULL DEFAULT 0,
  claimed_by       text,
  claimed_at       timestamptz,
  due_at           timestamptz,                  -- claimed: the claim's deadline; ready: retry not before
  done_at          timestamptz,
  completions      integer NOT NULL DEFAULT 0,   -- how many times a claim of it completed (1 per version)
  last_error       text,
  enqueued_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (queue, item_id)
);
-- What a replica may claim: ready rows that are due, and claimed rows whose claim ran out (a dead
-- replica's, or one stuck past claim_timeout_s).
CREATE INDEX IF NOT EXISTS work_queue_claimable_idx ON work_queue (queue, version, item_id)
  WHERE state IN ('ready', 'claimed');

-- Where each queue's feed got to in its source table (updated_at, id). One replica feeds at a
-- time (the row is locked FOR UPDATE SKIP LOCKED); the others claim meanwhile.
CREATE TABLE IF NOT EXISTS work_feeds (
  queue      text PRIMARY KEY,
  cursor     jsonb NOT NULL DEFAULT '{"updated_at": "-infinity", "id": 0}',
  fed_at     timestamptz
);

-- Every worker instance a manager started under a lease: written by the lease holder when it
-- spawns the process and when it reaps it. An instance whose lease another manager took first is
-- ended by that manager at its takeover (end_reason says so): from that moment the fence refuses
-- every write of the old epoch. Read it to prove no two instances of a worker overlap.
CREATE TABLE IF NOT EXISTS worker_instances (
  id          bigserial PRIMARY KEY,
  worker_name text NOT NULL,
  epoch       bigint,
  pid         integer NOT NULL,
  manager_id  text NOT NULL,
  host        text NOT NULL,
  started_at  timestamptz NOT NULL,
  ended_at    timestamptz,
  end_reason  text
);
CREATE UNIQUE INDEX IF NOT EXISTS worker_instances_once_idx ON worker_instances (worker_name, pid, started_at);
CREATE INDEX IF NOT EXISTS worker_instances_open_idx ON worker_instances (worker_name) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS worker_instances_started_idx ON worker_instances (started_at);

-- What operators asked of a worker, kept across placements: a worker stopped by an operator stays
-- stopped when another manager takes its lease (a failover or a rolling deploy), until started.
CREATE TABLE IF NOT EXISTS worker_desired_state (
  worker_name text PRIMARY KEY,
  stopped     boolean NOT NULL,
  set_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- When each epoch of each lease began (kept by a trigger on worker_leases): the moment the fence
-- started refusing the previous epoch, which the instance audit needs after the lease moved on.
CREATE TABLE IF NOT EXISTS worker_lease_epochs (
  worker_name text NOT NULL,
  epoch       bigint NOT NULL,
  owner       text NOT NULL,
  acquired_at timestamptz NOT NULL,
  PRIMARY KEY (worker_name, epoch)
);

CREATE OR REPLACE FUNCTION remember_lease_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.epoch IS DISTINCT FROM OLD.epoch THEN
    INSERT INTO worker_lease_epochs (worker_name, epoch, owner, acquired_at)
    VALUES (NEW.worker_name, NEW.epoch, NEW.owner, NEW.acquired_at)
    ON CONFLICT (worker_name, epoch) DO NOTHING;
  END IF;
  RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS remember_lease_epoch ON worker_leases;
CREATE TRIGGER remember_lease_epoch AFTER INSERT OR UPDATE OF epoch ON worker_leases
  FOR EACH ROW EXECUTE FUNCTION remember_lease_epoch();
