-- Search indexing of a backlog: the lexicon fold without its wasted work (issue 15, indexing path).
--
-- Profiled at 100,000 posts (EXPLAIN ANALYZE of the fold, 12.3 s in one backend), a quarter of the
-- fold went to one filter: 0023's `HAVING lexeme ~ '^[a-z][a-z0-9]{2,31}$'` is on the grouping
-- column, so the planner moves it below the GROUP BY and runs the regular expression on every
-- pending row (714,000: ~6 per post, one per lexeme per lane batch) instead of once per distinct
-- lexeme (125,000): 2.8 s of the 12.3. The counts are now summed first (MATERIALIZED: the filter
-- cannot be pushed below it) and filtered after. The trigrams are sorted bytewise (COLLATE "C")
-- before they go into their b-tree in key order: a lexeme is [a-z0-9] padded with spaces, so the
-- order is the same as the column's in any database whose collation sorts ASCII by code point
-- (C, C.UTF-8), and only locality, never the result, depends on it elsewhere; the collation-aware
-- sort of 600,000 trigrams took 1.5 s. Everything else is 0023's fold, unchanged: the same
-- lexicon, trigrams and variants.

CREATE OR REPLACE FUNCTION search_fold_lexemes(part integer, parts integer) RETURNS void
LANGUAGE sql VOLATILE
SET work_mem = '64MB'
AS $$
  WITH moved AS (
    DELETE FROM search_lexeme_pending WHERE parts <= 1 OR search_lexeme_part(lexeme, parts) = part
    RETURNING lexeme, ndoc
  ), summed AS MATERIALIZED (  -- once per lexeme; the filter below must not run per pending row
    SELECT lexeme, sum(ndoc)::int AS ndoc FROM moved GROUP BY lexeme
  ), counts AS MATERIALIZED (
    SELECT lexeme, ndoc FROM summed WHERE lexeme ~ '^[a-z][a-z0-9]{2,31}$'
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
    ORDER BY f.lexeme COLLATE "C"
    ON CONFLICT (lexeme) DO NOTHING
    RETURNING id, lexeme, ndoc
  ), trigrams AS (  -- in key order: each insert lands next to the previous one (a new lexeme's rows are new keys)
    INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
    SELECT g.trigram, a.id FROM added a JOIN grams g ON g.lexeme = a.lexeme WHERE NOT search_uses_pg_trgm()
    ORDER BY g.trigram COLLATE "C", a.id
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
