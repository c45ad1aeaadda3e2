-- Named queries of the search worker (workers/search/worker.py) and of GET /api/search
-- (workers/search/query.py). Each block: `-- name: <name>`, a description line, then the statement.
-- Schema and the SQL functions used here: migrations/0006_search.sql.

-- name: changed_posts
-- Posts changed after the cursor (updated_at, id), oldest first, that no open transaction can still overtake.
SELECT id, updated_at FROM external_posts
WHERE (updated_at, id) > (%(after_updated_at)s::timestamptz, %(after_id)s)
  AND updated_at < (SELECT sync_read_horizon())
ORDER BY updated_at, id
LIMIT %(limit)s;

-- name: index_session
-- For the rest of an indexing transaction: commit without waiting for the WAL flush (a crash loses the last
-- batches whole, their cursor with them, never the cursor alone; they are indexed again) and room for GIN.
SELECT set_config('synchronous_commit', 'off', true), set_config('work_mem', '32MB', true);

-- name: index_posts
-- A range of posts in one statement (migration 0033): builds the search documents of those whose text
-- changed (their source digest, migrations 0023 and 0029: an edit of the score alone, or a version
-- already indexed, is left alone; the posts are held FOR KEY SHARE until the transaction ends, the
-- foreign key's guarantee, 0029), notes for the typo lexicon the words each new document adds to the
-- post's previous one (all of a new post's; an edit mostly none), to be folded in by fold_lexemes
-- (search_note_lexemes, 0014; arrays per bucket, 0030), drops the documents of posts marked deleted, and
-- brings the tags of the posts (re)indexed or deleted in line with their text (search_post_tags_of, 0014
-- and 0031: hashtags, cashtags, mentions, linked domains), read from the same rows: drops those no
-- longer there (all of a deleted post's), adds the new ones, and leaves a tag that is still there alone.
-- `ids` is the range as an int8[] literal ('{1,2,3}'): one text parameter costs the worker far less than
-- a list of ints dumped element by element.
WITH source AS MATERIALIZED (
  SELECT * FROM search_post_sources(%(ids)s::bigint[])
), previous AS MATERIALIZED (
  SELECT post_id, tsv, source_hash FROM search_posts WHERE post_id = ANY(%(ids)s::bigint[])
), indexed AS (
  INSERT INTO search_posts AS s (post_id, created_at, source_updated_at, tsv, source_hash)
  SELECT p.id, p.created_at, p.updated_at, search_post_document(p.title, p.body), p.digest
  FROM source p LEFT JOIN previous o ON o.post_id = p.id
  WHERE NOT p.deleted
    AND NOT search_post_source_unchanged(o.source_hash, p.digest, p.created_at, p.title, p.body, p.url, p.embeds, p.mentions)
  ON CONFLICT (post_id) DO UPDATE
    SET created_at = excluded.created_at, source_updated_at = excluded.source_updated_at,
        tsv = excluded.tsv, source_hash = excluded.source_hash, indexed_at = now()
    WHERE s.source_updated_at IS DISTINCT FROM excluded.source_updated_at
  RETURNING s.post_id, s.tsv
), noted AS (  -- one row per bucket of lexemes, the batch's counts in arrays (migration 0030)
  INSERT INTO search_lexeme_pending (bucket, lexemes, ndocs)
  SELECT search_lexeme_bucket(c.lexeme), array_agg(c.lexeme), array_agg(c.ndoc)
  FROM (
    SELECT w.lexeme, count(*)::int AS ndoc
    FROM indexed i LEFT JOIN previous o ON o.post_id = i.post_id,
         unnest(tsvector_to_array(CASE WHEN o.tsv IS NULL THEN i.tsv ELSE ts_delete(i.tsv, tsvector_to_array(o.tsv)) END))
           AS w (lexeme)
    GROUP BY w.lexeme
  ) AS c
  GROUP BY 1
), unindexed AS (
  DELETE FROM search_posts s USING source p WHERE s.post_id = p.id AND p.deleted
), retag AS MATERIALIZED (  -- the posts whose tags follow their text: (re)indexed or deleted
  SELECT post_id FROM indexed UNION ALL SELECT id FROM source WHERE deleted
), fresh AS MATERIALIZED (
  SELECT t.kind, t.tag, t.post_id, t.created_at
  FROM search_post_tags_of(ARRAY(
    SELECT ROW(p.id, p.created_at, p.title, p.body, p.url, p.embeds, p.mentions)::search_tag_post
    FROM source p JOIN indexed i ON i.post_id = p.id)) AS t
), gone AS (
  DELETE FROM post_tags t
  WHERE t.post_id = ANY(ARRAY(SELECT post_id FROM retag))
    AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.post_id = t.post_id AND f.kind = t.kind AND f.tag = t.tag)
)
INSERT INTO post_tags AS t (kind, tag, post_id, created_at)
SELECT kind, tag, post_id, created_at FROM fresh
ON CONFLICT (kind, tag, post_id) DO UPDATE SET created_at = excluded.created_at
  WHERE t.created_at IS DISTINCT FROM excluded.created_at;

