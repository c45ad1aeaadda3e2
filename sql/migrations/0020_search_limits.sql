-- Throughput and latency of search, round 4 (issue 15).
--
-- 1. Typo and prefix queries steered like exact ones. The ranked search (search_posts in
--    sql/search.sql) walks the newest posts only when the query is expected to fill a page there;
--    a widened query had no such estimate, so it always walked the 5,000 newest posts first and,
--    when the correction was too rare to fill a page there (most typos of mid-frequency words),
--    ran the GIN query as well: at 100,000 posts a misspelt query took 1.7-6x an exact one and
--    up to twice the naive ranked query. search_widen() returns the widened query together with
--    the share of posts expected to match it, from the counts it reads anyway (the word's own,
--    its corrections' and the first 200 completions of a word being typed), so the search takes
--    one index-driven path: the recency walk or the GIN index. search_query() is kept as the
--    tsquery half of it.
CREATE OR REPLACE FUNCTION search_widen(q text, prefix_last boolean DEFAULT false, scan integer DEFAULT 5000,
                                        known_from integer DEFAULT 1000, max_alternatives integer DEFAULT 3,
                                        OUT query tsquery, OUT expected_recent float8, OUT expected_matches float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE
-- Plan the candidate lookup for each word's actual trigrams: a generic plan guesses their
-- selectivity and falls back to scanning the whole lexicon (measured: 150 ms instead of 5 ms).
SET plan_cache_mode = force_custom_plan
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
      -- a word being typed: the documents of its first 200 completions count as its own
      known := known + coalesce((SELECT sum(c.ndoc) FROM (
        SELECT l.ndoc FROM search_lexemes AS l
         WHERE l.lexeme LIKE replace(replace(replace(word, '\', '\\'), '%', '\%'), '_', '\_') || '%'
           AND l.lexeme <> word
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

-- Where the newest `scan` posts begin (their oldest created_at), when search_posts `needs` it to
-- take the matches among them from the GIN and recency indexes together; else, or when there are
-- fewer posts (all are recent), NULL, without reading the recency index in the first case. Passed
-- to search_posts as a constant, so the planner sees the range's size and intersects the two
-- indexes (a BitmapAnd) instead of fetching every match of the GIN index to filter it by time.
CREATE OR REPLACE FUNCTION search_recent_since(needs boolean, scan integer) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN needs THEN
    (SELECT created_at FROM search_posts ORDER BY created_at DESC, post_id DESC OFFSET scan - 1 LIMIT 1)
  END
$$;

CREATE OR REPLACE FUNCTION search_query(q text, prefix_last boolean DEFAULT false,
                                        known_from integer DEFAULT 1000,
                                        max_alternatives integer DEFAULT 3)
RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT w.query FROM search_widen(q, prefix_last, 1, known_from, max_alternatives) AS w
$$;

-- 2. The lexicon fold without trigrams for one-off words. At 100,000 posts a third of the
--    lexicon's lexemes had been seen in one document only, nearly all of them typos, and the fold
--    spent most of its time inserting their trigrams (8 rows each into a b-tree): about half of the
--    backlog's indexing time. Once the lexicon is large (search_trigrams_wait_from() lexemes) a
--    lexeme seen in one document waits for a second one before its trigrams are stored;
--    ntrigrams = 0 marks the wait. A waiting lexeme can be no correction from the trigram search
--    (a correction must be at least ten times as common as the word typed, and one-off words
--    score least anyway); it still counts as known, for prefixes and for the variants path,
--    which takes lexemes from search_variant_min_ndoc() (3) documents only. In a small lexicon
--    (a new install, the tests) every word is rare and keeps its trigrams at once.
CREATE OR REPLACE FUNCTION search_trigrams_wait_from() RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT 20000::bigint $$;

CREATE OR REPLACE FUNCTION search_fold_lexemes() RETURNS void
LANGUAGE sql VOLATILE
SET work_mem = '64MB'
AS $$
  WITH moved AS (
    DELETE FROM search_lexeme_pending RETURNING lexeme, ndoc
  ), counts AS (
    SELECT lexeme, sum(ndoc)::int AS ndoc FROM moved GROUP BY lexeme
    HAVING lexeme ~ '^[a-z][a-z0-9]{2,31}$'
  ), counted AS (  -- a waiting lexeme seen again gets its trigram count here, its trigrams below
    UPDATE search_lexemes l
       SET ndoc = l.ndoc + c.ndoc,
           ntrigrams = CASE WHEN l.ntrigrams = 0 THEN (SELECT count(DISTINCT substr('  ' || l.lexeme || ' ', i, 3))
                                                         FROM generate_series(1, length(l.lexeme) + 1) AS i)
                            ELSE l.ntrigrams END
      FROM counts c WHERE l.lexeme = c.lexeme
    RETURNING l.id, l.lexeme, l.ndoc - c.ndoc AS before, l.ndoc AS after
  ), fresh AS MATERIALIZED (
    SELECT c.lexeme, c.ndoc FROM counts c WHERE NOT EXISTS (SELECT 1 FROM search_lexemes l WHERE l.lexeme = c.lexeme)
  ), waiting AS (  -- one-off words wait, once the lexicon is large
    SELECT (SELECT count(*) FROM fresh) + (SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'search_lexemes'::regclass)
           >= search_trigrams_wait_from() AS one_off
  ), grams AS MATERIALIZED (  -- as search_trigrams(): padded "  w", " wo", ..., "rd ", distinct
    SELECT DISTINCT f.lexeme, substr('  ' || f.lexeme || ' ', i, 3) AS trigram
    FROM fresh f, generate_series(1, length(f.lexeme) + 1) AS i
    WHERE f.ndoc > 1 OR NOT (SELECT one_off FROM waiting)
  ), added AS (
    INSERT INTO search_lexemes (lexeme, ndoc, ntrigrams)
    SELECT f.lexeme, f.ndoc, coalesce(n.ntrigrams, 0)
    FROM fresh f LEFT JOIN (SELECT lexeme, count(*) AS ntrigrams FROM grams GROUP BY lexeme) AS n ON n.lexeme = f.lexeme
    ORDER BY f.lexeme
    ON CONFLICT (lexeme) DO NOTHING
    RETURNING id, lexeme, ndoc
  ), trigrams AS (
    INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
    SELECT g.trigram, a.id FROM added a JOIN grams g ON g.lexeme = a.lexeme WHERE NOT search_uses_pg_trgm()
  ), seen_again AS (  -- a lexeme that was one-off before (it may have its trigrams from a small lexicon)
    INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
    SELECT DISTINCT substr('  ' || c.lexeme || ' ', i, 3), c.id
    FROM counted c, generate_series(1, length(c.lexeme) + 1) AS i
    WHERE c.before < 2 AND c.after >= 2 AND NOT search_uses_pg_trgm()
    ON CONFLICT DO NOTHING
  ), reached AS (
    SELECT id, lexeme FROM added WHERE ndoc >= search_variant_min_ndoc()
    UNION ALL
    SELECT id, lexeme FROM counted WHERE before < search_variant_min_ndoc() AND after >= search_variant_min_ndoc()
  )
  INSERT INTO search_lexeme_variants (variant, lexeme_id)
  SELECT DISTINCT v.variant, r.id  -- as search_deletes(): the lexeme and each one-letter deletion
  FROM reached r, LATERAL (
    SELECT r.lexeme UNION ALL SELECT overlay(r.lexeme PLACING '' FROM i FOR 1) FROM generate_series(1, length(r.lexeme)) AS i
  ) AS v (variant)
  ON CONFLICT DO NOTHING;
$$;

-- 3. The lexicon's keys compared as bytes. Its b-trees (lexeme, trigram, variant) took most of the
--    fold's time inserting rows, each key comparison going through the database's collation;
--    lexemes are lower-case ASCII, whose byte order is C.UTF-8's, so COLLATE "C" changes no
--    answer. It also lets the unique index on lexeme serve prefix matches (LIKE 'memec%'), so the
--    text_pattern_ops index of 0018 goes: one index fewer per new lexeme.
ALTER TABLE search_lexemes ALTER COLUMN lexeme TYPE text COLLATE "C";
DROP INDEX IF EXISTS search_lexemes_prefix_idx;
ALTER TABLE search_lexeme_trigrams ALTER COLUMN trigram TYPE text COLLATE "C";
ALTER TABLE search_lexeme_variants ALTER COLUMN variant TYPE text COLLATE "C";
-- a changed column type loses its statistics, and the typo lookups' plans need them
ANALYZE search_lexemes, search_lexeme_trigrams, search_lexeme_variants;

-- 4. The trigram search only for words the lexicon has never seen. A rare but real word with few
--    matches (auto mode widens below ten) found no one-edit neighbour among the variants and fell
--    back to counting shared trigrams over the lexicon: 10-35 ms, most of such a query's time,
--    for corrections at least two edits away that must be ten times as common as a word that is
--    itself in the index. A known word (min_ndoc > 1, see search_widen) is now corrected by the
--    variants path only; a word never seen (a typo) still gets the trigram search.
DO $similar$
BEGIN
  IF search_uses_pg_trgm() THEN
    RETURN;  -- pg_trgm's version (0006) is left as it is
  END IF;
  EXECUTE $f$
    CREATE OR REPLACE FUNCTION search_similar_lexemes(word text, min_ndoc integer DEFAULT 5, min_similarity real DEFAULT 0.3)
    RETURNS TABLE (lexeme text, similarity real, ndoc integer)
    LANGUAGE plpgsql STABLE PARALLEL SAFE AS $b$
    DECLARE
      wt text[] := search_trigrams(word);
      dels text[] := search_deletes(lower(word));
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
        RETURN QUERY SELECT * FROM search_similar_lexemes_by_trigrams(word, min_ndoc, min_similarity);
      END IF;
    END
    $b$
  $f$;
END
$similar$;
