-- Search indexing of a backlog: the lexicon fold at a lower cost per row (issue 15, indexing path).
--
-- Measured on the lab (PG 16, fold_src: the 1,000,000-post backlog indexed, its 7,145,463 counts pending;
-- /work/lab/fx/fold_time.py PARTS TEMPLATE DB [migration], each run under the bench lock, the backends'
-- CPU seconds from /proc, load average of the other work at the start):
-- - 1 part: 0030's 29.2 s (27.6 s CPU, load 2.6), 29.1 s (27.8 s, load 1.9); this fold 15.3 s (15.0 s,
--   load 2.3), 15.7 s (15.1 s, load 3.2): -46% CPU;
-- - 2 parts at once: 0030's 18.0 s (27.7 s CPU, load 2.0), 14.3 s (24.9 s, load 2.1), 17.7 s (28.4 s),
--   18.1 s (28.6 s, load 2.4); this fold 10.9 s (17.8 s CPU, load 2.0), 11.3 s (16.5 s, load 2.1): -35%
--   CPU, -32% wall;
-- - incremental (the second half of the pending rows folded into the lexicon of the first half, 1 part):
--   0030's 12.2 s (load 2.7) and 9.4 s (load 1.2), this fold 7.7 s (load 2.5) and 7.4 s (load 2.4); there
--   the lookups and updates of the ~117,000 known lexemes (unchanged) are half of the time.
-- The lexicon is the same: 194,193 lexemes, 1,026,958 trigrams, 938,308 variants and the md5 of each
-- ordered by text (lexeme:ndoc:ntrigrams, trigram:lexeme, variant:lexeme) equal to 0030's after every run
-- above (at 1 part the ids too, checked before enable_seqscan below was set);
-- tests/workers/test_search_lexicon_fold.py checks it on hostile words.
--
-- The same lexicon as 0030's fold, to the row; what changed is how each step is computed:
-- - the pending arrays are unnested in the select list (ProjectSet: no tuplestore per pending row, as a
--   function in FROM fills) and summed one bucket at a time: eight hash tables of ~50,000 lexemes that
--   stay in the CPU's cache instead of one of ~400,000 that does not (a part's buckets hold disjoint
--   lexemes, so the sums are the same);
-- - the shape filter is the unbounded class plus a length check (the bounded {2,31} is expanded into
--   that many states of the regex automaton, as 0031 found for the tags): the same lexemes, since a
--   string matching [a-z][a-z0-9]* is ASCII, its length in bytes is its length in characters;
-- - a trigram is kept at its first position only (strpos of it in the padded lexeme is where it is),
--   and a deletion when the next letter differs (deleting either of two equal neighbours gives the
--   same string, so the last of a run stands for the run): the distinct sets of search_trigrams() and
--   search_deletes() without hashing every pair to remove duplicates. ntrigrams is counted per lexeme
--   the same way, and the trigrams are expanded once, from the inserted lexemes (their ids as well),
--   instead of being joined back to them by text;
-- - the trigrams are sorted on one bigint, the trigram's three bytes then the lexeme's id: the same
--   order as (trigram COLLATE "C", id) for these ASCII trigrams, at a fraction of the cost (the sort on
--   text gave up its abbreviated keys: ~1,000,000 rows for ~30,000 distinct trigrams).
--
-- Found on the way, in 0030's fold too: planned while the lexicon is empty (the first fold of a backlog),
-- `fresh` looks each count up with a sequential scan of search_lexemes, which costs nothing on an empty
-- table; but with parts folding at once, a part still looking up its counts while another part is
-- inserting its lexemes scans all of those (uncommitted, invisible) rows again for every count. Two
-- parts started together took 58.9 s and 104.4 s instead of ~11 s (this fold: a part reaches its
-- inserts soon after its lookups; 0030's computed the trigrams in between, so it needed a larger head
-- start of one part to be hit). With seq scans disabled the lookups go through the lexeme's index
-- whatever the table's size at planning (the pending table has no index and is still read in full).