-- name: changed_profiles
-- Profiles changed after the cursor (updated_at, id), with the same open-transaction guard as posts.
SELECT id, updated_at FROM profiles
WHERE (updated_at, id) > (%(after_updated_at)s::timestamptz, %(after_id)s)
  AND updated_at < (SELECT sync_read_horizon())
ORDER BY updated_at, id
LIMIT %(limit)s;

-- name: index_profiles
-- Builds the search documents of the given profiles.
INSERT INTO search_profiles AS s (profile_id, source_updated_at, tsv)
SELECT p.id, p.updated_at, search_profile_document(p.username, p.display_name, p.bio)
FROM profiles p WHERE p.id = ANY(%(ids)s::bigint[])
ON CONFLICT (profile_id) DO UPDATE
  SET source_updated_at = excluded.source_updated_at, tsv = excluded.tsv, indexed_at = now()
  WHERE s.source_updated_at IS DISTINCT FROM excluded.source_updated_at;

-- name: learn_profile_lexemes
-- Notes the words of the given profiles' documents (names included) for the lexicon (folded in by fold_lexemes).
SELECT search_note_lexemes(ARRAY(SELECT tsv FROM search_profiles WHERE profile_id = ANY(%(ids)s::bigint[])));

-- name: fold_lexemes
-- Adds the noted counts of one part of the lexemes (of `parts`, each folded on its own connection at the
-- same time) to the lexicon in one pass (search_fold_lexemes, migrations 0014, 0023 and 0030).
SELECT search_fold_lexemes(%(part)s, %(parts)s);

-- name: exact_query
-- The tsquery for what a user typed, as typed (web-search syntax), in text form to bind into search_profiles
-- (search_posts_text does the same inside for posts).
SELECT websearch_to_tsquery('english', %(q)s)::text;

-- name: widened_query
-- The fallback tsquery for search_profiles: unknown or rare words widened to likely corrections, the last
-- word also as a prefix (search_query, migration 0020).
SELECT search_query(%(q)s, %(prefix_last)s)::text;

-- name: search_posts_text
-- A whole post search in one statement (search_posts_text, migration 0022): a row per query used (id NULL;
-- found_by 'text' for the exact words, 'fuzzy' for the widened query), then the posts, best first, with
-- highlights of the query that found each (params: q, exact, widen_below, limit, exclude, scan, window).
SELECT r.found_by, r.query::text AS query, p.id, p.platform, p.external_id, p.author_external_id, p.author_name,
       p.title, p.url, p.channel, p.created_at, r.rank::float8 AS score,
       ts_headline('english', coalesce(p.title || E'\n', '') || p.body, r.query,
                   'MaxFragments=2, MaxWords=18, MinWords=6, StartSel=<mark>, StopSel=</mark>') AS headline
FROM search_posts_text(%(q)s, %(exact)s, %(widen_below)s, %(limit)s, %(exclude)s::bigint[], %(scan)s, %(window)s)
       WITH ORDINALITY AS r
LEFT JOIN external_posts p ON p.id = r.post_id
ORDER BY r.ordinality;

-- name: warm_search
-- Run on each new search connection before a viewer gets it (manager/store.py): the first call of the search
-- functions compiles them (PL/pgSQL) and plans their statements, 30-60 ms no search should wait for. A word
-- no post has goes down every path of search_posts_text and search_posts_top (the exact words, widening,
-- the GIN index; the newest posts walked and from where they begin), each with nothing to rank.
SELECT count(*) FROM (
  SELECT 1 FROM search_posts_text('zzwarmupzz', true, 20, 20)
  UNION ALL SELECT 1 FROM search_posts_top('zzwarmupzz'::tsquery, true, true, 1, '{}', 1, 1)
  UNION ALL SELECT 1 FROM search_posts_top('zzwarmupzz'::tsquery, true, false, 1)
) AS warmed;

-- name: search_posts
-- Ranked posts for one tsquery with highlights (params: q, walk, dense, scan, window, limit, exclude): the
-- recency-bounded ranking of search_posts_top (migration 0022), which no plan choice can make slow. With
-- `walk` (the query is expected to fill a page from the `scan` newest posts) it takes the matches among
-- those: with `dense` (so common that `window` matches are expected there) by walking them in index
-- order, which stops early; else from the GIN and recency indexes together (a BitmapAnd: only those
-- matches are fetched). If that finds fewer than `limit`, or without `walk`, it takes the newest `window`
-- matches from the GIN index (bounded by the number of matches, which is then small). ts_rank runs on at
-- most `window` rows instead of every match: the answer is the best-ranked among the most recent matches.
SELECT p.id, p.platform, p.external_id, p.author_external_id, p.author_name, p.title, p.url, p.channel,
       p.created_at, top.rank::float8 AS score,
       ts_headline('english', coalesce(p.title || E'\n', '') || p.body, %(q)s::tsquery,
                   'MaxFragments=2, MaxWords=18, MinWords=6, StartSel=<mark>, StopSel=</mark>') AS headline
