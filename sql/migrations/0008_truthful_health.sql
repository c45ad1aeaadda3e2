-- What a worker reports beyond liveness (issue 10): why it cannot do its job (`blocked`, kept on
-- every heartbeat until a cycle succeeds) and how far behind its upstream it is (`lag` in `lag_unit`:
-- blocks, slots, seconds or rows).
ALTER TABLE worker_heartbeats ADD COLUMN IF NOT EXISTS blocked text;
ALTER TABLE worker_heartbeats ADD COLUMN IF NOT EXISTS lag double precision;
ALTER TABLE worker_heartbeats ADD COLUMN IF NOT EXISTS lag_unit text;
