-- Search indexing of a backlog: the typo lexicon's pending counts as one row per batch and bucket
-- (issue 15, indexing path).
--
-- Until now index_posts wrote one search_lexeme_pending row per distinct lexeme of each indexed batch
-- (~7 per post, 7,000,000 over a backlog of 1,000,000 posts), each WAL-logged, and the fold deleted
-- them and summed them per lexeme again. Measured on the lab (PG 16, 1,000,000-post bench corpus,
-- batch 2000 over two lanes; /work/lab/pd scripts, serialized, load 2-3.5 from the other helpers):
-- - noting, index_posts alone on 1,000-post ranges in one backend, round robin: ~40 us per post
--   for the rows (134-153 us/post against 96-107 without any noting), 14-22 us as arrays;
-- - the fold alone (parts 1) of the counts of the first ~630,000 posts: 33.0 and 35.6 s for main's
--   4,431,157 rows (7.4-8.0 us a count), 26.0 and 31.3 s for 4,581,499 counts in 5,132 array rows
--   (5.7-6.8 us): no row-by-row DELETE, no spill of the deleted rows, no autovacuum of millions
--   of dead rows (one took 5.6% of all CPU in main's profile of its first background fold); the
--   drain fold's parts no longer hash every pending row (search_lexeme_part is a SQL function that
--   is not inlined: ~3 us a call) to find theirs, they take whole rows by bucket (main's fold of those
--   4,431,157 rows in two parts, one after the other: 77.1 s; 0030's, after this migration turned
--   the rows into arrays, 23.1 s, the same lexicon to the last checksum);
-- - the whole backlog (one cycle from corpus_raw at batch 2000; CPU seconds of the database's
--   backends, autovacuum's included, and of the worker, per post indexed), on main at a8e7ad6 and
--   with this migration: 197 us/post, 109.9 s = 9,100 posts/s (load 2.5-2.6) against 242 us/post,
--   133.1 s = 7,512/s (load 1.3-2.5) and 240 us/post, 138.2 s (load 3.0-3.2): -19% CPU per post; on
--   047cffc: 239 against 273 us/post (-12%; load 2.2-2.9). Wall time follows the other helpers'
--   load on the two cores as much as either (131-176 s for runs of this branch under load 3-4);
-- - the bench's tail on a corpus_idx copy (run_seq: 20,000 new posts at batch 500, 10,000 edits,
--   10,000 re-scores; load 1.9-2.8): new 4,415/s against 4,019, edits 4,853/s against 4,936 (noise),
--   re-scored 15,222/s against 14,373.
-- The lexicon after the whole backlog is the same (on 047cffc: count 194,193, sum(ndoc) 12,563,270,
-- 1,028,087 trigrams, 938,308 variants, and the md5 of every lexeme, trigram and variant equal to
-- main's).
--
-- Not built: two generation tables emptied by TRUNCATE, or an UNLOGGED pending table (with a crash
-- sentinel and a rebuild): with ~8 rows per 1,000 posts there is no DELETE and almost no WAL left for
-- them to save, and each brings a lock or a crash path of its own. Dropped, measured: compressing the
-- arrays (pglz, the default storage) cost ~7 ms per 1,000 posts, more than the rows it replaced; a
-- cheaper shape filter than the regular expression (ltrim of the allowed characters: 2.7x faster on
-- 500,000 words) would save ~0.1-0.2 s per fold, not worth a less readable rule.
--
-- search_lexeme_pending held one row per lexeme per indexed batch (~7 per post); it now holds one row
-- per batch and bucket of lexemes: the batch's lexemes and their document counts as two parallel
-- arrays. The bucket is search_lexeme_bucket(lexeme), one of 8, so that the fold's parts still take
-- disjoint sets of lexemes, each deleting exactly the rows it folds: part p of `parts` folds the
-- buckets b with b % parts = p (for parts = 2 and 4, the same lexemes as 0023's split). The counts,
-- their sums and the lexicon are the same as before; only their packing changed.

-- Not STRICT, unlike search_lexeme_part(): a SQL function is inlined only when it is as strict as its
-- body, and search_lexeme_part's greatest() is not (called, it cost ~3 us a lexeme).
CREATE OR REPLACE FUNCTION search_lexeme_bucket(lexeme text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (hashtext(lexeme) & 2147483647) % 8 $$;

CREATE TABLE search_lexeme_pending_sets (
  bucket  integer NOT NULL,  -- search_lexeme_bucket(each lexeme)
  lexemes text[] NOT NULL,   -- distinct within the row
  ndocs   integer[] NOT NULL -- ndocs[i]: in how many of the batch's documents lexemes[i] was new
);
-- Stored out of line as they are: pglz compressing ~10 kB of arrays per row cost more than the rows saved.
-- No statistics on them: nothing is planned on their contents, and autovacuum's ANALYZE of a table growing
-- by ~10% between its runs would count the most common elements of every array each time.
ALTER TABLE search_lexeme_pending_sets
  ALTER COLUMN lexemes SET STORAGE EXTERNAL, ALTER COLUMN lexemes SET STATISTICS 0,
  ALTER COLUMN ndocs SET STORAGE EXTERNAL, ALTER COLUMN ndocs SET STATISTICS 0;

-- Counts noted before this migration, summed per lexeme, in the new shape.
INSERT INTO search_lexeme_pending_sets (bucket, lexemes, ndocs)
SELECT search_lexeme_bucket(lexeme), array_agg(lexeme), array_agg(ndoc)
FROM (SELECT lexeme, sum(ndoc)::int AS ndoc FROM search_lexeme_pending GROUP BY lexeme) AS p
GROUP BY 1;

DROP TABLE search_lexeme_pending;
ALTER TABLE search_lexeme_pending_sets RENAME TO search_lexeme_pending;

-- Notes the lexemes of some documents (profiles'; index_posts notes posts' in its own statement, the
-- same way), one row per bucket.
CREATE OR REPLACE FUNCTION search_note_lexemes(docs tsvector[]) RETURNS void
LANGUAGE sql VOLATILE AS $$
  INSERT INTO search_lexeme_pending (bucket, lexemes, ndocs)
  SELECT search_lexeme_bucket(c.lexeme), array_agg(c.lexeme), array_agg(c.ndoc)
  FROM (
    SELECT w.lexeme, count(*)::int AS ndoc
    FROM unnest(docs) AS d (tsv), unnest(tsvector_to_array(d.tsv)) AS w (lexeme)
    GROUP BY w.lexeme
  ) AS c
  GROUP BY 1;
$$;

-- 0024's fold, reading the arrays.
CREATE OR REPLACE FUNCTION search_fold_lexemes(part integer, parts integer) RETURNS void
LANGUAGE sql VOLATILE
SET work_mem = '64MB'
AS $$
  WITH moved AS (
    DELETE FROM search_lexeme_pending p
    WHERE search_fold_lexemes.parts <= 1 OR p.bucket % search_fold_lexemes.parts = search_fold_lexemes.part
    RETURNING p.lexemes, p.ndocs
  ), summed AS MATERIALIZED (  -- once per lexeme; the filter below must not run per pending count
    SELECT w.lexeme, sum(w.ndoc)::int AS ndoc
    FROM moved m, unnest(m.lexemes, m.ndocs) AS w (lexeme, ndoc)
    GROUP BY w.lexeme
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
    SELECT (SELECT count(*) FROM fresh) * greatest(search_fold_lexemes.parts, 1)
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