FROM search_posts_top(%(q)s::tsquery, %(walk)s, %(dense)s, %(limit)s, %(exclude)s::bigint[], %(scan)s, %(window)s)
       WITH ORDINALITY AS top
JOIN external_posts p ON p.id = top.post_id
ORDER BY top.ordinality;

-- name: search_posts_naive
-- The baseline bench/search.py compares against: ts_rank over every match, top `limit`, same highlights.
WITH top AS (
  SELECT post_id, created_at, ts_rank(tsv, %(q)s::tsquery, 1) AS rank
  FROM search_posts WHERE tsv @@ %(q)s::tsquery
  ORDER BY rank DESC, created_at DESC
  LIMIT %(limit)s
)
SELECT p.id, top.rank::float8 AS score,
       ts_headline('english', coalesce(p.title || E'\n', '') || p.body, %(q)s::tsquery,
                   'MaxFragments=2, MaxWords=18, MinWords=6, StartSel=<mark>, StopSel=</mark>') AS headline
FROM top JOIN external_posts p ON p.id = top.post_id
ORDER BY top.rank DESC, top.created_at DESC;

-- name: search_posts_naive_widened
-- The naive baseline of a typo or prefix search that pays for its widening as ours does, in one statement:
-- the query widened by search_query(typed, true) (ours widens the same way), then ranked as search_posts_naive.
WITH w AS MATERIALIZED (SELECT search_query(%(typed)s, true) AS q),
top AS (
  SELECT s.post_id, s.created_at, ts_rank(s.tsv, (SELECT q FROM w), 1) AS rank
  FROM search_posts AS s WHERE s.tsv @@ (SELECT q FROM w)
  ORDER BY rank DESC, created_at DESC
  LIMIT %(limit)s
)
SELECT p.id, top.rank::float8 AS score,
       ts_headline('english', coalesce(p.title || E'\n', '') || p.body, (SELECT q FROM w),
                   'MaxFragments=2, MaxWords=18, MinWords=6, StartSel=<mark>, StopSel=</mark>') AS headline
FROM top JOIN external_posts p ON p.id = top.post_id
ORDER BY top.rank DESC, top.created_at DESC;

-- name: search_profiles
-- Ranked profiles for a tsquery (few enough rows that ranking every match is cheap), with highlights.
SELECT p.id, p.platform, p.external_id, p.username, p.display_name, p.avatar_url, p.url,
       ts_rank(s.tsv, %(q)s::tsquery, 1)::float8 AS score,
       ts_headline('english', concat_ws(' ', p.display_name, '@' || p.username) || ' — ' || coalesce(p.bio, ''),
                   %(q)s::tsquery, 'MaxWords=24, MinWords=8, StartSel=<mark>, StopSel=</mark>') AS headline
FROM search_profiles s JOIN profiles p ON p.id = s.profile_id
WHERE s.tsv @@ %(q)s::tsquery AND p.id <> ALL(%(exclude)s::bigint[])
ORDER BY score DESC, p.id
LIMIT %(limit)s;

-- name: posts_by_tag
-- The newest posts carrying one tag (kind: hashtag, cashtag, mention, domain; tag without its sigil).
SELECT p.id, p.platform, p.external_id, p.author_external_id, p.author_name, p.title, p.url, p.channel,
       p.created_at, 1.0::float8 AS score,
       ts_headline('simple', coalesce(p.title || E'\n', '') || p.body, plainto_tsquery('simple', %(tag)s),
                   'MaxFragments=2, MaxWords=18, MinWords=6, StartSel=<mark>, StopSel=</mark>') AS headline
FROM post_tags t JOIN external_posts p ON p.id = t.post_id
WHERE t.kind = %(kind)s AND t.tag = lower(%(tag)s)
ORDER BY t.created_at DESC, t.post_id DESC
LIMIT %(limit)s;

