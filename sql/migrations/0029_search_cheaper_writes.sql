-- Cheaper writes per indexed post (issue 15, backlog indexing: the 2 cores are busy the whole backlog,
-- so the goal of 10,000 posts/s needs less CPU per post).
--
-- Measured on the lab server (PG 16, the 1,000,000-post corpus, batch 2000, two lanes; the machine
-- shared with two other sessions' benchmarks, each run holding the bench lock; `us/post` is the CPU
-- time of the worker's Postgres backends per post indexed, less sensitive to the others' load):
-- - whole backlog: 136.4 s = 7,329 posts/s, 226 us/post (load 2.6), against 149.0 s = 6,711/s,
--   250 us/post before (load 2.6);
-- - its first 50 s (background lexicon fold put off, the same for both): 10,514/s and 9,715/s at
--   155 and 152 us/post (load 2.3), against 8,545/s at 191 us/post (load 2.3); with more load (3.7)
--   7,826/s at 168 us/post against 7,507/s at 185;
-- - edits (10,200 posts on an indexed copy upgraded to 0029, so compared with the old md5 once):
--   4,567/s and 4,600/s, against 4,733/s and 3,473/s (a checkpoint in that run) before: no change
--   beyond the noise;
-- - the statements alone, one backend, 60,000 posts, autovacuum off (so every variant flushes the
--   GIN pending list at the same batches): 131.5 us/post against 146.3 before (-10%); the digest
--   alone was within the noise there (151.2), ~4 us/post less in a plain SELECT over 200,000 posts
--   (1.04 s against 0.21 s).
-- Tried and left out: a plain INSERT (no ON CONFLICT pre-check) for posts indexed for the first time
-- (163 us/post against 161.5 with the digest alone: no gain), and dropping one of post_tags' four
-- indexes (each serves a query: the primary key tag_posts' ON CONFLICT, post_idx its delete of the
-- tags gone and the cascade -- without it that delete scans the table, 222 us/post --, recent the
-- posts of a tag, kind_time the trending counts).
--
-- 1. The source digest. 0023's search_post_source_hash renders the post as text (format() with %L
--    quoting every field, jsonb rendered as text) and md5s it. search_post_source_digest hashes the
--    fields themselves with PostgreSQL's 64-bit extended hash functions (the ones hash partitioning
--    uses, so stable across versions; not cryptographic): hash_record_extended over the row hashes
--    each field with its type's hash (text: hashtextextended over the bytes; a NULL field hashes to
--    0 and '' does not) and combines them by position (h = 31 h + field), so NULLs and field
--    boundaries count. The jsonb fields are hashed as text: jsonb's own hash ignores structure ('[]',
--    '{}' and '[[]]' hash alike). A change is missed only if the new version's 64-bit digest equals
--    the old one's: about 2^-64 per edit (5e-20; a billion edits give 5e-11), a post left with its
--    previous document until its next edit; someone crafting such a collision can only do so for a
--    post they author, whose text they control anyway. Stored as 8 bytes; a stored 16-byte value is
--    0023's md5 and is compared with that function (search_post_source_unchanged), so an upgraded
--    database does not re-index every post once: a post keeps its old digest until its text changes.
CREATE OR REPLACE FUNCTION search_post_source_digest(created_at timestamptz, title text, body text, url text,
                                                     embeds jsonb, mentions jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT int8send(hash_record_extended(ROW(created_at, title, body, url, embeds::text, mentions::text), 0))
$$;

-- Whether `stored` (search_posts.source_hash: NULL, 0023's 16-byte md5 or an 8-byte digest) says the
-- post's text is the one its document was built from; `digest` is search_post_source_digest of it.
CREATE OR REPLACE FUNCTION search_post_source_unchanged(stored bytea, digest bytea, created_at timestamptz,
                                                       title text, body text, url text, embeds jsonb,
                                                       mentions jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE octet_length(stored)
           WHEN 8 THEN stored = digest
           WHEN 16 THEN stored = search_post_source_hash(created_at, title, body, url, embeds, mentions)
           ELSE false
         END
$$;

-- 2. The foreign keys of search_posts and post_tags to external_posts, kept set-based. Each inserted
--    row ran its foreign-key check as a query of its own (a lookup and a KEY SHARE lock of the post,
--    through SPI). Instead, index_posts takes its posts FOR KEY SHARE in one statement
--    (search_post_sources below) and a hard delete of posts cascades once per statement (a trigger
--    over its transition table). The statements alone (one backend, 40,000 posts): 141.0 us/post
--    against 161.5 with the foreign keys, and 140.8 with none at all. Guarantees, under READ COMMITTED (the default, and the workers'):
--    - an indexing transaction writes search_posts and post_tags rows only for posts it holds
--      FOR KEY SHARE until it commits (tag_posts gets the ids index_posts returned, in the same
--      transaction); a post deleted before the lock is not returned (deleted and committed: not
--      visible; deleting: the lock waits for that transaction, and skips the row if it committed);
--    - a DELETE of a post held by an indexing transaction waits for it (KEY SHARE conflicts with the
--      delete's lock) and its cascade runs after the delete, with a snapshot of its own (each
--      statement of a PL/pgSQL function takes one), so it sees and removes what the indexing
--      transaction wrote. So no row outlives its post, as with the foreign key.
--    Under REPEATABLE READ or SERIALIZABLE the cascade's snapshot is the transaction's and could miss
--    rows an indexing transaction committed after it was taken; there it first locks FOR SHARE the
--    change counters every indexing transaction updates (search_posts_changes, migration 0025): one
--    updated after the snapshot fails the delete with a serialization error (to retry), as the
--    foreign key's cascade fails when it finds rows it cannot see (more often: any indexing commit
--    since the snapshot counts). TRUNCATE external_posts empties both tables.
--    The search worker's role may read external_posts only (locking needs UPDATE rights) and the
--    deleting workers' roles may not write the search tables: the lock and the cascades run with their
--    owner's rights, as the foreign key's checks did.
ALTER TABLE search_posts DROP CONSTRAINT IF EXISTS search_posts_post_id_fkey;
ALTER TABLE post_tags DROP CONSTRAINT IF EXISTS post_tags_post_id_fkey;

-- The posts index_posts reads, held FOR KEY SHARE until the transaction ends, with their source digest.
CREATE OR REPLACE FUNCTION search_post_sources(ids bigint[])
RETURNS TABLE (id bigint, created_at timestamptz, updated_at timestamptz, title text, body text, url text,
               embeds jsonb, mentions jsonb, deleted boolean, digest bytea)
LANGUAGE sql VOLATILE ROWS 2000 AS $$
  SELECT p.id, p.created_at, p.updated_at, p.title, p.body, p.url, p.embeds, p.mentions, p.deleted_at IS NOT NULL,
         search_post_source_digest(p.created_at, p.title, p.body, p.url, p.embeds, p.mentions)
  FROM external_posts AS p WHERE p.id = ANY (ids)
  FOR KEY SHARE OF p
$$;
ALTER FUNCTION search_post_sources(bigint[]) SECURITY DEFINER SET search_path = public, pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION search_posts_cascade() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    PERFORM 1 FROM search_posts_changes FOR SHARE;  -- a serialization error if one moved since the snapshot
  END IF;
  DELETE FROM search_posts AS s USING gone AS g WHERE s.post_id = g.id;
  DELETE FROM post_tags AS t USING gone AS g WHERE t.post_id = g.id;
  RETURN NULL;
END
$$;
ALTER FUNCTION search_posts_cascade() SECURITY DEFINER SET search_path = public, pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION search_posts_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE search_posts, post_tags;
  RETURN NULL;
END
$$;
ALTER FUNCTION search_posts_truncate() SECURITY DEFINER SET search_path = public, pg_catalog, pg_temp;

DROP TRIGGER IF EXISTS search_posts_cascade ON external_posts;
CREATE TRIGGER search_posts_cascade AFTER DELETE ON external_posts
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION search_posts_cascade();
DROP TRIGGER IF EXISTS search_posts_truncate ON external_posts;
CREATE TRIGGER search_posts_truncate AFTER TRUNCATE ON external_posts
  FOR EACH STATEMENT EXECUTE FUNCTION search_posts_truncate();
