-- Latency of word, typo and prefix search, round 5 (issue 15): one statement per search.
--
-- At 100,000 posts a search was slower than the naive ranked query (ts_rank over every match) on
-- every class but mid-frequency words: a misspelt word took 4 round trips (exact tsquery, exact
-- search, widening, widened search), and the ranked search was one large statement with every
-- path in it, planned anew on each call (1.8 ms of planning for 0.24 ms of execution). The SQL
-- functions it called (search_expected_recent, search_recent_since, search_trigrams,
-- search_deletes) are planned anew on every call too (PostgreSQL caches the plans of PL/pgSQL
-- statements only), and search_widen forced a custom plan on every statement under it, for the
-- sake of two lookups that need their values. Now:
--
-- - search_posts_text() runs a whole post search in one call: the exact words, then, when they
--   found fewer than asked, the widened query, each through search_posts_top();
-- - search_posts_top() takes one path of the old statement (walk the newest posts; the GIN and
--   recency indexes together; the GIN index alone), each a small statement written so that a
--   generic plan is the right one: planned once per session, not per call. The recency-bounded
--   path was planned per call for its `since` value (a generic plan saw no small range and
--   fetched every match of the GIN index); a closed range of two parameters is estimated small
--   whatever the values, so its generic plan intersects the two indexes (a BitmapAnd);
-- - the helpers are PL/pgSQL (cached plans), with the same answers, and these functions run with
--   plan_cache_mode = force_generic_plan (the two lookups that need their values planned, the
--   trigram search of a never-seen word and the completions of the word being typed, are an
--   EXECUTE and a range of the C-collated lexicon index, which a generic plan can use where LIKE
--   with a parameter cannot);
-- - the typo candidates' trigrams and deletions are computed in place, not by two SQL functions.
--
-- Measured with bench/search.py at 100,000 posts: see the closing note of issue 15.

-- How many of the newest `scan` posts are expected to match all the words of q (as in 0006).
CREATE OR REPLACE FUNCTION search_expected_recent(q text, scan integer) RETURNS float8
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN (SELECT scan * exp(sum(ln(least(1.0, greatest(coalesce(l.ndoc, 0), 0.01) / n.total))))
            FROM (SELECT greatest(c.reltuples, 1)::float8 AS total FROM pg_class AS c
                   WHERE c.oid = 'search_posts'::regclass) AS n
           CROSS JOIN unnest(tsvector_to_array(to_tsvector('english', q))) AS w (lexeme)
            LEFT JOIN search_lexemes AS l ON l.lexeme = w.lexeme
           GROUP BY n.total);
END
$$;

-- Where the newest `scan` posts begin, when `needs` (as in 0020).
CREATE OR REPLACE FUNCTION search_recent_since(needs boolean, scan integer) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF NOT coalesce(needs, false) THEN
    RETURN NULL;
  END IF;
  RETURN (SELECT s.created_at FROM search_posts AS s ORDER BY s.created_at DESC, s.post_id DESC
           OFFSET scan - 1 LIMIT 1);
END
$$;

-- The best-ranked `lim` posts matching q among its most recent matches, leaving out `exclude` (the
-- paths of 0020's search_posts statement, see sql/search.sql): with `walk` (q is expected to fill
-- a page from the `scan` newest posts) the matches among those, by walking them in index order
-- when `dense` (at least `win` matches expected there), else from the GIN and recency indexes
-- together; if that finds fewer than lim + cardinality(exclude), or without `walk`, the newest
-- `win` matches of the GIN index. ts_rank (normalised by document length) runs on at most `win`
-- rows.
CREATE OR REPLACE FUNCTION search_posts_top(q tsquery, walk boolean, dense boolean, lim integer,
                                            exclude bigint[] DEFAULT '{}', scan integer DEFAULT 5000,
                                            win integer DEFAULT 1000)
