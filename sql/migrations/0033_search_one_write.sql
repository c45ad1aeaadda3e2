-- Indexing throughput, round 10 (issue 15): a range of posts written in one statement.
--
-- A lane's range took three statements: index_posts, unindex_deleted_posts and tag_posts. Measured
-- over the whole 1,000,000-post backlog (lab, the CPU of the worker's backends and its own process):
-- 204 us a post with tags, 167 without, so tags cost 37 us a post, 18% of all. Part of that was not
-- tag work: tag_posts read every post of the range again (search_post_tags took ids), the worker
-- sent the range's ids three times and read them back once (psycopg dumps a list of 1,000 ints in
-- Python: 1.3 ms of the worker's CPU each time, against 0.3 ms as one text literal), and each
-- statement paid its own round trip, executor start and plan.
--
-- Now index_posts does it all in one statement: the posts are read once, FOR KEY SHARE
-- (search_post_sources, 0029), and their tags are extracted from those same rows
-- (search_post_tags_of below, the regular expressions of 0031 unchanged); the documents of
-- deleted posts are dropped in the same statement. search_post_tags(ids) stays, now reading the
-- posts and handing them to search_post_tags_of, so there is one definition of what a tag is.
-- PL/pgSQL, not SQL: the function is called with an array built from the statement's own rows (a
-- sub-select), which PostgreSQL never inlines, and a SQL function that is not inlined plans its
-- body on every call; PL/pgSQL keeps the plan for the session.

-- A post's fields that its tags come from.
CREATE TYPE search_tag_post AS (
  id bigint, created_at timestamptz, title text, body text, url text, embeds jsonb, mentions jsonb
);

-- The tags of the given posts (kind, tag, post, the post's time), each once: hashtags, cashtags,
-- mentions (in the text, u/name, and the mentions list) and linked domains.
CREATE OR REPLACE FUNCTION search_post_tags_of(posts search_tag_post[])
RETURNS TABLE (kind text, tag text, post_id bigint, created_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH doc AS MATERIALIZED (
    SELECT p.id, p.created_at, coalesce(p.title, '') || E'\n' || coalesce(p.body, '') AS text,
           coalesce(p.url, '') || ' ' || coalesce(p.embeds::text, '') AS links, p.mentions
    FROM unnest(posts) AS p
  )
  SELECT DISTINCT t.kind, t.tag, t.id, t.created_at FROM (
    SELECT 'hashtag', lower(left(m[1], 64)), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text, '(?<![[:alnum:]_&#/])#([[:alpha:]][[:alnum:]_]*)', 'g') AS m
     WHERE strpos(d.text, '#') > 0
    UNION ALL
    SELECT 'cashtag', lower(m[1]), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text, '(?:^|[^[:alnum:]_$])\$([A-Za-z][A-Za-z0-9]{0,9})(?![[:alnum:]_])', 'g') AS m
     WHERE strpos(d.text, '$') > 0
    UNION ALL
    SELECT 'mention', lower(rtrim(left(m[1], 64), '.-')), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text, '(?<![[:alnum:]_@./])@([[:alnum:]_][[:alnum:]_.-]*)', 'g') AS m
     WHERE strpos(d.text, '@') > 0
    UNION ALL
    SELECT 'mention', lower(m[1]), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text, '(?:^|[^[:alnum:]_/])/?u/([[:alnum:]_-]{3,20})', 'g') AS m
     WHERE strpos(d.text, 'u/') > 0
    UNION ALL
    SELECT 'mention', lower(coalesce(e ->> 'username', e ->> 'fid', e #>> '{}')), d.id, d.created_at
      FROM doc AS d, jsonb_array_elements(d.mentions) AS e
     WHERE jsonb_typeof(d.mentions) = 'array' AND d.mentions <> '[]'
    UNION ALL
    SELECT 'domain', regexp_replace(lower(m[1]), '^www\.', ''), d.id, d.created_at
      FROM doc AS d, regexp_matches(d.text || ' ' || d.links, 'https?://([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})', 'g') AS m
     WHERE strpos(d.text, 'http') > 0 OR strpos(d.links, 'http') > 0
  ) AS t (kind, tag, id, created_at)
  WHERE t.tag IS NOT NULL AND t.tag <> '';
END
$$;

-- The tags of the posts with these ids that are not deleted (removed posts have none).
CREATE OR REPLACE FUNCTION search_post_tags(ids bigint[])
RETURNS TABLE (kind text, tag text, post_id bigint, created_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM search_post_tags_of(ARRAY(
    SELECT ROW(p.id, p.created_at, p.title, p.body, p.url, p.embeds, p.mentions)::search_tag_post
    FROM external_posts p WHERE p.id = ANY (ids) AND p.deleted_at IS NULL))
$$;