-- name: posts_by_tags
-- The newest posts carrying every one of several tags (parallel arrays kinds[] and tags[]).
WITH wanted AS (
  SELECT DISTINCT w.kind, lower(w.tag) AS tag FROM unnest(%(kinds)s::text[], %(tags)s::text[]) AS w (kind, tag)
), hits AS (
  SELECT t.post_id, max(t.created_at) AS created_at
  FROM post_tags t JOIN wanted w ON w.kind = t.kind AND w.tag = t.tag
  GROUP BY t.post_id
  HAVING count(*) = (SELECT count(*) FROM wanted)
  ORDER BY created_at DESC, post_id DESC
  LIMIT %(limit)s
)
SELECT p.id, p.platform, p.external_id, p.author_external_id, p.author_name, p.title, p.url, p.channel,
       p.created_at, 1.0::float8 AS score,
       ts_headline('simple', coalesce(p.title || E'\n', '') || p.body,
                   plainto_tsquery('simple', array_to_string(%(tags)s::text[], ' ')),
                   'MaxFragments=2, MaxWords=18, MinWords=6, StartSel=<mark>, StopSel=</mark>') AS headline
FROM hits JOIN external_posts p ON p.id = hits.post_id
ORDER BY hits.created_at DESC, hits.post_id DESC;

-- name: top_tags
-- The most used tags of one kind among posts since a time, for a "trending" list.
SELECT tag, count(*) AS posts FROM post_tags
WHERE kind = %(kind)s AND created_at >= %(since)s
GROUP BY tag ORDER BY posts DESC, tag LIMIT %(limit)s;

-- name: semantic_ready
-- Whether the ai worker's tables exist and hold embeddings of this size (else semantic search is skipped).
SELECT to_regclass('ai_posts') IS NOT NULL AS ready;

-- name: semantic_posts
-- Posts nearest to a query embedding by cosine distance ({dims} is the embedding size, for the HNSW index):
-- the HNSW index's nearest and, exactly, those of the posts not in it yet (migration 0018), merged.
WITH indexed AS (
  SELECT a.post_id, a.embedding::vector({dims}) <=> %(embedding)s::vector({dims}) AS distance
  FROM ai_posts a
  WHERE a.dims = {dims} AND a.vector_indexed AND a.embedding IS NOT NULL
  ORDER BY a.embedding::vector({dims}) <=> %(embedding)s::vector({dims})
  LIMIT %(limit)s + cardinality(%(exclude)s::bigint[])
), pending AS (
  SELECT a.post_id, a.embedding::vector({dims}) <=> %(embedding)s::vector({dims}) AS distance
  FROM ai_posts a
  WHERE NOT a.vector_indexed AND a.embedding IS NOT NULL AND a.dims = {dims}
  ORDER BY 2
  LIMIT %(limit)s + cardinality(%(exclude)s::bigint[])
), nearest AS (
  SELECT * FROM indexed UNION ALL SELECT * FROM pending
)
SELECT p.id, p.platform, p.external_id, p.author_external_id, p.author_name, p.title, p.url, p.channel,
       p.created_at, (1 - n.distance)::float8 AS score,
       left(coalesce(p.title || E'\n', '') || p.body, 200) AS headline
FROM nearest n JOIN external_posts p ON p.id = n.post_id
WHERE p.id <> ALL(%(exclude)s::bigint[]) AND p.deleted_at IS NULL
ORDER BY n.distance, p.id  -- equal distances in a stable order, whether from the index or the scan
LIMIT %(limit)s;

-- name: semantic_profiles
-- Profiles nearest to a query embedding by cosine distance ({dims} as above).
WITH nearest AS (
  SELECT a.profile_id, a.embedding::vector({dims}) <=> %(embedding)s::vector({dims}) AS distance
  FROM ai_profiles a
  WHERE a.dims = {dims} AND a.embedding IS NOT NULL
  ORDER BY a.embedding::vector({dims}) <=> %(embedding)s::vector({dims})
  LIMIT %(limit)s + cardinality(%(exclude)s::bigint[])
)
SELECT p.id, p.platform, p.external_id, p.username, p.display_name, p.avatar_url, p.url,
       (1 - n.distance)::float8 AS score,
       left(coalesce(p.display_name, p.username, '') || ' — ' || coalesce(p.bio, ''), 200) AS headline
FROM nearest n JOIN profiles p ON p.id = n.profile_id
WHERE p.id <> ALL(%(exclude)s::bigint[])
ORDER BY n.distance, p.id
LIMIT %(limit)s;

-- name: query_embedding
-- A search query's embedding if this text was embedded before by the same model and size (text form).
SELECT embedding::text FROM ai_embedding_cache WHERE model = %(model)s AND dims = %(dims)s AND content_hash = %(content_hash)s;

-- name: cache_query_embedding
-- Keeps a search query's embedding, so repeating the search costs no provider call.
INSERT INTO ai_embedding_cache (model, dims, content_hash, embedding)
VALUES (%(model)s, %(dims)s, %(content_hash)s, %(embedding)s::vector)
ON CONFLICT DO NOTHING;

-- name: lock_lexicon
-- Replicas fold the lexicon one at a time (held until the transaction ends).
SELECT pg_advisory_xact_lock(hashtext('search_lexicon'));
