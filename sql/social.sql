-- Named queries of the social sync workers (farcaster, reddit), run through workers/social_store.py.
-- Each block: `-- name: <name>`, a description line, then the statement.
--
-- Bulk writes go through session-private staging tables: rows are COPYed in, then one statement
-- drains the stage into the real table with INSERT ... ON CONFLICT. Existing rows are rewritten
-- only when something differs, and external_posts/profiles.updated_at moves only when content
-- changed (not a score or a counter), because the search and ai workers re-index on it.

-- name: create_stages
-- The staging tables, once per connection (temporary: private to the session, gone with it).
CREATE TEMP TABLE IF NOT EXISTS stage_posts (
  platform text, external_id text, author_external_id text, author_name text, title text, body text,
  url text, parent_external_id text, root_external_id text, channel text, mentions jsonb, embeds jsonb,
  score integer, created_epoch double precision, raw jsonb
);
CREATE TEMP TABLE IF NOT EXISTS stage_profiles (
  platform text, external_id text, username text, display_name text, bio text, avatar_url text,
  url text, raw jsonb
);
CREATE TEMP TABLE IF NOT EXISTS stage_follows (
  platform text, follower_id text, target_id text, created_epoch double precision
);
CREATE TEMP TABLE IF NOT EXISTS stage_reactions (
  platform text, actor_id text, kind text, target_external_id text, created_epoch double precision
);

-- name: copy_posts
-- Bulk load of posts into the stage (columns in the order of workers.social_store.PostRow).
COPY stage_posts (platform, external_id, author_external_id, author_name, title, body, url,
  parent_external_id, root_external_id, channel, mentions, embeds, score, created_epoch, raw) FROM STDIN;

-- name: upsert_posts
-- Drains the stage into external_posts; the row count is the rows inserted or changed.
WITH staged AS (DELETE FROM stage_posts RETURNING *)
INSERT INTO external_posts AS p (platform, external_id, author_external_id, author_name, title, body, url,
  parent_external_id, root_external_id, channel, mentions, embeds, score, created_at, raw)
SELECT platform, external_id, author_external_id, author_name, title, coalesce(body, ''), url,
  parent_external_id, root_external_id, channel, coalesce(mentions, '[]'), coalesce(embeds, '[]'), score,
  to_timestamp(created_epoch), coalesce(raw, '{}')
FROM staged
ON CONFLICT (platform, external_id) DO UPDATE SET
  author_external_id = EXCLUDED.author_external_id, author_name = EXCLUDED.author_name,
  title = EXCLUDED.title, body = EXCLUDED.body, url = EXCLUDED.url,
  parent_external_id = EXCLUDED.parent_external_id, root_external_id = EXCLUDED.root_external_id,
  channel = EXCLUDED.channel, mentions = EXCLUDED.mentions, embeds = EXCLUDED.embeds,
  score = EXCLUDED.score, created_at = EXCLUDED.created_at, raw = EXCLUDED.raw,
  updated_at = CASE
    WHEN (p.title, p.body, p.url, p.parent_external_id, p.channel, p.mentions, p.embeds)
         IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.body, EXCLUDED.url, EXCLUDED.parent_external_id,
                           EXCLUDED.channel, EXCLUDED.mentions, EXCLUDED.embeds)
    THEN now() ELSE p.updated_at END
WHERE (p.author_external_id, p.author_name, p.title, p.body, p.url, p.parent_external_id, p.root_external_id,
       p.channel, p.mentions, p.embeds, p.score, p.created_at, p.raw)
  IS DISTINCT FROM (EXCLUDED.author_external_id, EXCLUDED.author_name, EXCLUDED.title, EXCLUDED.body,
                    EXCLUDED.url, EXCLUDED.parent_external_id, EXCLUDED.root_external_id, EXCLUDED.channel,
                    EXCLUDED.mentions, EXCLUDED.embeds, EXCLUDED.score, EXCLUDED.created_at, EXCLUDED.raw);

-- name: copy_profiles
-- Bulk load of profiles into the stage (columns in the order of workers.social_store.ProfileRow).
COPY stage_profiles (platform, external_id, username, display_name, bio, avatar_url, url, raw) FROM STDIN;

-- name: upsert_profiles
-- Drains the stage into profiles; a profile is rewritten (and updated_at moved) only when it changed.
WITH staged AS (DELETE FROM stage_profiles RETURNING *)
INSERT INTO profiles AS p (platform, external_id, username, display_name, bio, avatar_url, url, raw)
SELECT platform, external_id, username, display_name, bio, avatar_url, url, coalesce(raw, '{}') FROM staged
ON CONFLICT (platform, external_id) DO UPDATE SET
  username = EXCLUDED.username, display_name = EXCLUDED.display_name, bio = EXCLUDED.bio,
  avatar_url = EXCLUDED.avatar_url, url = EXCLUDED.url, raw = EXCLUDED.raw, updated_at = now()
WHERE (p.username, p.display_name, p.bio, p.avatar_url, p.url, p.raw)
  IS DISTINCT FROM (EXCLUDED.username, EXCLUDED.display_name, EXCLUDED.bio, EXCLUDED.avatar_url,
                    EXCLUDED.url, EXCLUDED.raw);

-- name: copy_follows
-- Bulk load of follows into the stage (columns in the order of workers.social_store.FollowRow).
COPY stage_follows (platform, follower_id, target_id, created_epoch) FROM STDIN;

-- name: upsert_follows
-- Drains the stage into follows; an existing follow changes only if its time did (a re-follow).
WITH staged AS (DELETE FROM stage_follows RETURNING *)
INSERT INTO follows AS f (platform, follower_id, target_id, created_at)
SELECT platform, follower_id, target_id, to_timestamp(created_epoch) FROM staged
ON CONFLICT (platform, follower_id, target_id) DO UPDATE SET created_at = EXCLUDED.created_at
WHERE f.created_at IS DISTINCT FROM EXCLUDED.created_at;

-- name: copy_reactions
-- Bulk load of reactions into the stage (columns in the order of workers.social_store.ReactionRow).
COPY stage_reactions (platform, actor_id, kind, target_external_id, created_epoch) FROM STDIN;

-- name: upsert_reactions
-- Drains the stage into reactions; a reaction already stored is left alone.
WITH staged AS (DELETE FROM stage_reactions RETURNING *)
INSERT INTO reactions (platform, actor_id, kind, target_external_id, created_at)
SELECT platform, actor_id, kind, target_external_id, to_timestamp(created_epoch) FROM staged
ON CONFLICT (platform, actor_id, kind, target_external_id) DO NOTHING;

-- name: followed_ids
-- Whom one account follows, as stored (numeric ids in numeric order): drives follow-graph expansion.
SELECT target_id FROM follows WHERE platform = %(platform)s AND follower_id = %(follower)s
ORDER BY length(target_id), target_id;

-- name: comment_counts
-- The num_comments each listed post had when it was last stored, to refetch only changed threads.
SELECT external_id, (raw->>'num_comments')::integer FROM external_posts
WHERE platform = %(platform)s AND external_id = ANY(%(ids)s);
