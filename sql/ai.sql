-- Named queries of the ai worker (workers/ai.py) and the usage records of the search API.
-- Each block: `-- name: <name>`, a description line, then the statement. Schema: migrations/0005_ai.sql.
-- `{dims}` is the embedding size, written into the text (not bound) so the planner can match the
-- partial HNSW index `(embedding::vector(n)) ... WHERE dims = n` made by ai_ensure_vector_index(n).

-- name: schema_ready
-- Whether the vector tables exist (pgvector was available when the schema was installed).
SELECT to_regclass('ai_posts') IS NOT NULL;

-- name: install_schema
-- Creates the vector extension and tables if the server has pgvector now; false when it does not.
SELECT ai_install_schema();

-- name: ensure_vector_index
-- The HNSW indexes for one embedding size (false above pgvector's 2000-dimension index limit).
SELECT ai_ensure_vector_index(%s);

-- name: changed_posts
-- Posts changed after the cursor (updated_at, id), oldest first, that no open transaction can still overtake.
SELECT id, updated_at, title, body FROM external_posts
WHERE (updated_at, id) > (%(after_updated_at)s::timestamptz, %(after_id)s)
  AND updated_at < (SELECT sync_read_horizon())
ORDER BY updated_at, id
LIMIT %(limit)s;

-- name: changed_profiles
-- Profiles changed after the cursor (updated_at, id), with the same guard.
SELECT id, updated_at, username, display_name, bio FROM profiles
WHERE (updated_at, id) > (%(after_updated_at)s::timestamptz, %(after_id)s)
  AND updated_at < (SELECT sync_read_horizon())
ORDER BY updated_at, id
LIMIT %(limit)s;

-- name: cached_embeddings
-- Embeddings already paid for, by content hash, for one model and size.
SELECT content_hash, embedding FROM ai_embedding_cache
WHERE model = %(model)s AND dims = %(dims)s AND content_hash = ANY(%(hashes)s);

-- name: cache_embeddings
-- New embeddings, kept at once in one autocommitted statement (outside any batch: they were paid for). The
-- vectors are bound in binary (%b), as bytes each: as text, an array parameter of vectors is formatted float by
-- float, which took longer than the provider call; a staging table COPY cost four round trips.
INSERT INTO ai_embedding_cache (model, dims, content_hash, embedding)
SELECT %(model)s, %(dims)s, c.content_hash, c.embedding
FROM unnest(%(hashes)s::bytea[], %(vectors)b::vector[]) AS c (content_hash, embedding)
ON CONFLICT DO NOTHING;

-- name: reusable_summaries
-- Summaries and sentiment already paid for, for identical post text and the same chat model.
SELECT content_hash, summary, sentiment FROM ai_summary_cache
WHERE content_hash = ANY(%(hashes)s) AND chat_model = %(chat_model)s;

-- name: cache_summaries
-- Keeps chat answers by content (at once, outside the batch: paid for even if the batch stops).
INSERT INTO ai_summary_cache (chat_model, content_hash, summary, sentiment)
SELECT %(chat_model)s, c.content_hash, c.summary, c.sentiment
FROM unnest(%(hashes)s::bytea[], %(summaries)s::text[], %(sentiments)s::text[]) AS c (content_hash, summary, sentiment)
ON CONFLICT (chat_model, content_hash) DO UPDATE SET summary = excluded.summary, sentiment = excluded.sentiment;

-- name: create_batch_table
-- The staging table one batch's results are COPYed into before the set-based writes below; created once per
-- session (when the connection is made), empty at the start of every transaction.
CREATE TEMP TABLE IF NOT EXISTS ai_batch (
  id bigint PRIMARY KEY, source_updated_at timestamptz NOT NULL, content_hash bytea, embedding vector,
  summary text, sentiment text, chat_model text, topic_id integer, meta jsonb NOT NULL
) ON COMMIT DELETE ROWS;

-- name: clear_batch
-- Empties the staging table before each item of a batch retried item by item (one transaction).
DELETE FROM ai_batch;

-- name: copy_batch
-- One batch's results into the staging table (binary COPY).
COPY ai_batch (id, source_updated_at, content_hash, embedding, summary, sentiment, chat_model, topic_id, meta)
FROM STDIN (FORMAT BINARY);

-- name: upsert_posts
-- The results of the staged posts and how they were made (meta); idempotent on post_id.
-- Stored outside the HNSW index (vector_indexed false) until index_posts_vectors takes them in (migration 0018).
INSERT INTO ai_posts AS a (post_id, source_updated_at, content_hash, model, dims, embedding, summary, sentiment,
                           chat_model, topic_id, processed_at, meta, vector_indexed)
SELECT b.id, b.source_updated_at, b.content_hash, CASE WHEN b.embedding IS NOT NULL THEN %(model)s END,
       CASE WHEN b.embedding IS NOT NULL THEN %(dims)s::integer END, b.embedding, b.summary, b.sentiment,
       b.chat_model, b.topic_id, now(), b.meta, false
FROM ai_batch b
ON CONFLICT (post_id) DO UPDATE SET
  source_updated_at = excluded.source_updated_at, content_hash = excluded.content_hash, model = excluded.model,
  dims = excluded.dims, embedding = excluded.embedding, summary = excluded.summary, sentiment = excluded.sentiment,
  chat_model = excluded.chat_model, topic_id = excluded.topic_id, processed_at = excluded.processed_at,
  meta = excluded.meta, vector_indexed = false;

-- name: upsert_profiles
-- The embeddings of the staged profiles and how they were made; idempotent on profile_id.
INSERT INTO ai_profiles AS a (profile_id, source_updated_at, content_hash, model, dims, embedding, processed_at, meta)
SELECT b.id, b.source_updated_at, b.content_hash, CASE WHEN b.embedding IS NOT NULL THEN %(model)s END,
       CASE WHEN b.embedding IS NOT NULL THEN %(dims)s::integer END, b.embedding, now(), b.meta
FROM ai_batch b
ON CONFLICT (profile_id) DO UPDATE SET
  source_updated_at = excluded.source_updated_at, content_hash = excluded.content_hash, model = excluded.model,
  dims = excluded.dims, embedding = excluded.embedding, processed_at = excluded.processed_at, meta = excluded.meta;

-- name: similar_posts
-- The nearest indexed posts to each staged post (cosine, HNSW per row), not the post itself nor copies of its
-- text. The staged posts are indexed by then (index_posts_vectors), so they see each other.
SELECT b.id, n.other, n.similarity
FROM ai_batch b CROSS JOIN LATERAL (
  SELECT a.post_id AS other, (1 - (a.embedding::vector({dims}) <=> b.embedding::vector({dims})))::real AS similarity
  FROM ai_posts a
  WHERE a.dims = {dims} AND a.vector_indexed AND a.embedding IS NOT NULL
    AND a.post_id <> b.id AND a.content_hash IS DISTINCT FROM b.content_hash
    AND NOT EXISTS (SELECT 1 FROM external_posts d WHERE d.id = a.post_id AND d.deleted_at IS NOT NULL)
    AND a.embedding::vector({dims}) <=> b.embedding::vector({dims}) <= 1 - %(min_similarity)s
  ORDER BY a.embedding::vector({dims}) <=> b.embedding::vector({dims})
  LIMIT %(limit)s
) n
WHERE b.embedding IS NOT NULL
ORDER BY b.id, n.similarity DESC, n.other;

-- name: similar_profiles
-- The nearest profiles to each staged profile (cosine), not the profile itself nor copies of its text.
SELECT b.id, n.other, n.similarity
FROM ai_batch b CROSS JOIN LATERAL (
  SELECT a.profile_id AS other, (1 - (a.embedding::vector({dims}) <=> b.embedding::vector({dims})))::real AS similarity
  FROM ai_profiles a
  WHERE a.dims = {dims} AND a.embedding IS NOT NULL
    AND a.profile_id <> b.id AND a.content_hash IS DISTINCT FROM b.content_hash
    AND a.embedding::vector({dims}) <=> b.embedding::vector({dims}) <= 1 - %(min_similarity)s
  ORDER BY a.embedding::vector({dims}) <=> b.embedding::vector({dims})
  LIMIT %(limit)s
) n
WHERE b.embedding IS NOT NULL
ORDER BY b.id, n.similarity DESC, n.other;

-- name: index_posts_vectors
-- Takes the oldest posts whose embeddings are not in the HNSW index yet into it (the flag is in the index's
-- predicate) and stages them for their recommendations; SKIP LOCKED lets replicas share the backlog.
WITH taken AS (
  UPDATE ai_posts a SET vector_indexed = true
  FROM (SELECT post_id FROM ai_posts
        WHERE NOT vector_indexed AND embedding IS NOT NULL AND dims = %(dims)s
        ORDER BY processed_at, post_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS t
  WHERE a.post_id = t.post_id
  RETURNING a.post_id, a.source_updated_at, a.content_hash, a.embedding, a.meta
)
INSERT INTO ai_batch (id, source_updated_at, content_hash, embedding, meta)
SELECT post_id, source_updated_at, content_hash, embedding, meta FROM taken;

-- name: forget_deleted_posts
-- Removes posts marked deleted from every recommendation list, both as the post and as a recommendation.
DELETE FROM ai_similar_posts s USING external_posts p
WHERE p.deleted_at IS NOT NULL AND (s.post_id = p.id OR s.similar_post_id = p.id);

-- name: clear_similar_posts
-- Forgets the staged posts' recommendations before they are written again.
DELETE FROM ai_similar_posts s USING ai_batch b WHERE s.post_id = b.id AND b.embedding IS NOT NULL;

-- name: add_similar_posts
-- Each staged post's neighbours (its own list, ranked) and the post offered to each neighbour's list
-- (rank 32767 until rank_similar_posts), so items processed earlier learn about later ones. A pair
-- that is both (two staged posts that are each other's neighbours) keeps its own-list rank.
INSERT INTO ai_similar_posts (post_id, similar_post_id, rank, similarity)
SELECT post_id, similar_post_id, min(rank), max(similarity)
FROM (SELECT * FROM unnest(%(ids)s::bigint[], %(others)s::bigint[], %(ranks)s::smallint[], %(similarities)s::real[])
      UNION ALL
      SELECT o, i, 32767, s FROM unnest(%(ids)s::bigint[], %(others)s::bigint[], %(similarities)s::real[]) AS x (i, o, s)
     ) AS n (post_id, similar_post_id, rank, similarity)
GROUP BY post_id, similar_post_id
ON CONFLICT (post_id, similar_post_id) DO UPDATE SET rank = least(ai_similar_posts.rank, excluded.rank),
  similarity = excluded.similarity, computed_at = now();

-- name: rank_similar_posts
-- Renumbers the given posts' recommendation lists by similarity and keeps the best %(limit)s of each.
WITH ranked AS (
  SELECT post_id, similar_post_id,
         row_number() OVER (PARTITION BY post_id ORDER BY similarity DESC, similar_post_id) AS position
  FROM ai_similar_posts WHERE post_id = ANY(%(ids)s)
), dropped AS (
  DELETE FROM ai_similar_posts s USING ranked r
  WHERE s.post_id = r.post_id AND s.similar_post_id = r.similar_post_id AND r.position > %(limit)s
)
UPDATE ai_similar_posts s SET rank = r.position FROM ranked r
WHERE s.post_id = r.post_id AND s.similar_post_id = r.similar_post_id AND r.position <= %(limit)s AND s.rank <> r.position;

-- name: clear_similar_profiles
-- Forgets the staged profiles' recommendations before they are written again.
DELETE FROM ai_similar_profiles s USING ai_batch b WHERE s.profile_id = b.id AND b.embedding IS NOT NULL;

-- name: add_similar_profiles
-- As add_similar_posts, for profiles.
INSERT INTO ai_similar_profiles (profile_id, similar_profile_id, rank, similarity)
SELECT profile_id, similar_profile_id, min(rank), max(similarity)
FROM (SELECT * FROM unnest(%(ids)s::bigint[], %(others)s::bigint[], %(ranks)s::smallint[], %(similarities)s::real[])
      UNION ALL
      SELECT o, i, 32767, s FROM unnest(%(ids)s::bigint[], %(others)s::bigint[], %(similarities)s::real[]) AS x (i, o, s)
     ) AS n (profile_id, similar_profile_id, rank, similarity)
GROUP BY profile_id, similar_profile_id
ON CONFLICT (profile_id, similar_profile_id) DO UPDATE SET rank = least(ai_similar_profiles.rank, excluded.rank),
  similarity = excluded.similarity, computed_at = now();

-- name: rank_similar_profiles
-- Renumbers the given profiles' recommendation lists by similarity and keeps the best %(limit)s of each.
WITH ranked AS (
  SELECT profile_id, similar_profile_id,
         row_number() OVER (PARTITION BY profile_id ORDER BY similarity DESC, similar_profile_id) AS position
  FROM ai_similar_profiles WHERE profile_id = ANY(%(ids)s)
), dropped AS (
  DELETE FROM ai_similar_profiles s USING ranked r
  WHERE s.profile_id = r.profile_id AND s.similar_profile_id = r.similar_profile_id AND r.position > %(limit)s
)
UPDATE ai_similar_profiles s SET rank = r.position FROM ranked r
WHERE s.profile_id = r.profile_id AND s.similar_profile_id = r.similar_profile_id AND r.position <= %(limit)s AND s.rank <> r.position;

-- name: topics
-- The topic centroids of one model and size, for assigning posts to their nearest topic.
SELECT id, centroid, size FROM ai_topics WHERE model = %(model)s AND dims = %(dims)s ORDER BY id;

-- name: add_topics
-- The topics one batch seeded, in one statement: (ordinal in the array, new id) for each, the ids drawn from
-- the table's sequence first so that each is known by its position (RETURNING has no defined order).
WITH seeded AS MATERIALIZED (
  SELECT c.ordinal, nextval(pg_get_serial_sequence('ai_topics', 'id'))::integer AS id, c.centroid
  FROM unnest(%(centroids)b::vector[]) WITH ORDINALITY AS c (centroid, ordinal)
), added AS (
  INSERT INTO ai_topics (id, model, dims, centroid, size) SELECT id, %(model)s, %(dims)s, centroid, 0 FROM seeded
)
SELECT ordinal, id FROM seeded;

-- name: move_topics
-- The centroids of the topics posts joined in this batch, their member counts (recounted: posts move
-- between topics when they are edited) and, where `relabel` is true, their labels: one write of each row.
-- The centroids are bound in binary (a vector's floats as bytes): pgvector's text form is a float repr
-- each, 0.1 s for 200 centroids of 256.
-- One grouped count over the batch's topics, not a correlated count per topic (planned once per topic, and
-- as a scan of ai_posts while its statistics still say it is empty).
UPDATE ai_topics t
SET centroid = m.centroid, updated_at = now(), size = coalesce(c.n, 0),
    label = CASE WHEN m.relabel THEN m.label ELSE t.label END
FROM unnest(%(ids)s::integer[], %(centroids)b::vector[], %(relabel)s::boolean[], %(labels)s::text[])
  AS m (id, centroid, relabel, label)
LEFT JOIN (SELECT topic_id, count(*) AS n FROM ai_posts WHERE topic_id = ANY(%(ids)s::integer[]) GROUP BY topic_id) c
  ON c.topic_id = m.id
WHERE t.id = m.id;

-- name: topic_texts
-- The newest member texts of the given topics, to name each by its commonest words.
SELECT t.id, x.text
FROM unnest(%s::integer[]) AS t (id) CROSS JOIN LATERAL (
  SELECT coalesce(p.title || E'\n', '') || p.body AS text FROM ai_posts a JOIN external_posts p ON p.id = a.post_id
  WHERE a.topic_id = t.id ORDER BY a.processed_at DESC LIMIT 50
) x;

-- name: record_usage
-- One call to the provider: tokens and cost (autocommit, so it stays even if the batch rolls back).
INSERT INTO ai_usage (caller, operation, model, items, prompt_tokens, completion_tokens, total_tokens, cost_usd,
                      latency_ms, request_id)
VALUES (%(caller)s, %(operation)s, %(model)s, %(items)s, %(prompt_tokens)s, %(completion_tokens)s,
        %(total_tokens)s, %(cost_usd)s, %(latency_ms)s, %(request_id)s);

-- name: spent_last_day
-- What the calls of the last 24 hours cost, in USD (for max_cost_per_day_usd).
SELECT coalesce(sum(cost_usd), 0)::float8 FROM ai_usage WHERE at >= now() - interval '1 day';

-- name: claimed_posts
-- The posts a replica claimed (workers/claims.py), oldest first; a post gone since it was queued is absent.
SELECT id, updated_at, title, body FROM external_posts WHERE id = ANY(%s) ORDER BY updated_at, id;

-- name: claimed_profiles
-- The profiles a replica claimed, oldest first.
SELECT id, updated_at, username, display_name, bio FROM profiles WHERE id = ANY(%s) ORDER BY updated_at, id;

-- name: lock_topics
-- Replicas write topics one at a time: held until the batch commits (each then reads the centroids afresh).
SELECT pg_advisory_xact_lock(hashtext('ai_topics'));
