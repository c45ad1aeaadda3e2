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
ON CONFLICT (platform, follower_id, target_id) DO UPDATE SET created_at = EXCLUDED.created_at, deleted_at = NULL
WHERE f.created_at IS DISTINCT FROM EXCLUDED.created_at OR f.deleted_at IS NOT NULL;

-- name: copy_reactions
-- Bulk load of reactions into the stage (columns in the order of workers.social_store.ReactionRow).
COPY stage_reactions (platform, actor_id, kind, target_external_id, created_epoch) FROM STDIN;

-- name: upsert_reactions
-- Drains the stage into reactions; a reaction already stored is left alone (unless it comes back after a removal).
WITH staged AS (DELETE FROM stage_reactions RETURNING *)
INSERT INTO reactions AS r (platform, actor_id, kind, target_external_id, created_at)
SELECT platform, actor_id, kind, target_external_id, to_timestamp(created_epoch) FROM staged
ON CONFLICT (platform, actor_id, kind, target_external_id) DO UPDATE
  SET created_at = EXCLUDED.created_at, deleted_at = NULL WHERE r.deleted_at IS NOT NULL;

-- name: followed_ids
-- Whom one account follows, as stored (numeric ids in numeric order): drives follow-graph expansion.
SELECT target_id FROM follows WHERE platform = %(platform)s AND follower_id = %(follower)s AND deleted_at IS NULL
ORDER BY length(target_id), target_id;

-- name: comment_counts
-- The num_comments each listed post had when it was last stored, to refetch only changed threads.
SELECT external_id, (raw->>'num_comments')::integer FROM external_posts
WHERE platform = %(platform)s AND external_id = ANY(%(ids)s);

-- name: mark_removed_casts
-- Marks (never deletes) the stored casts of one author that the hub no longer lists; updated_at moves
-- so the search and ai workers drop them in their next cycle.
UPDATE external_posts SET deleted_at = now(), updated_at = now()
WHERE platform = %(platform)s AND author_external_id = %(author)s AND deleted_at IS NULL
  AND external_id <> ALL(%(live)s::text[]);

-- name: mark_removed_reactions
-- Marks the stored reactions of one actor that the hub no longer lists (`live`: "kind target" pairs).
UPDATE reactions SET deleted_at = now()
WHERE platform = %(platform)s AND actor_id = %(author)s AND deleted_at IS NULL
  AND kind || ' ' || target_external_id <> ALL(%(live)s::text[]);

-- name: mark_removed_follows
-- Marks the stored follows of one account that the hub no longer lists (`live`: target ids).
UPDATE follows SET deleted_at = now()
WHERE platform = %(platform)s AND follower_id = %(author)s AND deleted_at IS NULL
  AND target_id <> ALL(%(live)s::text[]);

-- name: mark_deleted_posts
-- Marks posts or comments found deleted or removed on a revisit (content kept as it was last seen).
UPDATE external_posts SET deleted_at = now(), updated_at = now(),
  raw = raw || jsonb_build_object('removal', %(reason)s::text)
WHERE platform = %(platform)s AND external_id = ANY(%(ids)s::text[]) AND deleted_at IS NULL
RETURNING external_id;

-- name: profile_id
-- The id of one stored profile (linked wallets point at it).
SELECT id FROM profiles WHERE platform = %(platform)s AND external_id = %(external_id)s;

-- name: link_wallet
-- A verified address as a wallet the chain workers track, linked to its profile. A wallet someone
-- else added keeps its source and active state; one this link added is re-activated.
INSERT INTO wallets AS w (chain, address, label, source, profile_id)
VALUES (%(chain)s, %(address)s, %(label)s, 'farcaster', %(profile_id)s)
ON CONFLICT (chain, address) DO UPDATE SET
  profile_id = EXCLUDED.profile_id,
  active = CASE WHEN w.source = 'farcaster' THEN true ELSE w.active END,
  updated_at = now()
WHERE w.profile_id IS DISTINCT FROM EXCLUDED.profile_id OR (w.source = 'farcaster' AND NOT w.active);

-- name: unlink_wallets
-- A profile's linked wallets that are no longer verified (`keep`: "chain address" pairs): the ones the
-- link added stop being tracked (kept, inactive); others are only unlinked.
UPDATE wallets SET
  active = CASE WHEN source = 'farcaster' THEN false ELSE active END,
  profile_id = CASE WHEN source = 'farcaster' THEN profile_id ELSE NULL END,
  updated_at = now()
WHERE profile_id = %(profile_id)s AND chain || ' ' || address <> ALL(%(keep)s::text[])
  AND (source <> 'farcaster' OR active);

-- name: clear_listing
-- Forgets what one ranked listing showed before it is written again.
DELETE FROM social_listings WHERE platform = %(platform)s AND channel = %(channel)s AND listing = %(listing)s;

-- name: add_listing_entry
-- One position of a ranked listing.
INSERT INTO social_listings (platform, channel, listing, position, external_id)
VALUES (%(platform)s, %(channel)s, %(listing)s, %(position)s, %(external_id)s);

-- name: young_posts
-- Live posts of one channel younger than an age, newest first: their score and comments are refreshed.
SELECT external_id FROM external_posts
WHERE platform = %(platform)s AND lower(channel) = lower(%(channel)s) AND external_id LIKE 't3_%%'
  AND deleted_at IS NULL AND created_at > now() - make_interval(secs => %(max_age_s)s)
ORDER BY created_at DESC LIMIT %(limit)s;

-- name: profiles_to_read
-- Profiles whose details (karma, account age) were never read or not for a while, oldest first.
SELECT external_id FROM profiles
WHERE platform = %(platform)s AND (details_read_at IS NULL OR details_read_at < now() - make_interval(secs => %(max_age_s)s))
ORDER BY details_read_at NULLS FIRST, id LIMIT %(limit)s;

-- name: set_profile_details
-- What the platform says about an account (NULLs when it would not say: deleted or suspended).
UPDATE profiles SET karma = %(karma)s, account_created_at = to_timestamp(%(created_utc)s), details_read_at = now()
WHERE platform = %(platform)s AND external_id = %(external_id)s;
