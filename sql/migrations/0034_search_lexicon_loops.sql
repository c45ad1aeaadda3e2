-- Latency of word, typo and prefix search, round 11 (issue 15): two lexicon helpers as loops of simple
-- expressions.
--
-- Every word search asks search_expected_recent (0022) how many of the newest posts should match,
-- before it chooses how to rank. That was one statement: the query's lexemes unnested, joined to the
-- lexicon, grouped by the table size. In PL/pgSQL that statement costs a full executor run, ~113 us
-- a call on the lab's 1,000,000-post corpus (a DO loop of 1,000 calls of a one-word query), where
-- the lexicon lookup it makes takes ~5 us. The misspelt-word search (exact words, widening, ranking)
-- took ~1.3 ms in the server, so this was a twelfth of it, paid by every search of words.
--
-- The same sum of logarithms, in the same order (the lexemes as tsvector_to_array gives them, which
-- is the order the join kept), one lexicon lookup per word as a simple expression: ~11-16 us a call.
-- The value is the same to the bit (the sum is of the same terms in the same order); NULL still
-- means that q has no searchable word. Checked on the lab corpus: equal (IS NOT DISTINCT FROM) for
-- 300 queries, lexicon words and odd ones ('', '!!', 'café crème', stop words only).
--
-- The same cost was in search_similar_lexemes (0022), the typo candidates of every widened word: its
-- word's trigrams and one-letter deletions were two ARRAY(SELECT ...) statements (~59 us together),
-- and each candidate's trigrams a sub-select over generate_series. Now the two arrays are built by
-- loops (~13 us), and a trigram of the word is among a candidate's exactly when it occurs in the
-- candidate padded the same way ('  ' || lexeme || ' ': its trigrams are all its 3-letter
-- substrings), so strpos() tells it without building the candidate's array: ~61 us a call for a
-- misspelt 9-letter word against ~130 us (lab, 200 calls x 15 rounds, medians). The same rows in the
-- same order, checked on the lab for 629 words (the bench's misspelt and prefix words, odd ones, 400
-- lexicon words with a letter changed, 200 lexicon words) at three min_ndoc: 1,887 answers equal,
-- 1,280 of them not empty; tests/workers/test_search_lexicon_loops.py compares both functions with
-- 0022's text on a small lexicon.
--
-- Measured end to end (lab, the bench's 10 misspelt words, the whole search_posts_text statement 10
-- times each, old and new functions interleaved on two connections): p50 3.92 -> 3.76 ms.

CREATE OR REPLACE FUNCTION search_expected_recent(q text, scan integer) RETURNS float8
LANGUAGE plpgsql STABLE AS $$
DECLARE
  total float8 := (SELECT greatest(c.reltuples, 1)::float8 FROM pg_class AS c WHERE c.oid = 'search_posts'::regclass);
  word text;
  log_share float8;  -- of the posts, expected to match every word (taken as independent); NULL: no word
BEGIN
  FOREACH word IN ARRAY tsvector_to_array(to_tsvector('english', q)) LOOP
    log_share := coalesce(log_share, 0)
      + ln(least(1.0, greatest(coalesce((SELECT l.ndoc FROM search_lexemes AS l WHERE l.lexeme = word), 0), 0.01)
                      / total));
  END LOOP;
  RETURN scan * exp(log_share);
END
$$;

-- search_similar_lexemes of 0022 (pg_trgm's version, 0006, is left as it is).
DO $similar$
BEGIN
  IF search_uses_pg_trgm() THEN
    RETURN;
  END IF;
  EXECUTE $f$
    CREATE OR REPLACE FUNCTION search_similar_lexemes(word text, min_ndoc integer DEFAULT 5, min_similarity real DEFAULT 0.3)
    RETURNS TABLE (lexeme text, similarity real, ndoc integer)
    LANGUAGE plpgsql STABLE PARALLEL SAFE AS $b$
    #variable_conflict use_column
    DECLARE
      w text := lower(word);
      padded text := '  ' || w || ' ';
      wt text[] := '{}';  -- the word's distinct trigrams
      dels text[] := ARRAY[w];  -- the word and its one-letter deletions (repeats do no harm in = ANY)
      trigram text;
    BEGIN
      IF w IS NULL THEN
        RETURN;  -- no word, no candidates
      END IF;
      FOR i IN 1 .. length(w) + 1 LOOP
        trigram := substr(padded, i, 3);
        IF NOT trigram = ANY (wt) THEN
          wt := wt || trigram;
        END IF;
      END LOOP;
      FOR i IN 1 .. length(w) LOOP
        dels := dels || overlay(w PLACING '' FROM i FOR 1);
      END LOOP;
      RETURN QUERY
        SELECT l.lexeme, s.similarity, l.ndoc
          FROM (SELECT DISTINCT v.lexeme_id FROM search_lexeme_variants AS v WHERE v.variant = ANY (dels)) AS c
          JOIN search_lexemes AS l ON l.id = c.lexeme_id
          CROSS JOIN LATERAL (
            SELECT (count(*)::real / (cardinality(wt) + l.ntrigrams - count(*)))::real AS similarity
              FROM unnest(wt) AS t
             WHERE strpos('  ' || l.lexeme || ' ', t) > 0
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