RETURNS TABLE (post_id bigint, created_at timestamptz, rank real)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan  -- as search_posts_text below
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
    -- "+ interval '0 s'" hides the b-tree order, and the closed range (the upper bound only for
    -- the planner: any range's estimate is small) makes even a generic plan intersect the two
    -- indexes (a BitmapAnd) instead of fetching every match of the GIN index to filter it by time
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

-- A whole post search for what a user typed, in one call: first a row per query it used (post_id
-- NULL; found_by 'text' for the exact words, 'fuzzy' for the widened query when it was made),
-- then the posts, best first, the exact words' before the widened query's. `exact` searches the
-- exact words; when the results in all (`exclude`, found before, and the exact words') are fewer
-- than `widen_below` the query widened for typos, with its last word also as a prefix, adds its
-- matches (unless, after an exact search, widening changed nothing). A page holds `lim` results
-- in all: `exclude` is left out and counts.
CREATE OR REPLACE FUNCTION search_posts_text(q text, exact boolean, widen_below integer, lim integer,
                                             exclude bigint[] DEFAULT '{}', scan integer DEFAULT 5000,
                                             win integer DEFAULT 1000)
RETURNS TABLE (post_id bigint, rank real, found_by text, query tsquery)
LANGUAGE plpgsql STABLE
-- every statement under it is written for a generic plan (planned once per session); the few that
-- need their values planned run by EXECUTE
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
    FOR post_id, rank IN
      SELECT t.post_id, t.rank
        FROM search_posts_top(exact_q, expected IS NULL OR expected >= lim, expected IS NULL OR expected >= win,
                              lim - cardinality(exclude), exclude, scan, win) AS t
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
                            lim - cardinality(exclude) - cardinality(found), exclude || found, scan, win) AS t;
END
$$;

-- The typo candidates of 0020, with the word's trigrams and deletions computed here (not by two SQL
-- functions planned on every call) and the variants lookup on a cached plan; the trigram search
-- for words never seen is planned for its word (EXECUTE), as before.
DO $similar$
BEGIN
  IF search_uses_pg_trgm() THEN
    RETURN;  -- pg_trgm's version (0006) is left as it is
  END IF;
  EXECUTE $f$
    CREATE OR REPLACE FUNCTION search_similar_lexemes(word text, min_ndoc integer DEFAULT 5, min_similarity real DEFAULT 0.3)
    RETURNS TABLE (lexeme text, similarity real, ndoc integer)
    LANGUAGE plpgsql STABLE PARALLEL SAFE AS $b$
    #variable_conflict use_column
    DECLARE
      w text := lower(word);
      wt text[] := ARRAY(SELECT DISTINCT substr('  ' || w || ' ', i, 3) FROM generate_series(1, length(w) + 1) AS i);
      dels text[] := ARRAY(SELECT w UNION SELECT overlay(w PLACING '' FROM i FOR 1) FROM generate_series(1, length(w)) AS i);
    BEGIN
      RETURN QUERY
        SELECT l.lexeme, s.similarity, l.ndoc
          FROM (SELECT DISTINCT v.lexeme_id FROM search_lexeme_variants AS v WHERE v.variant = ANY (dels)) AS c
          JOIN search_lexemes AS l ON l.id = c.lexeme_id
          CROSS JOIN LATERAL (
            SELECT (count(*)::real / (cardinality(wt) + l.ntrigrams - count(*)))::real AS similarity
              FROM unnest(wt) AS t
             WHERE t = ANY (ARRAY(SELECT substr('  ' || l.lexeme || ' ', i, 3)
                                    FROM generate_series(1, length(l.lexeme) + 1) AS i))
          ) AS s
         WHERE l.ndoc >= min_ndoc AND s.similarity >= min_similarity - 1e-6;
      IF NOT FOUND AND min_ndoc <= 1 THEN
        RETURN QUERY EXECUTE 'SELECT * FROM search_similar_lexemes_by_trigrams($1, $2, $3)'
          USING word, min_ndoc, min_similarity;
      END IF;
    END
    $b$
  $f$;
