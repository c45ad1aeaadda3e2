-- Indexes for reading what the farcaster and reddit workers write: threads (replies of a cast or
-- comment, everything under a reddit submission), followers of an account, reactions to a cast.
-- Sync positions live in sync_cursors (0001): one row per fid (`fid:<fid>`) or subreddit (`r/<name>`).

CREATE INDEX IF NOT EXISTS external_posts_parent_idx
  ON external_posts (platform, parent_external_id) WHERE parent_external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS external_posts_root_idx
  ON external_posts (platform, root_external_id) WHERE root_external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS follows_target_idx ON follows (platform, target_id);
CREATE INDEX IF NOT EXISTS reactions_target_idx ON reactions (platform, target_external_id);
