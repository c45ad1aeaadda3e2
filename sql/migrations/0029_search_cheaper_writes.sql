-- Cheaper writes per indexed post (issue 15, backlog indexing; DRAFT: numbers to come).
--
-- 1. The source digest. 0023's search_post_source_hash renders the post as text (format() with %L
--    quoting every field, jsonb rendered as text) and md5s it. search_post_source_digest hashes the
--    fields themselves with PostgreSQL's 64-bit extended hash functions (the ones hash partitioning
--    uses, stable across versions): hash_record_extended over the row hashes each field with its
--    type's hash (text: hashtextextended over the bytes; a NULL field hashes to 0 and '' does not) and
--    combines them by position (h = 31 h + field), so field boundaries and NULLs count. The jsonb
--    fields are hashed as text: jsonb's own hash ignores structure ('[]', '{}' and '[[]]' hash alike).
--    Stored as 8 bytes; a stored 16-byte value is 0023's md5 and is compared with that function
--    (search_post_source_unchanged), so an upgraded database does not re-index every post once: a
--    post keeps its old digest until its text changes.
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
