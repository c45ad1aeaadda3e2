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
CREATE OR REPLACE FUNCTION search_note_lexemes(docs tsvector[]) RETURNS void
LANGUAGE sql VOLATILE AS $$
  INSERT INTO search_lexeme_pending (lexeme, ndoc)
  SELECT w.lexeme, count(*)::int
  FROM unnest(docs) AS d (tsv), unnest(d.tsv) AS w
  WHERE w.lexeme ~ '^[a-z][a-z0-9]{2,31}$'
  GROUP BY w.lexeme;
$$;

-- Adds every pending count to the lexicon (new lexemes inserted with their trigrams, unless
-- pg_trgm indexes the lexicon) and empties the pending table; what search_learn_lexemes did per batch.
CREATE OR REPLACE FUNCTION search_fold_lexemes() RETURNS void
LANGUAGE sql VOLATILE AS $$
  WITH moved AS (
    DELETE FROM search_lexeme_pending RETURNING lexeme, ndoc
  ), counts AS (
    SELECT lexeme, sum(ndoc)::int AS ndoc FROM moved GROUP BY lexeme
  ), counted AS (
    UPDATE search_lexemes l SET ndoc = l.ndoc + c.ndoc FROM counts c WHERE l.lexeme = c.lexeme
  ), added AS (
    INSERT INTO search_lexemes (lexeme, ndoc, ntrigrams)
    SELECT c.lexeme, c.ndoc, cardinality(search_trigrams(c.lexeme)) FROM counts c
    WHERE NOT EXISTS (SELECT 1 FROM search_lexemes l WHERE l.lexeme = c.lexeme)
    ORDER BY c.lexeme
    ON CONFLICT (lexeme) DO NOTHING
    RETURNING id, lexeme
  )
  INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
  SELECT unnest(search_trigrams(lexeme)), id FROM added WHERE NOT search_uses_pg_trgm();
$$;

-- 3. Tag extraction: the same patterns as in 0006, each tried only on texts holding its sigil
--    (strpos is a fraction of a regular expression's cost, and most posts have no tags), so a
--    batch's tags cost about one scan of its text.
CREATE OR REPLACE FUNCTION search_extract_tags(title text, body text, url text, embeds jsonb, mentions jsonb)
RETURNS TABLE (kind text, tag text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  WITH doc AS (SELECT coalesce(title, '') || E'\n' || coalesce(body, '') AS text)
  SELECT DISTINCT t.kind, t.tag FROM (
    SELECT 'hashtag', lower(m[1])
      FROM doc, regexp_matches(doc.text, '(?:^|[^[:alnum:]_&#/])#([[:alpha:]][[:alnum:]_]{0,63})', 'g') AS m
     WHERE strpos(doc.text, '#') > 0
    UNION ALL
    SELECT 'cashtag', lower(m[1])
      FROM doc, regexp_matches(doc.text, '(?:^|[^[:alnum:]_$])\$([A-Za-z][A-Za-z0-9]{0,9})(?![[:alnum:]_])', 'g') AS m
     WHERE strpos(doc.text, '$') > 0
    UNION ALL
    SELECT 'mention', lower(m[1])
      FROM doc, regexp_matches(doc.text, '(?:^|[^[:alnum:]_@./])@([[:alnum:]_](?:[[:alnum:]_.-]{0,62}[[:alnum:]_])?)', 'g') AS m
     WHERE strpos(doc.text, '@') > 0
    UNION ALL
    SELECT 'mention', lower(m[1])
      FROM doc, regexp_matches(doc.text, '(?:^|[^[:alnum:]_/])/?u/([[:alnum:]_-]{3,20})', 'g') AS m
     WHERE strpos(doc.text, 'u/') > 0
    UNION ALL
    SELECT 'mention', lower(coalesce(e ->> 'username', e ->> 'fid', e #>> '{}'))
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(mentions) = 'array' THEN mentions ELSE '[]' END) AS e
    UNION ALL
    SELECT 'domain', regexp_replace(lower(m[1]), '^www\.', '')
      FROM doc, regexp_matches(doc.text || ' ' || coalesce(url, '') || ' ' || coalesce(embeds::text, ''),
                               'https?://([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})', 'g') AS m
     WHERE strpos(doc.text, 'http') > 0 OR url IS NOT NULL OR embeds IS NOT NULL
  ) AS t (kind, tag)
  WHERE t.tag IS NOT NULL AND t.tag <> ''
$$;
