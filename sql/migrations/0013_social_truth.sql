-- Issue 14: social data that stays true and connected.
-- Removals are marked, never hard-deleted: `deleted_at` on posts, follows and reactions (a row that
-- comes back, e.g. a re-follow, clears it). Marking a post also moves its `updated_at`, so the
-- search and ai workers see it in their next cycle and drop it from the index and recommendations.
ALTER TABLE external_posts ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE follows ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE reactions ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
CREATE INDEX IF NOT EXISTS external_posts_deleted_idx ON external_posts (id) WHERE deleted_at IS NOT NULL;

-- Author profiles: karma and account age (Reddit `/user/{name}/about`), read within the request budget.
ALTER TABLE profiles ADD COLUMN IF NOT EXISTS karma bigint;
ALTER TABLE profiles ADD COLUMN IF NOT EXISTS account_created_at timestamptz;
ALTER TABLE profiles ADD COLUMN IF NOT EXISTS details_read_at timestamptz;  -- when they were last asked for

-- What a platform's ranked listings show now (Reddit hot, rising, top of the day), per channel:
-- replaced as a whole each time a listing is read.
CREATE TABLE IF NOT EXISTS social_listings (
  platform    text NOT NULL,
  channel     text NOT NULL,                -- subreddit
  listing     text NOT NULL,                -- hot | rising | top_day
  position    integer NOT NULL,             -- 1 = first
  external_id text NOT NULL,
  seen_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (platform, channel, listing, position)
);

-- Wallets found through a social profile (Farcaster verified addresses): the profile they belong to.
-- `source` says 'farcaster'; the chain workers track them like any other wallet.
ALTER TABLE wallets ADD COLUMN IF NOT EXISTS profile_id bigint REFERENCES profiles (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS wallets_profile_idx ON wallets (profile_id) WHERE profile_id IS NOT NULL;

-- GET /api/trending counts one kind of tag over a recent window.
CREATE INDEX IF NOT EXISTS post_tags_kind_time_idx ON post_tags (kind, created_at);
