-- Full-text, fuzzy and tag search over external_posts and profiles, kept up to date by the search
-- worker (workers/search.py) and read by GET /api/search. Named queries: sql/search.sql.
--
-- The worker reads rows changed since its cursor (updated_at, id; see sync_read_horizon() in
-- 0005) and upserts their documents here, so the writers (farcaster, reddit) never pay for text
-- indexing. Typo tolerance does not need pg_trgm, which the embedded Postgres lacks:
-- search_lexemes holds every lexeme the index has seen, search_lexeme_trigrams maps character
-- trigrams to lexemes, and search_query() widens a query word that is unknown or rare into its
-- likeliest well-known neighbours. Where pg_trgm is available the lexicon gets its GIN trigram
-- index instead of the hand-made table (the block at the end).

-- The document of a post: the title weighs more than the body. IMMUTABLE (a constant regconfig)
-- so the same function could back an expression index or a generated column later.
CREATE OR REPLACE FUNCTION search_post_document(title text, body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A')
      || setweight(to_tsvector('english'::regconfig, left(coalesce(body, ''), 100000)), 'B')
$$;

-- Names are not English: they go in both unstemmed ('simple', for exact and prefix matches) and
-- stemmed, so the same English tsquery that searches posts finds profiles; the bio is prose.
CREATE OR REPLACE FUNCTION search_profile_document(username text, display_name text, bio text)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT setweight(to_tsvector('simple'::regconfig, coalesce(username, '') || ' ' || coalesce(display_name, '')), 'A')
      || setweight(to_tsvector('english'::regconfig, coalesce(username, '') || ' ' || coalesce(display_name, '')), 'A')
      || setweight(to_tsvector('english'::regconfig, left(coalesce(bio, ''), 20000)), 'B')
$$;

-- One row per indexed post. created_at is copied so ranking by recency needs no join.
CREATE TABLE IF NOT EXISTS search_posts (
  post_id           bigint PRIMARY KEY REFERENCES external_posts (id) ON DELETE CASCADE,
  created_at        timestamptz NOT NULL,
  source_updated_at timestamptz NOT NULL,       -- the post's updated_at this document was built from
  indexed_at        timestamptz NOT NULL DEFAULT now(),
  tsv               tsvector NOT NULL
);
CREATE INDEX IF NOT EXISTS search_posts_tsv_idx ON search_posts USING gin (tsv);
-- Ranking walks this index from the newest post, testing tsv @@ query, for a bounded number of
-- posts; only when that finds too few does it ask the GIN index (see search_posts in search.sql).
CREATE INDEX IF NOT EXISTS search_posts_recent_idx ON search_posts (created_at DESC, post_id DESC);

CREATE TABLE IF NOT EXISTS search_profiles (
  profile_id        bigint PRIMARY KEY REFERENCES profiles (id) ON DELETE CASCADE,
  source_updated_at timestamptz NOT NULL,
  indexed_at        timestamptz NOT NULL DEFAULT now(),
  tsv               tsvector NOT NULL
);
CREATE INDEX IF NOT EXISTS search_profiles_tsv_idx ON search_profiles USING gin (tsv);

-- Hashtags, cashtags, @mentions and linked domains, normalised to lower case without the sigil
-- (and domains without "www."), so "#ETH" and "#eth" are one tag; kinds stay apart ($eth, #eth).
CREATE TABLE IF NOT EXISTS post_tags (
  kind       text NOT NULL CHECK (kind IN ('hashtag', 'cashtag', 'mention', 'domain')),
  tag        text NOT NULL,
  post_id    bigint NOT NULL REFERENCES external_posts (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL,              -- the post's, for "newest posts with this tag"
  PRIMARY KEY (kind, tag, post_id)
);
CREATE INDEX IF NOT EXISTS post_tags_post_idx ON post_tags (post_id);
CREATE INDEX IF NOT EXISTS post_tags_recent_idx ON post_tags (kind, tag, created_at DESC);

-- Every lexeme seen in an indexed document, for typo correction. ndoc counts the documents that
-- contained it each time one was indexed (re-indexing counts again, deletes never subtract): it
-- only ranks candidate corrections, so approximate is fine.
CREATE TABLE IF NOT EXISTS search_lexemes (
  id        integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lexeme    text NOT NULL UNIQUE,
  ndoc      integer NOT NULL DEFAULT 0,
  ntrigrams smallint NOT NULL               -- cardinality(search_trigrams(lexeme))
) WITH (fillfactor = 70);                     -- room for HOT updates: every batch bumps thousands of ndoc

-- The trigram -> lexeme inverted index, standing in for pg_trgm's GIN opclass. A plain b-tree
-- answers "lexemes sharing these trigrams" with an index-only scan, and the shared count per
-- lexeme falls out of a GROUP BY; a text[] column with a GIN index finds the same candidates but
-- then has to compute a similarity per candidate row: 20-65 ms instead of 6-10 ms per word at
-- 194k lexemes. Left empty where pg_trgm is used. No foreign key: lexemes are never deleted, and
-- checking one per inserted trigram took a quarter of the indexing time of new words.
CREATE TABLE IF NOT EXISTS search_lexeme_trigrams (
  trigram   text NOT NULL,
  lexeme_id integer NOT NULL,                 -- search_lexemes.id
  PRIMARY KEY (trigram, lexeme_id)
);

-- Whether the lexicon uses pg_trgm (redefined to true by the block at the end when it does).
CREATE OR REPLACE FUNCTION search_uses_pg_trgm() RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT false $$;

-- Character trigrams of a word, padded like pg_trgm ("  w", " wo", ..., "rd "), distinct.
CREATE OR REPLACE FUNCTION search_trigrams(word text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(DISTINCT substr('  ' || lower(word) || ' ', i, 3)), '{}')
  FROM generate_series(1, length(word) + 1) AS i
$$;

-- Known lexemes that look like `word`: trigram (Jaccard) similarity as in pg_trgm, at least
-- min_similarity, from lexemes in at least min_ndoc documents. The candidates are the 200
-- lexemes sharing the most trigrams; the LIMIT also steers the planner to a nested loop. Not
-- STRICT: a STRICT set-returning SQL function is never inlined, and inlining lets the caller's
-- custom plan see the word's trigrams.
CREATE OR REPLACE FUNCTION search_similar_lexemes(word text, min_ndoc integer DEFAULT 5,
                                                  min_similarity real DEFAULT 0.3)
RETURNS TABLE (lexeme text, similarity real, ndoc integer)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  WITH q AS (SELECT search_trigrams(word) AS t)
  SELECT l.lexeme, (c.shared::real / (cardinality(q.t) + l.ntrigrams - c.shared))::real, l.ndoc
    FROM q,
         LATERAL (SELECT lt.lexeme_id, count(*)::int AS shared
                    FROM search_lexeme_trigrams AS lt
                   WHERE lt.trigram = ANY (q.t)
                   GROUP BY lt.lexeme_id
                  -- sim = shared/(n+m-shared) >= s needs shared >= s(n+m)/(1+s); m >= n-3 for
                  -- the lexemes a typo is likely to be of, so fewer shared trigrams cannot qualify
                  HAVING count(*) >= floor(min_similarity * (2 * cardinality(q.t) - 3) / (1 + min_similarity))
                   ORDER BY count(*) DESC
                   LIMIT 200) AS c
    JOIN search_lexemes AS l ON l.id = c.lexeme_id
   WHERE l.ndoc >= min_ndoc
     AND c.shared::float8 / (cardinality(q.t) + l.ntrigrams - c.shared) >= min_similarity - 1e-6  -- 3/10 is 0.3
$$;

-- The tags of one post, from its text, its link and its embeds (any URL inside the JSON). Mentions
-- come from the text (@name, u/name) and from the mentions column (farcaster fids, as text).
CREATE OR REPLACE FUNCTION search_extract_tags(title text, body text, url text, embeds jsonb, mentions jsonb)
RETURNS TABLE (kind text, tag text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  WITH doc AS (SELECT coalesce(title, '') || E'\n' || coalesce(body, '') AS text)
  SELECT DISTINCT t.kind, t.tag FROM (
    SELECT 'hashtag', lower(m[1])
      FROM doc, regexp_matches(doc.text, '(?:^|[^[:alnum:]_&#/])#([[:alpha:]][[:alnum:]_]{0,63})', 'g') AS m
    UNION ALL
    SELECT 'cashtag', lower(m[1])
      FROM doc, regexp_matches(doc.text, '(?:^|[^[:alnum:]_$])\$([A-Za-z][A-Za-z0-9]{0,9})(?![[:alnum:]_])', 'g') AS m
    UNION ALL
    SELECT 'mention', lower(m[1])
      FROM doc, regexp_matches(doc.text, '(?:^|[^[:alnum:]_@./])@([[:alnum:]_](?:[[:alnum:]_.-]{0,62}[[:alnum:]_])?)', 'g') AS m
    UNION ALL
    SELECT 'mention', lower(m[1])
      FROM doc, regexp_matches(doc.text, '(?:^|[^[:alnum:]_/])/?u/([[:alnum:]_-]{3,20})', 'g') AS m
    UNION ALL
    SELECT 'mention', lower(coalesce(e ->> 'username', e ->> 'fid', e #>> '{}'))
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(mentions) = 'array' THEN mentions ELSE '[]' END) AS e
    UNION ALL
    SELECT 'domain', regexp_replace(lower(m[1]), '^www\.', '')
      FROM doc, regexp_matches(doc.text || ' ' || coalesce(url, '') || ' ' || coalesce(embeds::text, ''),
                               'https?://([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})', 'g') AS m
  ) AS t (kind, tag)
  WHERE t.tag IS NOT NULL AND t.tag <> ''
$$;

-- How many of the newest `scan` posts are expected to match all the words of q, taking the words
-- as independent (ndoc / posts each). The ranked search walks the newest posts only when that
-- fills a page; otherwise it goes straight to the GIN index, where few matches are cheap to rank.
-- An unknown word makes the expectation about zero. NULL when q has no searchable word.
CREATE OR REPLACE FUNCTION search_expected_recent(q text, scan integer) RETURNS float8
LANGUAGE sql STABLE AS $$
  SELECT scan * exp(sum(ln(least(1.0, greatest(coalesce(l.ndoc, 0), 0.01) / n.total))))
  FROM (SELECT greatest(reltuples, 1)::float8 AS total FROM pg_class WHERE oid = 'search_posts'::regclass) AS n
  CROSS JOIN unnest(tsvector_to_array(to_tsvector('english', q))) AS w (lexeme)
  LEFT JOIN search_lexemes AS l ON l.lexeme = w.lexeme
  GROUP BY n.total
$$;

-- The tsquery for what a user typed (web-search syntax: words, "phrases", OR, -not), with each
-- word that is unknown or rare widened to OR its likeliest corrections: "etherium gas" becomes
-- ('etherium' | 'ethereum') & 'gas'. A correction must be at least ten times as common as the
-- word typed (typos of common words are themselves in the index, a few times each); candidates
-- score similarity * ln(1 + ndoc), and those within 60% of the best are kept, at most three.
-- With prefix_last the last word also matches as a prefix ("vita" finds "vitalik"), for
-- search-as-you-type. Meant as the fallback when the exact websearch_to_tsquery() finds less
-- than a page.
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
  FOR word IN SELECT DISTINCT w FROM unnest(tsvector_to_array(to_tsvector('english', q))) AS w LOOP
    word_ndoc := coalesce((SELECT l.ndoc FROM search_lexemes AS l WHERE l.lexeme = word), 0);
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
    last_word := lower(substring(q FROM '([[:alnum:]]+)[^[:alnum:]]*$'));
    last_lexeme := (SELECT w FROM unnest(tsvector_to_array(to_tsvector('english', last_word))) AS w LIMIT 1);
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

-- pg_trgm where the server has it: its GIN trigram index over the lexicon replaces the
-- hand-made trigram table (and the lexicon stops filling that table).
DO $trgm$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
    RAISE NOTICE 'pg_trgm is not available: fuzzy search uses the search_lexeme_trigrams table';
    RETURN;
  END IF;
  CREATE EXTENSION IF NOT EXISTS pg_trgm;
  CREATE INDEX IF NOT EXISTS search_lexemes_trgm_idx ON search_lexemes USING gin (lexeme gin_trgm_ops);
  EXECUTE $f$
    CREATE OR REPLACE FUNCTION search_uses_pg_trgm() RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $b$ SELECT true $b$
  $f$;
  EXECUTE $f$
    CREATE OR REPLACE FUNCTION search_similar_lexemes(word text, min_ndoc integer DEFAULT 5,
                                                      min_similarity real DEFAULT 0.3)
    RETURNS TABLE (lexeme text, similarity real, ndoc integer)
    LANGUAGE sql STABLE PARALLEL SAFE AS $b$
      SELECT c.lexeme, c.similarity, c.ndoc
        FROM (SELECT l.lexeme, similarity(l.lexeme, lower(word)) AS similarity, l.ndoc
                FROM search_lexemes AS l
               WHERE l.lexeme % lower(word)
               ORDER BY l.lexeme <-> lower(word)
               LIMIT 200) AS c
       WHERE c.ndoc >= min_ndoc AND c.similarity >= min_similarity
    $b$
  $f$;
END
$trgm$;
