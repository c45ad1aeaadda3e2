-- Throughput of the ai and search workers (issue 15).
--
-- 1. Summaries by content, like ai_embedding_cache for vectors: the ai worker now has several chat
--    calls in flight at once, so when one of them is refused (429) the others may already be paid
--    for; their answers are kept here at once, outside the batch, and reused when the batch runs
--    again. Filled from ai_posts where that table exists (pgvector installed).
CREATE TABLE IF NOT EXISTS ai_summary_cache (
  chat_model   text NOT NULL,
  content_hash bytea NOT NULL,                 -- sha256 of the post text sent
  summary      text,
  sentiment    text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chat_model, content_hash)
);

DO $backfill$
BEGIN
  IF to_regclass('ai_posts') IS NOT NULL THEN
    INSERT INTO ai_summary_cache (chat_model, content_hash, summary, sentiment)
    SELECT DISTINCT ON (chat_model, content_hash) chat_model, content_hash, summary, sentiment
    FROM ai_posts
    WHERE chat_model IS NOT NULL AND content_hash IS NOT NULL AND summary IS NOT NULL
    ORDER BY chat_model, content_hash, processed_at DESC
    ON CONFLICT DO NOTHING;
  END IF;
END
$backfill$;

-- 2. The typo lexicon, kept in batches. Counting every indexed batch's words into search_lexemes
--    updated ~10,000 lexeme rows per 2,000 posts: two thirds of the indexing time. Now a batch
--    appends its counts to search_lexeme_pending (no index, no update) and search_fold_lexemes()
--    adds the pending counts to the lexicon in one pass, each lexeme once, when the worker's
--    backlog is drained or every `lexicon_fold_posts` posts.
CREATE TABLE IF NOT EXISTS search_lexeme_pending (
  lexeme text NOT NULL,
  ndoc   integer NOT NULL
);

-- A batch's documents: their lexemes and in how many documents each appears, to fold later.
-- tsvector_to_array, not unnest(tsvector): no position arrays built just to be thrown away; the
-- lexeme filter runs at the fold, once per distinct lexeme.
CREATE OR REPLACE FUNCTION search_note_lexemes(docs tsvector[]) RETURNS void
LANGUAGE sql VOLATILE AS $$
  INSERT INTO search_lexeme_pending (lexeme, ndoc)
  SELECT w.lexeme, count(*)::int
  FROM unnest(docs) AS d (tsv), unnest(tsvector_to_array(d.tsv)) AS w (lexeme)
  GROUP BY w.lexeme;
$$;

-- 3. Typo candidates precomputed (symmetric deletes): search_lexeme_variants maps each lexeme
--    seen in at least 3 documents (rarer ones are mostly typos themselves), and every string one
--    deletion away from it, to the lexeme. A word within one edit (deletion, insertion,
--    substitution, transposition) of a lexeme shares a variant with it, so the candidates for a
--    typed word are one index lookup of the word and its own deletions, instead of counting the
--    trigrams shared with every lexeme. Words with no candidate there still get the trigram search.
CREATE TABLE IF NOT EXISTS search_lexeme_variants (
  variant   text NOT NULL,
  lexeme_id integer NOT NULL,                 -- search_lexemes.id (lexemes are never deleted)
  PRIMARY KEY (variant, lexeme_id)
);

