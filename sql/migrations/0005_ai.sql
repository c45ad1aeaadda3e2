-- AI enrichment of posts and profiles, filled by the ai worker (workers/ai.py): embeddings in
-- pgvector columns, summaries and sentiment, topics, nearest-neighbour recommendations, and what
-- every call to the model provider cost. Named queries: sql/ai.sql.
--
-- pgvector is feature-detected: on a server without it the migration still succeeds (the rest of
-- the system must boot), the vector tables are simply absent and the ai worker reports that as its
-- lastError. `ai_install_schema()` creates them; the worker calls it again at start, so installing
-- pgvector later needs no manual step.

-- The newest updated_at a downstream reader (ai, search) may consume. Writers stamp rows with
-- their transaction's start time (now()), so a transaction that commits late can add rows older
-- than ones already read; nothing below the oldest open transaction's start can still appear.
-- The 10-minute floor keeps one forgotten idle transaction from stalling every reader forever.
CREATE OR REPLACE FUNCTION sync_read_horizon() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT greatest(coalesce(min(xact_start), now()), now() - interval '10 minutes')
  FROM pg_stat_activity
  WHERE datname = current_database() AND backend_type = 'client backend'
    AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
$$;

-- One row per call to the provider (or per answer served from the cache at no cost), kept even
-- when the batch it served is rolled back: the money was spent either way.
CREATE TABLE IF NOT EXISTS ai_usage (
  id                bigserial PRIMARY KEY,
  at                timestamptz NOT NULL DEFAULT clock_timestamp(),
  caller            text NOT NULL DEFAULT 'ai',        -- the worker's name, or 'search-api'
  operation         text NOT NULL,                     -- 'embeddings' | 'chat'
  model             text NOT NULL,
  items             integer NOT NULL DEFAULT 0,        -- texts embedded, or 1 per chat
  prompt_tokens     integer NOT NULL DEFAULT 0,
  completion_tokens integer NOT NULL DEFAULT 0,
  total_tokens      integer NOT NULL DEFAULT 0,
  cost_usd          numeric(14, 8) NOT NULL DEFAULT 0,
  latency_ms        real,
  request_id        text
);
CREATE INDEX IF NOT EXISTS ai_usage_at_idx ON ai_usage (at);

CREATE OR REPLACE FUNCTION ai_install_schema() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
    RAISE NOTICE 'pgvector is not installed on this server; the ai worker waits until it is';
    RETURN false;
  END IF;
  CREATE EXTENSION IF NOT EXISTS vector;

  -- Embeddings by content: identical text (a repost, a copied bio, an edit that changed nothing
  -- the model sees) reuses the vector instead of paying for it again.
  CREATE TABLE IF NOT EXISTS ai_embedding_cache (
    model        text NOT NULL,
    dims         integer NOT NULL,
    content_hash bytea NOT NULL,                      -- sha256 of the text sent
    embedding    vector NOT NULL,
    tokens       integer,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, dims, content_hash)
  );

  -- Topics: clusters of post embeddings, grown by assigning each post to its nearest centroid
  -- (or starting a topic when none is near enough). The label is the topic's commonest words.
  CREATE TABLE IF NOT EXISTS ai_topics (
    id         serial PRIMARY KEY,
    model      text NOT NULL,
    dims       integer NOT NULL,
    centroid   vector NOT NULL,
    size       integer NOT NULL DEFAULT 0,
    label      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
  );

  -- Per-post results and processing metadata. The embedding column has no fixed dimension (the
  -- model and its size are configurable); each size in use gets its own partial HNSW index over
  -- `embedding::vector(n)`, made by ai_ensure_vector_index(n).
  CREATE TABLE IF NOT EXISTS ai_posts (
    post_id           bigint PRIMARY KEY REFERENCES external_posts (id) ON DELETE CASCADE,
    source_updated_at timestamptz NOT NULL,           -- the post's updated_at these results are for
    content_hash      bytea,
    model             text,
    dims              integer,
    embedding         vector,
    summary           text,
    sentiment         text CHECK (sentiment IN ('positive', 'negative', 'neutral', 'mixed')),
    chat_model        text,
    topic_id          integer REFERENCES ai_topics (id) ON DELETE SET NULL,
    processed_at      timestamptz NOT NULL DEFAULT now(),
    meta              jsonb NOT NULL DEFAULT '{}'     -- sources (api/cache/reused), tokens, errors
  );
  CREATE INDEX IF NOT EXISTS ai_posts_hash_idx ON ai_posts (content_hash);
  CREATE INDEX IF NOT EXISTS ai_posts_topic_idx ON ai_posts (topic_id, processed_at DESC);

  CREATE TABLE IF NOT EXISTS ai_profiles (
    profile_id        bigint PRIMARY KEY REFERENCES profiles (id) ON DELETE CASCADE,
    source_updated_at timestamptz NOT NULL,
    content_hash      bytea,
    model             text,
    dims              integer,
    embedding         vector,
    processed_at      timestamptz NOT NULL DEFAULT now(),
    meta              jsonb NOT NULL DEFAULT '{}'
  );

  -- Recommendations: each item's nearest neighbours by cosine distance, best first.
  CREATE TABLE IF NOT EXISTS ai_similar_posts (
    post_id         bigint NOT NULL REFERENCES external_posts (id) ON DELETE CASCADE,
    similar_post_id bigint NOT NULL REFERENCES external_posts (id) ON DELETE CASCADE,
    rank            smallint NOT NULL,
    similarity      real NOT NULL,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, similar_post_id)
  );
  CREATE INDEX IF NOT EXISTS ai_similar_posts_target_idx ON ai_similar_posts (similar_post_id);

  CREATE TABLE IF NOT EXISTS ai_similar_profiles (
    profile_id         bigint NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    similar_profile_id bigint NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    rank               smallint NOT NULL,
    similarity         real NOT NULL,
    computed_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (profile_id, similar_profile_id)
  );
  CREATE INDEX IF NOT EXISTS ai_similar_profiles_target_idx ON ai_similar_profiles (similar_profile_id);
  RETURN true;
END
$$;

-- The HNSW indexes for one embedding size (pgvector indexes at most 2000 dimensions; bigger
-- vectors are still searched, exactly and more slowly). Idempotent; the worker calls it at start.
CREATE OR REPLACE FUNCTION ai_ensure_vector_index(n integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF n < 1 OR n > 2000 THEN
    RETURN false;
  END IF;
  EXECUTE format('CREATE INDEX IF NOT EXISTS ai_posts_embedding_%s_idx ON ai_posts '
                 'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE dims = %s', n, n, n);
  EXECUTE format('CREATE INDEX IF NOT EXISTS ai_profiles_embedding_%s_idx ON ai_profiles '
                 'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE dims = %s', n, n, n);
  RETURN true;
END
$$;

SELECT ai_install_schema();
SELECT ai_ensure_vector_index(256) WHERE to_regclass('ai_posts') IS NOT NULL;
