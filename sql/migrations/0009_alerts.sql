-- Every attempt to deliver an alert to a webhook, kept so an operator can see what reached whom.
-- The URL is stored masked (scheme, host and port only): webhook URLs carry the receiver's token.
CREATE TABLE IF NOT EXISTS alert_deliveries (
  id          bigserial PRIMARY KEY,
  worker_name text NOT NULL,
  event       text NOT NULL,            -- failed | down | degraded | recovered
  url         text NOT NULL,            -- masked
  attempt     integer NOT NULL,         -- 1 for the first try
  status_code integer,                  -- null when no HTTP answer came
  error       text,                     -- null when delivered
  delivered   boolean NOT NULL,
  occurred_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS alert_deliveries_worker_time_idx ON alert_deliveries (worker_name, occurred_at DESC);
CREATE INDEX IF NOT EXISTS alert_deliveries_time_idx ON alert_deliveries (occurred_at DESC);
