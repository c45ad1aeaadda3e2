-- Latency of word, typo and prefix search, round 7 (issue 15): the ranked-every-match path buffers narrow rows.
--
-- search_posts_top ranks every match of a query when the lexicon expects no more than its window
-- (`few`, migration 0025): the matches, ranked, counted by a window function, the best `lim` kept.
-- The planner put ts_rank in the window function's output, so the window buffered every match
-- whole, its document included (a tsvector of ~200 bytes), and ranked the rows as it read them
-- back: at 1,000,000 posts this path took 1.3-1.5x the naive ranked query (ts_rank over every
-- match, top 20) for the same 600-900 matches of a misspelt word, and it serves most misspelt,
-- rare-word and two-word searches. Ranking in a subquery the planner keeps (OFFSET 0) ranks each
-- row as it is fetched, and the window buffers (id, time, rank) only: about the naive query's
-- time. The rows, ranks and order are the same.
--
-- Measured with bench/search.py and per statement: see the closing note of issue 15.

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
        FROM (SELECT r.post_id, r.created_at, r.rank, count(*) OVER () AS matches
                FROM (SELECT s.post_id, s.created_at, ts_rank(s.tsv, q, 1) AS rank
                        FROM search_posts AS s WHERE s.tsv @@ q
                      OFFSET 0) AS r) AS m  -- ranked as fetched: the window keeps narrow rows
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
