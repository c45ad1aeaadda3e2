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

-- name: cache_embedding
-- Keeps one embedding for its content (committed at once, outside the batch: it was paid for).
INSERT INTO ai_embedding_cache (model, dims, content_hash, embedding, tokens)
VALUES (%(model)s, %(dims)s, %(content_hash)s, %(embedding)s, %(tokens)s)
ON CONFLICT DO NOTHING;

-- name: reusable_summaries
-- Summaries and sentiment already made for identical post text by the same chat model.
SELECT DISTINCT ON (content_hash) content_hash, summary, sentiment FROM ai_posts
WHERE content_hash = ANY(%(hashes)s) AND chat_model = %(chat_model)s AND summary IS NOT NULL
ORDER BY content_hash, processed_at DESC;

-- name: upsert_post
-- The results for one post and how they were made (meta); idempotent on post_id.
INSERT INTO ai_posts AS a (post_id, source_updated_at, content_hash, model, dims, embedding, summary, sentiment,
                           chat_model, topic_id, processed_at, meta)
VALUES (%(post_id)s, %(source_updated_at)s, %(content_hash)s, %(model)s, %(dims)s, %(embedding)s, %(summary)s,
        %(sentiment)s, %(chat_model)s, %(topic_id)s, now(), %(meta)s)
ON CONFLICT (post_id) DO UPDATE SET
  source_updated_at = excluded.source_updated_at, content_hash = excluded.content_hash, model = excluded.model,
  dims = excluded.dims, embedding = excluded.embedding, summary = excluded.summary, sentiment = excluded.sentiment,
  chat_model = excluded.chat_model, topic_id = excluded.topic_id, processed_at = excluded.processed_at,
  meta = excluded.meta;

-- name: upsert_profile
-- The embedding of one profile and how it was made; idempotent on profile_id.
INSERT INTO ai_profiles AS a (profile_id, source_updated_at, content_hash, model, dims, embedding, processed_at, meta)
VALUES (%(profile_id)s, %(source_updated_at)s, %(content_hash)s, %(model)s, %(dims)s, %(embedding)s, now(), %(meta)s)
ON CONFLICT (profile_id) DO UPDATE SET
  source_updated_at = excluded.source_updated_at, content_hash = excluded.content_hash, model = excluded.model,
  dims = excluded.dims, embedding = excluded.embedding, processed_at = excluded.processed_at, meta = excluded.meta;

-- name: similar_posts
-- The nearest posts to one embedding (cosine), not the post itself nor copies of its text.
SELECT a.post_id, (1 - (a.embedding::vector({dims}) <=> %(embedding)s))::real AS similarity
FROM ai_posts a
WHERE a.dims = {dims} AND a.embedding IS NOT NULL
  AND a.post_id <> %(id)s
  AND NOT EXISTS (SELECT 1 FROM external_posts d WHERE d.id = a.post_id AND d.deleted_at IS NOT NULL) AND a.content_hash IS DISTINCT FROM %(content_hash)s
  AND a.embedding::vector({dims}) <=> %(embedding)s <= 1 - %(min_similarity)s
ORDER BY a.embedding::vector({dims}) <=> %(embedding)s
LIMIT %(limit)s;

-- name: similar_profiles
-- The nearest profiles to one embedding (cosine), not the profile itself nor copies of its text.
SELECT a.profile_id, (1 - (a.embedding::vector({dims}) <=> %(embedding)s))::real AS similarity
FROM ai_profiles a
WHERE a.dims = {dims} AND a.embedding IS NOT NULL
  AND a.profile_id <> %(id)s AND a.content_hash IS DISTINCT FROM %(content_hash)s
  AND a.embedding::vector({dims}) <=> %(embedding)s <= 1 - %(min_similarity)s
ORDER BY a.embedding::vector({dims}) <=> %(embedding)s
LIMIT %(limit)s;

-- name: forget_deleted_posts
-- Removes posts marked deleted from every recommendation list, both as the post and as a recommendation.
DELETE FROM ai_similar_posts s USING external_posts p
WHERE p.deleted_at IS NOT NULL AND (s.post_id = p.id OR s.similar_post_id = p.id);

