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
                                        OUT query tsquery, OUT expected_recent float8)
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
END
$$;

CREATE OR REPLACE FUNCTION search_query(q text, prefix_last boolean DEFAULT false,
                                        known_from integer DEFAULT 1000,
                                        max_alternatives integer DEFAULT 3)
RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT w.query FROM search_widen(q, prefix_last, 1, known_from, max_alternatives) AS w
$$;