-- A word and every string one deletion away from it.
CREATE OR REPLACE FUNCTION search_deletes(word text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT array_agg(DISTINCT v) FROM (
    SELECT word
    UNION ALL
    SELECT overlay(word PLACING '' FROM i FOR 1) FROM generate_series(1, length(word)) AS i
  ) AS d (v)
$$;

-- Documents a lexeme must be in before it is offered as a correction by the precomputed path.
CREATE OR REPLACE FUNCTION search_variant_min_ndoc() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 3 $$;

INSERT INTO search_lexeme_variants (variant, lexeme_id)
SELECT unnest(search_deletes(lexeme)), id FROM search_lexemes WHERE ndoc >= search_variant_min_ndoc()
ON CONFLICT DO NOTHING;

-- Adds every pending count to the lexicon (new lexemes inserted with their trigrams, unless
-- pg_trgm indexes the lexicon; lexemes reaching search_variant_min_ndoc() with their variants)
-- and empties the pending table; what search_learn_lexemes did per batch. Trigrams and
-- deletions are expanded set-based with generate_series: calling search_trigrams() and
-- search_deletes() per lexeme (SQL functions with an aggregate are never inlined, each call sets
-- up its own executor) took most of a fold's time.
CREATE OR REPLACE FUNCTION search_fold_lexemes() RETURNS void
LANGUAGE sql VOLATILE AS $$
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

-- Known lexemes that look like `word` (see 0006): the precomputed candidates within one edit,
-- scored and filtered exactly as before (trigram similarity, min_ndoc); only when they give
-- nothing, the trigram search of 0006 (kept as search_similar_lexemes_by_trigrams). Where pg_trgm
-- indexes the lexicon its version of search_similar_lexemes is left as it is.
DO $similar$
BEGIN
  IF search_uses_pg_trgm() THEN
    RETURN;
  END IF;
  ALTER FUNCTION search_similar_lexemes(text, integer, real) RENAME TO search_similar_lexemes_by_trigrams;
  EXECUTE $f$
    CREATE FUNCTION search_similar_lexemes(word text, min_ndoc integer DEFAULT 5, min_similarity real DEFAULT 0.3)
    RETURNS TABLE (lexeme text, similarity real, ndoc integer)
    LANGUAGE plpgsql STABLE PARALLEL SAFE AS $b$
    BEGIN
      RETURN QUERY
        SELECT l.lexeme, s.similarity, l.ndoc
          FROM (SELECT DISTINCT v.lexeme_id FROM search_lexeme_variants AS v
                 WHERE v.variant = ANY (search_deletes(lower(word)))) AS c
          JOIN search_lexemes AS l ON l.id = c.lexeme_id
          CROSS JOIN LATERAL (
            SELECT (count(*)::real / (cardinality(search_trigrams(word)) + l.ntrigrams - count(*)))::real AS similarity
              FROM unnest(search_trigrams(word)) AS t WHERE t = ANY (search_trigrams(l.lexeme))
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

-- 4. Tags of a whole batch in one statement: the patterns of 0006's search_extract_tags (dropped
--    here: it ran once per post, with a plan's set-up each time), each tried only on texts holding
--    its sigil (strpos costs a fraction of a regular expression, and most posts have no tags).
DROP FUNCTION IF EXISTS search_extract_tags(text, text, text, jsonb, jsonb);

CREATE OR REPLACE FUNCTION search_post_tags(ids bigint[])
RETURNS TABLE (kind text, tag text, post_id bigint, created_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  WITH doc AS MATERIALIZED (
    SELECT p.id, p.created_at, coalesce(p.title, '') || E'\n' || coalesce(p.body, '') AS text,
           coalesce(p.url, '') || ' ' || coalesce(p.embeds::text, '') AS links, p.mentions
    FROM external_posts p WHERE p.id = ANY (ids) AND p.deleted_at IS NULL  -- removed posts lose their tags
  )
  SELECT DISTINCT t.kind, t.tag, t.id, t.created_at FROM (
    SELECT 'hashtag', lower(m[1]), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text, '(?:^|[^[:alnum:]_&#/])#([[:alpha:]][[:alnum:]_]{0,63})', 'g') AS m
     WHERE strpos(d.text, '#') > 0
    UNION ALL
    SELECT 'cashtag', lower(m[1]), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text, '(?:^|[^[:alnum:]_$])\$([A-Za-z][A-Za-z0-9]{0,9})(?![[:alnum:]_])', 'g') AS m
     WHERE strpos(d.text, '$') > 0
    UNION ALL
    SELECT 'mention', lower(m[1]), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text, '(?:^|[^[:alnum:]_@./])@([[:alnum:]_](?:[[:alnum:]_.-]{0,62}[[:alnum:]_])?)', 'g') AS m
     WHERE strpos(d.text, '@') > 0
    UNION ALL
    SELECT 'mention', lower(m[1]), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text, '(?:^|[^[:alnum:]_/])/?u/([[:alnum:]_-]{3,20})', 'g') AS m
     WHERE strpos(d.text, 'u/') > 0
    UNION ALL
    SELECT 'mention', lower(coalesce(e ->> 'username', e ->> 'fid', e #>> '{}')), d.id, d.created_at
      FROM doc AS d, jsonb_array_elements(CASE WHEN jsonb_typeof(d.mentions) = 'array' THEN d.mentions ELSE '[]' END) AS e
    UNION ALL
    SELECT 'domain', regexp_replace(lower(m[1]), '^www\.', ''), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text || ' ' || d.links, 'https?://([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})', 'g') AS m
     WHERE strpos(d.text, 'http') > 0 OR strpos(d.links, 'http') > 0
  ) AS t (kind, tag, id, created_at)
  WHERE t.tag IS NOT NULL AND t.tag <> ''
$$;
