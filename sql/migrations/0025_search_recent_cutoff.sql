-- Latency of word, typo and prefix search, round 6 (issue 15): the recency cutoff is remembered.
--
-- A search whose words are expected to fill a page from the newest posts (most misspelt, prefix and
-- two-word queries, mid-frequency words) ranks the matches among the `scan` (5,000) newest posts,
-- found by intersecting the GIN index with the recency index from where those posts begin
-- (search_posts_top, migration 0022). Finding where they begin (search_recent_since) walked 5,000
-- entries of the recency index on every search: 0.35-0.45 ms, a third of the in-database time of a
-- typo search at 100,000 posts, for an answer that changes only when posts are indexed or dropped.
--
-- Now each session remembers the cutoff it found (a custom setting, `search.recent_since`) with the
-- number of changes to search_posts it was found at, and finds it again only when that number moved:
--
-- - search_posts_changes holds that number as the sum of 16 counters; a statement-level trigger on
--   search_posts adds one to a counter no other open transaction holds (SKIP LOCKED), so parallel
--   index lanes never wait for each other's commit, and it costs one small UPDATE per statement,
--   not per row;
-- - the counters are rows, read in the same snapshot as search_posts: a session sees the same sum
--   exactly when it sees the same committed changes (each commit that changed search_posts adds at
--   least one, sessions' snapshots only move forward), so a remembered cutoff is never stale.
--   A sequence would not do: it counts a change before it commits, and a search between the two
--   would remember a cutoff without that change's posts under the count that includes it;
-- - a cutoff is remembered per `scan`; a failed statement rolls the setting back with it.
--
-- Measured with bench/search.py: see the closing note of issue 15.

CREATE TABLE IF NOT EXISTS search_posts_changes (
  slot smallint PRIMARY KEY,
  changes bigint NOT NULL DEFAULT 0
);
INSERT INTO search_posts_changes (slot) SELECT g FROM generate_series(0, 15) AS g ON CONFLICT DO NOTHING;

-- One more change to search_posts: a counter this transaction holds already or no other one does
-- (its own backend's first); only if all 16 are held by other open transactions, it waits for one.
CREATE OR REPLACE FUNCTION search_posts_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE search_posts_changes AS c SET changes = c.changes + 1
   WHERE c.slot = coalesce((SELECT f.slot FROM search_posts_changes AS f
                             ORDER BY f.slot = pg_backend_pid() % 16 DESC, f.slot
                             LIMIT 1 FOR UPDATE SKIP LOCKED),
                           pg_backend_pid() % 16);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS search_posts_changed ON search_posts;
CREATE TRIGGER search_posts_changed
  AFTER INSERT OR DELETE OR UPDATE OF post_id, created_at ON search_posts
  FOR EACH STATEMENT EXECUTE FUNCTION search_posts_changed();
DROP TRIGGER IF EXISTS search_posts_truncated ON search_posts;
CREATE TRIGGER search_posts_truncated
  AFTER TRUNCATE ON search_posts
  FOR EACH STATEMENT EXECUTE FUNCTION search_posts_changed();

-- Where the newest `scan` posts begin, when `needs` (as in 0020): the session's remembered answer
-- while search_posts has not changed since, else found anew (and remembered). Its value is
-- "<changes>/<scan>/<microseconds since 1970, empty for none>".
CREATE OR REPLACE FUNCTION search_recent_since(needs boolean, scan integer) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
  key text;
  remembered text;
  since timestamptz;
BEGIN
  IF NOT coalesce(needs, false) THEN
    RETURN NULL;
  END IF;
  key := (SELECT sum(c.changes) FROM search_posts_changes AS c) || '/' || scan || '/';
  remembered := current_setting('search.recent_since', true);
  IF starts_with(remembered, key) THEN
    IF remembered = key THEN
      RETURN NULL;  -- fewer than `scan` posts
    END IF;
    RETURN timestamptz 'epoch' + interval '1 microsecond' * substr(remembered, length(key) + 1)::bigint;
  END IF;
  since := (SELECT s.created_at FROM search_posts AS s ORDER BY s.created_at DESC, s.post_id DESC
             OFFSET scan - 1 LIMIT 1);
  IF since IS NULL OR isfinite(since) THEN
    PERFORM set_config('search.recent_since',
                       key || coalesce((extract(epoch FROM since) * 1000000)::bigint::text, ''), false);
  END IF;
  RETURN since;
END
$$;
