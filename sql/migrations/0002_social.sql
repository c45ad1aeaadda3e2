-- Social data filled by the farcaster and reddit workers and read by the ai and search workers.
-- Writers upsert on (platform, external_id) and bump updated_at only when content changed, so
-- `updated_at` is a reliable "needs re-indexing" signal for downstream workers.

CREATE TABLE IF NOT EXISTS external_posts (
  id                 bigserial PRIMARY KEY,
  platform           text NOT NULL,              -- 'farcaster' | 'reddit'
  external_id        text NOT NULL,              -- cast hash (0x...) | reddit fullname (t3_x, t1_x)
  author_external_id text,                       -- fid | reddit username
  author_name        text,
  title              text,
  body               text NOT NULL DEFAULT '',
  url                text,
  parent_external_id text,                       -- replied-to cast/post/comment
  root_external_id   text,                       -- thread root (reddit submission)
  channel            text,                       -- subreddit | farcaster parent url / channel
  mentions           jsonb NOT NULL DEFAULT '[]',
  embeds             jsonb NOT NULL DEFAULT '[]',
  score              integer,
  created_at         timestamptz NOT NULL,
  raw                jsonb NOT NULL DEFAULT '{}',
  first_seen_at      timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  UNIQUE (platform, external_id)
);
CREATE INDEX IF NOT EXISTS external_posts_updated_idx ON external_posts (updated_at, id);
CREATE INDEX IF NOT EXISTS external_posts_created_idx ON external_posts (created_at DESC);
CREATE INDEX IF NOT EXISTS external_posts_author_idx ON external_posts (platform, author_external_id);

CREATE TABLE IF NOT EXISTS profiles (
  id            bigserial PRIMARY KEY,
  platform      text NOT NULL,
  external_id   text NOT NULL,                  -- fid | reddit username
  username      text,
  display_name  text,
  bio           text,
  avatar_url    text,
  url           text,
  raw           jsonb NOT NULL DEFAULT '{}',
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (platform, external_id)
);
CREATE INDEX IF NOT EXISTS profiles_updated_idx ON profiles (updated_at, id);

CREATE TABLE IF NOT EXISTS follows (
  platform    text NOT NULL,
  follower_id text NOT NULL,
  target_id   text NOT NULL,
  created_at  timestamptz,
  PRIMARY KEY (platform, follower_id, target_id)
);

CREATE TABLE IF NOT EXISTS reactions (
  platform           text NOT NULL,
  actor_id           text NOT NULL,
  kind               text NOT NULL,            -- 'like' | 'recast'
  target_external_id text NOT NULL,            -- cast hash, or the target url
  created_at         timestamptz,
  PRIMARY KEY (platform, actor_id, kind, target_external_id)
);
