-- Indexing throughput, round 9 (issue 15): the tags of a post extracted at the regex engine's floor.
--
-- Measured on the bench corpus (lab, 1,000,000 posts, statement log of the first 40 s of a backlog):
-- tag_posts took 19% of the index lanes' time, and search_post_tags (migration 0014) about half of
-- that, 22 us a post. A regexp_matches call costs at least ~5.6 us here (a bare '@' over the posts
-- that have one), but the hashtag and mention patterns cost three times that: their bounded
-- repetitions ({0,63}, {0,62}) are expanded into that many states of the automaton, which the
-- engine walks at every '#' or '@'. Mentions lists that are empty arrays still started one
-- jsonb_array_elements scan each.
--
-- Now, with the same tags out:
-- - the hashtag and the mention are matched unbounded and cut afterwards: a hashtag is its first
--   64 characters (left), a mention its first 64 without the '.' and '-' it would then end on
--   (rtrim), which is what the bounded patterns matched: the longest run of at most 64 characters
--   (for mentions, ending in a letter, digit or '_');
-- - the character before '#' or '@' is checked by a lookbehind instead of being matched: the tags
--   found are the same, since no tag can end on a character that may stand before the next one
--   (a hashtag ends in a letter, digit or '_', which may not; a mention run may end in '-', which
--   may, and then, as before, the next '@' is a mention);
-- - mentions arrays are read only when not empty.
-- Lab (psql, the lock held, other work running): mentions 58 -> 18 ms per 2,988 posts holding an
-- '@'; the whole function over 50,000 posts 598-825 -> 489-682 ms (about 2-3 us a post saved). tests/workers/test_search_tags.py compares it with 0014's on
-- generated hostile text.

CREATE OR REPLACE FUNCTION search_post_tags(ids bigint[])
RETURNS TABLE (kind text, tag text, post_id bigint, created_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  WITH doc AS MATERIALIZED (
    SELECT p.id, p.created_at, coalesce(p.title, '') || E'\n' || coalesce(p.body, '') AS text,
           coalesce(p.url, '') || ' ' || coalesce(p.embeds::text, '') AS links, p.mentions
    FROM external_posts p WHERE p.id = ANY (ids) AND p.deleted_at IS NULL  -- removed posts lose their tags
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
  WHERE t.tag IS NOT NULL AND t.tag <> ''
$$;
