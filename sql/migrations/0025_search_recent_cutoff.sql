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

-- The GIN path of search_posts_top ranked the newest `win` matches by sorting every match by time
-- first; when a query has no more matches than that (a rare or misspelt word at 1,000,000 posts:
-- the newest 5,000 posts hold too few of them to fill a page), the newest `win` are all of them, and
-- ranking them directly is the naive ranked query's work without the sort (about 1 ms of 5 for
-- 1,300 matches). With `few` (the lexicon expects at most `win` matches) the matches are ranked as
-- they are fetched and counted alongside; should there be more than `win` after all, none are
-- returned and the newest `win` are ranked as before, so the answer never changes.
-- The 7-argument version (search_posts, tests) is this one with `few` false.
CREATE OR REPLACE FUNCTION search_posts_top(q tsquery, walk boolean, dense boolean, lim integer,
                                            exclude bigint[], scan integer, win integer, few boolean)
RETURNS TABLE (post_id bigint, created_at timestamptz, rank real)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan  -- as search_posts_text (0022)
AS $$
#variable_conflict use_column
DECLARE
  ids bigint[];
  times timestamptz[];
  ranks real[];
  since timestamptz;
  until timestamptz := 'infinity';
BEGIN
  IF walk AND dense THEN
    SELECT array_agg(m.post_id), array_agg(m.created_at), array_agg(ts_rank(m.tsv, q, 1))
      INTO ids, times, ranks
      FROM (SELECT n.post_id, n.created_at, n.tsv
              FROM (SELECT s.post_id, s.created_at, s.tsv FROM search_posts AS s
                     ORDER BY s.created_at DESC, s.post_id DESC LIMIT scan) AS n
             WHERE n.tsv @@ q LIMIT win) AS m;
  ELSIF walk THEN
    since := coalesce(search_recent_since(true, scan), '-infinity');
    -- as in 0022: the closed range makes even a generic plan intersect the two indexes
    SELECT array_agg(m.post_id), array_agg(m.created_at), array_agg(ts_rank(m.tsv, q, 1))
      INTO ids, times, ranks
      FROM (SELECT s.post_id, s.created_at, s.tsv FROM search_posts AS s
             WHERE s.tsv @@ q
               AND s.created_at >= since AND s.created_at <= until
             ORDER BY s.created_at + interval '0 s' DESC, s.post_id DESC LIMIT win) AS m;
  END IF;
  IF coalesce(cardinality(ids), 0) >= lim + cardinality(exclude) THEN
    RETURN QUERY
      SELECT c.post_id, c.created_at, c.rank FROM unnest(ids, times, ranks) AS c (post_id, created_at, rank)
       WHERE c.post_id <> ALL (exclude)
       ORDER BY c.rank DESC, c.created_at DESC
       LIMIT lim;
    RETURN;
  END IF;
  IF few THEN
    -- every match ranked, if there are no more than win (then they are the newest win); none
    -- returned means more than that (or none to return: the search below says the same quickly)
    RETURN QUERY
      SELECT m.post_id, m.created_at, m.rank
        FROM (SELECT s.post_id, s.created_at, ts_rank(s.tsv, q, 1) AS rank, count(*) OVER () AS matches
                FROM search_posts AS s WHERE s.tsv @@ q) AS m
       WHERE m.matches <= win AND m.post_id <> ALL (exclude)
       ORDER BY m.rank DESC, m.created_at DESC
       LIMIT lim;
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  -- the GIN index's newest matches, ranked as they are fetched (the top-N sort moves narrow rows)
  RETURN QUERY
    SELECT m.post_id, m.created_at, m.rank
      FROM (SELECT s.post_id, s.created_at, ts_rank(s.tsv, q, 1) AS rank FROM search_posts AS s
             WHERE s.tsv @@ q
             ORDER BY s.created_at + interval '0 s' DESC, s.post_id DESC LIMIT win) AS m
     WHERE m.post_id <> ALL (exclude)
     ORDER BY m.rank DESC, m.created_at DESC
     LIMIT lim;
END
$$;

CREATE OR REPLACE FUNCTION search_posts_top(q tsquery, walk boolean, dense boolean, lim integer,
                                            exclude bigint[] DEFAULT '{}', scan integer DEFAULT 5000,
                                            win integer DEFAULT 1000)
RETURNS TABLE (post_id bigint, created_at timestamptz, rank real)
LANGUAGE sql STABLE
AS $$
  SELECT * FROM search_posts_top(q, walk, dense, lim, exclude, scan, win, false)
$$;

-- search_posts_text of 0022, telling search_posts_top when the lexicon expects few enough matches
-- to rank them all (`few`): the exact words' share of the posts is search_expected_recent's over
-- `scan`, the widened query's expected_matches is search_widen's.
CREATE OR REPLACE FUNCTION search_posts_text(q text, exact boolean, widen_below integer, lim integer,
                                             exclude bigint[] DEFAULT '{}', scan integer DEFAULT 5000,
                                             win integer DEFAULT 1000)
RETURNS TABLE (post_id bigint, rank real, found_by text, query tsquery)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
  exact_q tsquery := websearch_to_tsquery('english', q);
  expected float8;
  matches float8;
  found bigint[] := '{}';
  wide_q tsquery;
BEGIN
  post_id := NULL; rank := NULL; found_by := 'text'; query := exact_q;
  RETURN NEXT;
  IF exact AND numnode(exact_q) > 0 AND lim > cardinality(exclude) THEN
    expected := search_expected_recent(q, scan);
    matches := expected / scan * (SELECT greatest(c.reltuples, 1) FROM pg_class AS c WHERE c.oid = 'search_posts'::regclass);
    FOR post_id, rank IN
      SELECT t.post_id, t.rank
        FROM search_posts_top(exact_q, expected IS NULL OR expected >= lim, expected IS NULL OR expected >= win,
                              lim - cardinality(exclude), exclude, scan, win, coalesce(matches <= win, false)) AS t
    LOOP
      RETURN NEXT;
      found := found || post_id;
    END LOOP;
  END IF;
  IF cardinality(exclude) + cardinality(found) >= widen_below THEN
    RETURN;  -- enough results in all (those found before, as by tag, included)
  END IF;
  SELECT w.query, w.expected_recent, w.expected_matches INTO wide_q, expected, matches
    FROM search_widen(q, true, scan) AS w;
  post_id := NULL; rank := NULL; found_by := 'fuzzy'; query := wide_q;
  RETURN NEXT;
  IF numnode(wide_q) = 0 OR (exact AND wide_q::text = exact_q::text)
     OR lim <= cardinality(exclude) + cardinality(found) THEN
    RETURN;  -- nothing to search, or nothing the exact search did not say already
  END IF;
  -- a widened query is also walked when the whole index holds more matches than the walk visits
  -- posts: a prefix matches many lexemes, and the GIN index reads every match of each
  RETURN QUERY
    SELECT t.post_id, t.rank, 'fuzzy', wide_q
      FROM search_posts_top(wide_q, expected IS NULL OR expected >= lim,
                            expected IS NULL OR expected >= win OR matches >= scan,
                            lim - cardinality(exclude) - cardinality(found), exclude || found, scan, win,
                            coalesce(matches <= win, false)) AS t;
END
$$;