END
$similar$;

-- search_widen of 0020 on generic plans (it forced a custom plan for every statement under it):
-- completions of the word being typed are a range of the lexicon's index, the trigram search runs
-- by EXECUTE (above), and pg_trgm's candidate lookup (0006) uses its trigram index whatever the word.
CREATE OR REPLACE FUNCTION search_widen(q text, prefix_last boolean DEFAULT false, scan integer DEFAULT 5000,
                                        known_from integer DEFAULT 1000, max_alternatives integer DEFAULT 3,
                                        OUT query tsquery, OUT expected_recent float8, OUT expected_matches float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  total float8 := (SELECT greatest(reltuples, 1)::float8 FROM pg_class WHERE oid = 'search_posts'::regclass);
  share float8;  -- of the posts, expected to match every word (taken as independent, as in search_expected_recent)
  word text;
  known bigint;  -- documents with the word (and, for the word being typed, its completions)
  alternatives text;
  alternatives_ndoc bigint;
  last_word text;
  last_lexeme text;
BEGIN
  query := websearch_to_tsquery('english', q);
  IF prefix_last THEN
    last_word := lower(substring(q FROM '([[:alnum:]]+)[^[:alnum:]]*$'));
    last_lexeme := (SELECT w FROM unnest(tsvector_to_array(to_tsvector('english', last_word))) AS w LIMIT 1);
  END IF;
  FOR word IN SELECT DISTINCT w FROM unnest(tsvector_to_array(to_tsvector('english', q))) AS w LOOP
    known := coalesce((SELECT l.ndoc FROM search_lexemes AS l WHERE l.lexeme = word), 0);
    IF word = last_lexeme THEN
      -- a word being typed: the documents of its first 200 completions count as its own (lexemes
      -- are [a-z0-9], all below '{' in C order, so the range holds exactly the completions)
      known := known + coalesce((SELECT sum(c.ndoc) FROM (
        SELECT l.ndoc FROM search_lexemes AS l
         WHERE l.lexeme > word AND l.lexeme < word || '{' AND starts_with(l.lexeme, word)
         LIMIT 200) AS c), 0);
    END IF;
    IF known < known_from AND length(word) >= 4 THEN  -- else known, or too short to judge
      SELECT string_agg(quote_literal(c.lexeme), ' | ' ORDER BY c.score DESC), sum(c.ndoc)
        INTO alternatives, alternatives_ndoc
        FROM (SELECT s.lexeme, s.score, s.ndoc, max(s.score) OVER () AS best
                FROM (SELECT m.lexeme, m.similarity * ln(1 + m.ndoc) AS score, m.ndoc
                        FROM search_similar_lexemes(word, greatest(1, 10 * known)::integer) AS m
                       WHERE m.lexeme <> word) AS s
               ORDER BY s.score DESC
               LIMIT max_alternatives) AS c
       WHERE c.score >= 0.6 * c.best;
      IF alternatives IS NOT NULL THEN
        query := ts_rewrite(query, quote_literal(word)::tsquery,
                            (quote_literal(word) || ' | ' || alternatives)::tsquery);
        known := known + alternatives_ndoc;
      END IF;
    END IF;
    share := coalesce(share, 1) * least(1.0, greatest(known, 0.01) / total);
  END LOOP;
  IF prefix_last AND last_lexeme IS NOT NULL AND length(last_word) >= 2 THEN
    query := ts_rewrite(query, quote_literal(last_lexeme)::tsquery,
                        (quote_literal(last_lexeme) || ' | ' || quote_literal(last_lexeme) || ':*'
                         || CASE WHEN last_word <> last_lexeme THEN ' | ' || quote_literal(last_word) || ':*' ELSE '' END
                        )::tsquery);
  END IF;
  expected_recent := scan * share;  -- NULL when q has no searchable word
  expected_matches := total * share;
END
$$;
