-- Search indexing of a backlog: one lock per batch instead of a foreign-key check per row (issue 15).
--
-- search_posts and post_tags referenced external_posts (ON DELETE CASCADE). Postgres checks such a
-- key once per inserted row, each check a query of its own (an index probe and a FOR KEY SHARE
-- lock on the post): measured with EXPLAIN ANALYZE at 1,000,000 posts, 21-41 ms of index_posts'
-- 110-250 ms per 1,000 posts, and 6-14 ms per ~450 tags; without the key and with the lock taken
-- in one pass over the batch, index_posts took 110-114 ms where it took 125-156 ms.
--
-- The guarantee stays: no document or tag of a post that no longer exists.
-- - Indexing locks the batch's posts FOR KEY SHARE (search_lock_posts, in index_posts' first step)
--   before it reads them, as the key's check did, until its transaction ends. A post deleted and
--   committed before the lock is not returned, so not indexed; a delete that comes later waits for
--   the indexing transaction, and then finds its documents and tags committed.
-- - Deleting a post deletes its documents and tags (search_forget_posts, a statement trigger on
--   external_posts), in the deleting transaction, as the cascade did. At READ COMMITTED (every
--   writer here) its statement sees the documents of an indexing transaction the delete waited for.
-- tag_posts writes tags only for posts index_posts returned in the same transaction, so locked.
-- Both functions run as their owner: a worker role may read external_posts but not lock its rows,
-- and a social worker's role may delete posts but not write the search tables.

CREATE OR REPLACE FUNCTION search_lock_posts(ids bigint[]) RETURNS SETOF bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_catalog AS $$
  SELECT p.id FROM external_posts p WHERE p.id = ANY (ids) ORDER BY p.id FOR KEY SHARE
$$;

CREATE OR REPLACE FUNCTION search_forget_posts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
  DELETE FROM search_posts s USING gone g WHERE s.post_id = g.id;
  DELETE FROM post_tags t USING gone g WHERE t.post_id = g.id;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS search_forget_posts ON external_posts;
CREATE TRIGGER search_forget_posts
  AFTER DELETE ON external_posts REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION search_forget_posts();

ALTER TABLE search_posts DROP CONSTRAINT IF EXISTS search_posts_post_id_fkey;
ALTER TABLE post_tags DROP CONSTRAINT IF EXISTS post_tags_post_id_fkey;

-- TRUNCATE external_posts (the key refused it unless the search tables went too) takes them along.
CREATE OR REPLACE FUNCTION search_forget_all_posts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
  TRUNCATE search_posts, post_tags;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS search_forget_all_posts ON external_posts;
CREATE TRIGGER search_forget_all_posts
  AFTER TRUNCATE ON external_posts
  FOR EACH STATEMENT EXECUTE FUNCTION search_forget_all_posts();
