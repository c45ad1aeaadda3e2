-- Throughput of the ai and search workers, round 3 (issue 15).
--
-- 1. Post embeddings join the HNSW index off the ai worker's hot path. Profiled on a 2-core box,
--    inserting a row into pgvector's HNSW index (m 16, ef_construction 64) cost 6-35 ms, against
--    0.2 ms for the row itself: the graph search and the neighbours' re-linking of every insert
--    dominated a batch, and the provider calls it was waiting on took a fraction of that. Posts
--    are now stored with `vector_indexed = false`, which keeps them out of the partial HNSW index
--    (its predicate includes `vector_indexed`), and the worker's `vectors` stream
--    (workers/ai/vectors.py) flips them to true in batches when the provider streams are drained,
--    which is when the index absorbs them and their recommendations are computed. Searches see
--    both: the HNSW index for indexed rows, an exact scan of the (small, btree-indexed) unindexed
--    tail for the rest. Profiles are few and keep being indexed as they are written.
--
-- ai_install_schema() (0005) creates ai_posts on servers that get pgvector later; the worker then
-- calls ai_ensure_vector_index(n), which adds the column too, so both paths end the same.
CREATE OR REPLACE FUNCTION ai_ensure_vector_index(n integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF n < 1 OR n > 2000 THEN
    RETURN false;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'ai_posts'::regclass AND attname = 'vector_indexed') THEN
    -- rows already stored were indexed as they were written: true for them, false for new ones
    ALTER TABLE ai_posts ADD COLUMN vector_indexed boolean NOT NULL DEFAULT true;
    ALTER TABLE ai_posts ALTER COLUMN vector_indexed SET DEFAULT false;
  END IF;
  CREATE INDEX IF NOT EXISTS ai_posts_unindexed_idx ON ai_posts (processed_at, post_id)
    WHERE NOT vector_indexed AND embedding IS NOT NULL;
  IF EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'ai_posts' AND indexname = format('ai_posts_embedding_%s_idx', n)
             AND indexdef NOT LIKE '%vector_indexed%') THEN
    EXECUTE format('DROP INDEX ai_posts_embedding_%s_idx', n);  -- the 0005 index, without the flag
  END IF;
  EXECUTE format('CREATE INDEX IF NOT EXISTS ai_posts_embedding_%s_idx ON ai_posts '
                 'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE dims = %s AND vector_indexed', n, n, n);
  EXECUTE format('CREATE INDEX IF NOT EXISTS ai_profiles_embedding_%s_idx ON ai_profiles '
                 'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE dims = %s', n, n, n);
  RETURN true;
END
$$;

DO $vectors$
DECLARE
  n integer;
BEGIN
  IF to_regclass('ai_posts') IS NULL THEN
    RETURN;
  END IF;
  -- an array, not a loop over a query: ALTER TABLE refuses while a cursor on ai_posts is open
  FOREACH n IN ARRAY ARRAY(SELECT DISTINCT dims FROM ai_posts WHERE dims IS NOT NULL UNION SELECT 256) LOOP
    PERFORM ai_ensure_vector_index(n);
  END LOOP;
END
$vectors$;

