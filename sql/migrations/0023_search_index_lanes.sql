-- Search indexing of a backlog on both cores (issue 15, indexing path).
--
-- The search worker now indexes a batch of posts over several connections at once (one Postgres
-- backend, so one core, each; workers/search/lanes.py). Profiled on 20,000 posts, the lexicon fold
-- (0020's search_fold_lexemes) took twice as long as building the documents, all of it in one
-- backend: inserting the new lexemes, their trigrams and their variants into b-trees, one row at a
-- time. The fold is now split by lexeme: search_fold_lexemes(part, parts) folds only the pending
-- counts of the lexemes whose hash falls in `part`, so `parts` connections fold disjoint sets of
-- lexemes at the same time, each in its own transaction, without waiting on one another (no two
-- touch the same lexicon row, trigram or variant key). Every pending count is still folded once
-- and only once: a part deletes exactly the pending rows it adds to the lexicon.
--
-- The one-off rule of 0020 ("one-off words wait for trigrams once the lexicon is large") compared
-- the lexicon's size plus the fold's new lexemes with search_trigrams_wait_from(); a part sees
-- about 1/parts of the new lexemes, so it counts them `parts` times.

CREATE OR REPLACE FUNCTION search_lexeme_part(lexeme text, parts integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT (hashtext(lexeme) & 2147483647) % greatest(parts, 1)
$$;

CREATE OR REPLACE FUNCTION search_fold_lexemes(part integer, parts integer) RETURNS void
LANGUAGE sql VOLATILE
SET work_mem = '64MB'
AS $$
  WITH moved AS (
    DELETE FROM search_lexeme_pending WHERE parts <= 1 OR search_lexeme_part(lexeme, parts) = part
    RETURNING lexeme, ndoc
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
  ), waiting AS (  -- one-off words wait, once the lexicon is large (a part sees ~1/parts of the new ones)
    SELECT (SELECT count(*) FROM fresh) * greatest(parts, 1)
           + (SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'search_lexemes'::regclass)
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
  ), trigrams AS (  -- in key order: each insert lands next to the previous one (a new lexeme's rows are new keys)
    INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
    SELECT g.trigram, a.id FROM added a JOIN grams g ON g.lexeme = a.lexeme WHERE NOT search_uses_pg_trgm()
    ORDER BY g.trigram, a.id
  ), seen_again AS (  -- a lexeme that was one-off before (it may have its trigrams from a small lexicon)
    INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
    SELECT DISTINCT substr('  ' || c.lexeme || ' ', i, 3), c.id
    FROM counted c, generate_series(1, length(c.lexeme) + 1) AS i
    WHERE c.before < 2 AND c.after >= 2 AND NOT search_uses_pg_trgm()
    ON CONFLICT DO NOTHING
  ), new_variants AS (  -- of new lexemes (new ids: no key can exist yet), in key order, without conflict checks
    INSERT INTO search_lexeme_variants (variant, lexeme_id)
    SELECT DISTINCT v.variant, a.id  -- as search_deletes(): the lexeme and each one-letter deletion
    FROM added a, LATERAL (
      SELECT a.lexeme UNION ALL SELECT overlay(a.lexeme PLACING '' FROM i FOR 1) FROM generate_series(1, length(a.lexeme)) AS i
    ) AS v (variant)
    WHERE a.ndoc >= search_variant_min_ndoc()
    ORDER BY v.variant, a.id
  )
  INSERT INTO search_lexeme_variants (variant, lexeme_id)  -- of known lexemes reaching the threshold now
  SELECT DISTINCT v.variant, c.id
  FROM counted c, LATERAL (
    SELECT c.lexeme UNION ALL SELECT overlay(c.lexeme PLACING '' FROM i FOR 1) FROM generate_series(1, length(c.lexeme)) AS i
  ) AS v (variant)
  WHERE c.before < search_variant_min_ndoc() AND c.after >= search_variant_min_ndoc()
  ON CONFLICT DO NOTHING;
$$;

-- The whole fold in one transaction, as before (replicas, and anyone calling it by hand).
CREATE OR REPLACE FUNCTION search_fold_lexemes() RETURNS void
LANGUAGE sql VOLATILE AS $$ SELECT search_fold_lexemes(0, 1) $$;

-- Edits that leave the text alone. A post's updated_at also moves when only its score or other
-- metadata changes; each such edit rebuilt the post's document (its GIN entries with it) and its
-- tags. search_posts.source_hash keeps a digest of everything the document and the tags are built
-- from; the worker rebuilds a document, and re-extracts the tags, only when it differs. Rows
-- indexed before have none and are rebuilt at their next change, as before.
ALTER TABLE search_posts ADD COLUMN IF NOT EXISTS source_hash bytea;

-- The digest of what a post's document and tags come from (%L keeps NULL apart from 'NULL' and '').
CREATE OR REPLACE FUNCTION search_post_source_hash(created_at timestamptz, title text, body text, url text,
                                                   embeds jsonb, mentions jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT decode(md5(format('%s|%L|%L|%L|%L|%L', extract(epoch FROM created_at), title, body, url, embeds, mentions)), 'hex')
$$;