-- name: clear_similar_posts
-- Forgets one post's recommendations before they are written again.
DELETE FROM ai_similar_posts WHERE post_id = %s;

-- name: add_similar_post
-- One recommendation: a post like this one.
INSERT INTO ai_similar_posts (post_id, similar_post_id, rank, similarity) VALUES (%s, %s, %s, %s)
ON CONFLICT (post_id, similar_post_id) DO UPDATE SET rank = excluded.rank, similarity = excluded.similarity,
  computed_at = now();

-- name: offer_similar_posts
-- Offers a newly processed post to its neighbours' own lists (each keeps its best: see rank_similar_posts),
-- so items processed earlier learn about later ones.
INSERT INTO ai_similar_posts (post_id, similar_post_id, rank, similarity)
SELECT n.id, %(id)s, 32767, n.similarity FROM unnest(%(ids)s::bigint[], %(similarities)s::real[]) AS n (id, similarity)
ON CONFLICT (post_id, similar_post_id) DO UPDATE SET similarity = excluded.similarity, computed_at = now();

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
-- Forgets one profile's recommendations before they are written again.
DELETE FROM ai_similar_profiles WHERE profile_id = %s;

-- name: add_similar_profile
-- One recommendation: a profile like this one.
INSERT INTO ai_similar_profiles (profile_id, similar_profile_id, rank, similarity) VALUES (%s, %s, %s, %s)
ON CONFLICT (profile_id, similar_profile_id) DO UPDATE SET rank = excluded.rank, similarity = excluded.similarity,
  computed_at = now();

-- name: offer_similar_profiles
-- Offers a newly processed profile to its neighbours' own lists (each keeps its best: see rank_similar_profiles),
-- so items processed earlier learn about later ones.
INSERT INTO ai_similar_profiles (profile_id, similar_profile_id, rank, similarity)
SELECT n.id, %(id)s, 32767, n.similarity FROM unnest(%(ids)s::bigint[], %(similarities)s::real[]) AS n (id, similarity)
ON CONFLICT (profile_id, similar_profile_id) DO UPDATE SET similarity = excluded.similarity, computed_at = now();

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

-- name: add_topic
-- A new topic, seeded by one post's embedding.
INSERT INTO ai_topics (model, dims, centroid, size) VALUES (%(model)s, %(dims)s, %(centroid)s, 0) RETURNING id;

-- name: move_topic
-- A topic's centroid after posts joined it.
UPDATE ai_topics SET centroid = %(centroid)s, updated_at = now() WHERE id = %(id)s;

-- name: count_topics
-- Recounts the members of the given topics (posts move between topics when they are edited).
UPDATE ai_topics t SET size = (SELECT count(*) FROM ai_posts a WHERE a.topic_id = t.id), updated_at = now()
WHERE t.id = ANY(%s);

-- name: topic_texts
-- The newest member texts of one topic, to name it by its commonest words.
SELECT coalesce(p.title || E'\n', '') || p.body FROM ai_posts a JOIN external_posts p ON p.id = a.post_id
WHERE a.topic_id = %s ORDER BY a.processed_at DESC LIMIT 50;

-- name: label_topic
-- A topic's label.
UPDATE ai_topics SET label = %s WHERE id = %s;

-- name: record_usage
-- One call to the provider: tokens and cost (autocommit, so it stays even if the batch rolls back).
INSERT INTO ai_usage (caller, operation, model, items, prompt_tokens, completion_tokens, total_tokens, cost_usd,
                      latency_ms, request_id)
VALUES (%(caller)s, %(operation)s, %(model)s, %(items)s, %(prompt_tokens)s, %(completion_tokens)s,
        %(total_tokens)s, %(cost_usd)s, %(latency_ms)s, %(request_id)s);

-- name: spent_last_day
-- What the calls of the last 24 hours cost, in USD (for max_cost_per_day_usd).
SELECT coalesce(sum(cost_usd), 0)::float8 FROM ai_usage WHERE at >= now() - interval '1 day';