-- 2. The lexicon fold (0014) in memory. Its EXPLAIN ANALYZE over 30,000 posts (181,771 pending
--    counts, 64,327 new lexemes): inserting 533,431 trigram rows and 161,210 variant rows into
--    their primary keys took 31 of its 63 s, and the distinct-trigram aggregate spilled to disk
--    in 21 batches at the default 4 MB work_mem. The function now runs with 64 MB of work_mem.
--    (Inserting in key order was tried and was slower: the sort cost more than the locality
--    saved while the indexes fit in shared buffers.)
CREATE OR REPLACE FUNCTION search_fold_lexemes() RETURNS void
LANGUAGE sql VOLATILE
SET work_mem = '64MB'
AS $$
  WITH moved AS (
    DELETE FROM search_lexeme_pending RETURNING lexeme, ndoc
  ), counts AS (
    SELECT lexeme, sum(ndoc)::int AS ndoc FROM moved GROUP BY lexeme
    HAVING lexeme ~ '^[a-z][a-z0-9]{2,31}$'
  ), counted AS (
    UPDATE search_lexemes l SET ndoc = l.ndoc + c.ndoc FROM counts c WHERE l.lexeme = c.lexeme
    RETURNING l.id, l.lexeme, l.ndoc - c.ndoc AS before, l.ndoc AS after
  ), fresh AS MATERIALIZED (
    SELECT c.lexeme, c.ndoc FROM counts c WHERE NOT EXISTS (SELECT 1 FROM search_lexemes l WHERE l.lexeme = c.lexeme)
  ), grams AS MATERIALIZED (  -- as search_trigrams(): padded "  w", " wo", ..., "rd ", distinct
    SELECT DISTINCT f.lexeme, substr('  ' || f.lexeme || ' ', i, 3) AS trigram
    FROM fresh f, generate_series(1, length(f.lexeme) + 1) AS i
  ), added AS (
    INSERT INTO search_lexemes (lexeme, ndoc, ntrigrams)
    SELECT f.lexeme, f.ndoc, n.ntrigrams
    FROM fresh f JOIN (SELECT lexeme, count(*) AS ntrigrams FROM grams GROUP BY lexeme) AS n ON n.lexeme = f.lexeme
    ORDER BY f.lexeme
    ON CONFLICT (lexeme) DO NOTHING
    RETURNING id, lexeme, ndoc
  ), trigrams AS (
    INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
    SELECT g.trigram, a.id FROM added a JOIN grams g ON g.lexeme = a.lexeme WHERE NOT search_uses_pg_trgm()
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

-- 3. Prefix queries as cheap as exact ones. search_query() (0006) widened the last word of a
--    search-as-you-type query twice: as a prefix ('memec':*) and, since the unfinished word is
--    unknown, with typo corrections, whose candidates an unfinished word rarely shares a variant
--    with, so they came from the trigram scan (10-25 ms on 50,000 posts) and mostly were the
--    word's own completions ('memecoin', already matched by the prefix). Now the first 200
--    completions of the last word (one range scan of a text_pattern_ops b-tree on the lexicon)
--    count towards how known it is: a prefix of well-known words is an unfinished word, not a
--    typo, and is widened as a prefix only. A word nothing known starts with is corrected as
--    before, so a finished misspelling ("etherium") still gets its corrections.
CREATE INDEX IF NOT EXISTS search_lexemes_prefix_idx ON search_lexemes (lexeme text_pattern_ops);

CREATE OR REPLACE FUNCTION search_query(q text, prefix_last boolean DEFAULT false,
                                        known_from integer DEFAULT 1000,
                                        max_alternatives integer DEFAULT 3)
RETURNS tsquery
LANGUAGE plpgsql STABLE PARALLEL SAFE
-- Plan the candidate lookup for each word's actual trigrams: a generic plan guesses their
-- selectivity and falls back to scanning the whole lexicon (measured: 150 ms instead of 5 ms).
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
  result tsquery := websearch_to_tsquery('english', q);
  word text;
  word_ndoc integer;
  alternatives text;
  last_word text;
  last_lexeme text;
BEGIN
  IF prefix_last THEN
    last_word := lower(substring(q FROM '([[:alnum:]]+)[^[:alnum:]]*$'));
    last_lexeme := (SELECT w FROM unnest(tsvector_to_array(to_tsvector('english', last_word))) AS w LIMIT 1);
  END IF;
  FOR word IN SELECT DISTINCT w FROM unnest(tsvector_to_array(to_tsvector('english', q))) AS w LOOP
    word_ndoc := coalesce((SELECT l.ndoc FROM search_lexemes AS l WHERE l.lexeme = word), 0);
    IF word = last_lexeme AND word_ndoc < known_from THEN
      -- a word being typed: the documents of its first 200 completions count as its own
      word_ndoc := word_ndoc + coalesce((SELECT sum(c.ndoc) FROM (
        SELECT l.ndoc FROM search_lexemes AS l
         WHERE l.lexeme LIKE replace(replace(replace(word, '\', '\\'), '%', '\%'), '_', '\_') || '%'
           AND l.lexeme <> word
         LIMIT 200) AS c), 0);
    END IF;
    CONTINUE WHEN word_ndoc >= known_from OR length(word) < 4;  -- known, or too short to judge
    SELECT string_agg(quote_literal(c.lexeme), ' | ' ORDER BY c.score DESC)
      INTO alternatives
      FROM (SELECT s.lexeme, s.score, max(s.score) OVER () AS best
              FROM (SELECT m.lexeme, m.similarity * ln(1 + m.ndoc) AS score
                      FROM search_similar_lexemes(word, greatest(1, 10 * word_ndoc)) AS m
                     WHERE m.lexeme <> word) AS s
             ORDER BY s.score DESC
             LIMIT max_alternatives) AS c
     WHERE c.score >= 0.6 * c.best;
    IF alternatives IS NOT NULL THEN
      result := ts_rewrite(result, quote_literal(word)::tsquery,
                           (quote_literal(word) || ' | ' || alternatives)::tsquery);
    END IF;
  END LOOP;
  IF prefix_last THEN
    IF last_lexeme IS NOT NULL AND length(last_word) >= 2 THEN
      result := ts_rewrite(result, quote_literal(last_lexeme)::tsquery,
                           (quote_literal(last_lexeme) || ' | ' || quote_literal(last_lexeme) || ':*'
                            || CASE WHEN last_word <> last_lexeme THEN ' | ' || quote_literal(last_word) || ':*' ELSE '' END
                           )::tsquery);
    END IF;
  END IF;
  RETURN result;
END
$$;

-- 4. Typo candidates scored without a function call per candidate. The precomputed path of 0014
--    called search_trigrams() three times per candidate lexeme (SQL functions with an aggregate
--    are never inlined: each call starts its own executor), which made most of a misspelt
--    query's widening. The word's trigrams and deletions are now computed once, and each
--    candidate's trigrams inline; the similarities, filters and fallback are those of 0014.
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
      IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM search_similar_lexemes_by_trigrams(word, min_ndoc, min_similarity);
      END IF;
    END
    $b$
  $f$;
END
$similar$;

-- CREATE OR REPLACE above reset ai_ensure_vector_index() to the caller's rights; workers run as
-- their own roles (0016), which may not create indexes on ai_posts, so it runs as its owner again.
ALTER FUNCTION ai_ensure_vector_index(integer) SECURITY DEFINER SET search_path = public, pg_catalog;