CREATE OR REPLACE FUNCTION search_fold_lexemes(part integer, parts integer) RETURNS void
LANGUAGE sql VOLATILE
SET work_mem = '64MB'
SET enable_seqscan = off  -- see above: no scan of the lexicon per count, even while it is empty
AS $$
  WITH moved AS (
    DELETE FROM search_lexeme_pending p
    WHERE search_fold_lexemes.parts <= 1 OR p.bucket % search_fold_lexemes.parts = search_fold_lexemes.part
    RETURNING p.bucket, p.lexemes, p.ndocs
  ), summed AS MATERIALIZED (  -- once per lexeme, a bucket at a time; the filter below runs per lexeme
    SELECT s.lexeme, s.ndoc
    FROM (SELECT DISTINCT bucket FROM moved) AS b, LATERAL (
      SELECT w.lexeme, sum(w.ndoc)::int AS ndoc
      FROM (SELECT unnest(m.lexemes), unnest(m.ndocs) FROM moved m WHERE m.bucket = b.bucket) AS w (lexeme, ndoc)
      GROUP BY w.lexeme
    ) AS s
  ), counts AS MATERIALIZED (  -- '^[a-z][a-z0-9]{2,31}$'
    SELECT lexeme, ndoc FROM summed WHERE octet_length(lexeme) BETWEEN 3 AND 32 AND lexeme ~ '^[a-z][a-z0-9]*$'
  ), counted AS (  -- a waiting lexeme seen again gets its trigram count here, its trigrams below
    UPDATE search_lexemes l
       SET ndoc = l.ndoc + c.ndoc,
           ntrigrams = CASE WHEN l.ntrigrams = 0
                            THEN (SELECT count(*) FROM (SELECT '  ' || l.lexeme || ' ', generate_series(1, length(l.lexeme) + 1)) AS g (padded, i)
                                   WHERE strpos(g.padded, substr(g.padded, g.i, 3)) = g.i)
                            ELSE l.ntrigrams END
      FROM counts c WHERE l.lexeme = c.lexeme
    RETURNING l.id, l.lexeme, l.ndoc - c.ndoc AS before, l.ndoc AS after
  ), fresh AS MATERIALIZED (
    SELECT c.lexeme, c.ndoc FROM counts c WHERE NOT EXISTS (SELECT 1 FROM search_lexemes l WHERE l.lexeme = c.lexeme)
  ), waiting AS (  -- one-off words wait, once the lexicon is large (a part sees ~1/parts of the new ones)
    SELECT (SELECT count(*) FROM fresh) * greatest(search_fold_lexemes.parts, 1)
           + (SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'search_lexemes'::regclass)
           >= search_trigrams_wait_from() AS one_off
  ), added AS (  -- ntrigrams = cardinality(search_trigrams(lexeme)): the trigrams at their first position
    INSERT INTO search_lexemes (lexeme, ndoc, ntrigrams)
    SELECT f.lexeme, f.ndoc,
           CASE WHEN f.ndoc > 1 OR NOT (SELECT one_off FROM waiting)
                THEN (SELECT count(*) FROM (SELECT '  ' || f.lexeme || ' ', generate_series(1, length(f.lexeme) + 1)) AS g (padded, i)
                       WHERE strpos(g.padded, substr(g.padded, g.i, 3)) = g.i)
                ELSE 0 END
    FROM fresh f
    ORDER BY f.lexeme COLLATE "C"
    ON CONFLICT (lexeme) DO NOTHING
    RETURNING id, lexeme, ndoc, ntrigrams
  ), trigrams AS (  -- in key order (trigram bytes, id): each insert lands next to the previous one
    INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
    SELECT substr(g.padded, g.i, 3), g.id
    FROM (SELECT a.id, '  ' || a.lexeme || ' ', generate_series(1, length(a.lexeme) + 1) FROM added a
           WHERE a.ntrigrams > 0 AND NOT search_uses_pg_trgm()) AS g (id, padded, i)
    WHERE strpos(g.padded, substr(g.padded, g.i, 3)) = g.i
    ORDER BY (ascii(substr(g.padded, g.i, 1)) * 65536 + ascii(substr(g.padded, g.i + 1, 1)) * 256
              + ascii(substr(g.padded, g.i + 2, 1)))::bigint << 32 | g.id
  ), seen_again AS (  -- a lexeme that was one-off before (it may have its trigrams from a small lexicon)
    INSERT INTO search_lexeme_trigrams (trigram, lexeme_id)
    SELECT substr(g.padded, g.i, 3), g.id
    FROM (SELECT c.id, '  ' || c.lexeme || ' ', generate_series(1, length(c.lexeme) + 1) FROM counted c
           WHERE c.before < 2 AND c.after >= 2 AND NOT search_uses_pg_trgm()) AS g (id, padded, i)
    WHERE strpos(g.padded, substr(g.padded, g.i, 3)) = g.i
    ON CONFLICT DO NOTHING
  ), new_variants AS (  -- of new lexemes (new ids: no key can exist yet), in key order, without conflict checks
    INSERT INTO search_lexeme_variants (variant, lexeme_id)  -- as search_deletes(): the lexeme, its deletions
    SELECT CASE WHEN v.i = 0 THEN v.lexeme ELSE overlay(v.lexeme PLACING '' FROM v.i FOR 1) END, v.id
    FROM (SELECT a.id, a.lexeme, generate_series(0, length(a.lexeme)) FROM added a
           WHERE a.ndoc >= search_variant_min_ndoc()) AS v (id, lexeme, i)
    WHERE v.i = 0 OR v.i = length(v.lexeme) OR substr(v.lexeme, v.i, 1) <> substr(v.lexeme, v.i + 1, 1)
    ORDER BY CASE WHEN v.i = 0 THEN v.lexeme ELSE overlay(v.lexeme PLACING '' FROM v.i FOR 1) END COLLATE "C", v.id
  )
  INSERT INTO search_lexeme_variants (variant, lexeme_id)  -- of known lexemes reaching the threshold now
  SELECT CASE WHEN v.i = 0 THEN v.lexeme ELSE overlay(v.lexeme PLACING '' FROM v.i FOR 1) END, v.id
  FROM (SELECT c.id, c.lexeme, generate_series(0, length(c.lexeme)) FROM counted c
         WHERE c.before < search_variant_min_ndoc() AND c.after >= search_variant_min_ndoc()) AS v (id, lexeme, i)
  WHERE v.i = 0 OR v.i = length(v.lexeme) OR substr(v.lexeme, v.i, 1) <> substr(v.lexeme, v.i + 1, 1)
  ON CONFLICT DO NOTHING;
$$;
