"""The search worker's writes per post (issue 15, migration 0029), on a real Postgres: the cheaper
source digest still tells every text change apart, and a database upgraded from 0023's md5 digests
is not indexed again because the stored digests changed format."""

from __future__ import annotations

import psycopg

from tests.workers.test_search import index, seed

DIGEST = "SELECT search_post_source_digest(%s::timestamptz, %s, %s, %s, %s::jsonb, %s::jsonb)"
VERSION = "SELECT xmin::text, octet_length(source_hash) FROM search_posts WHERE post_id = %s"
AT = "2026-01-01T00:00:00Z"


def test_the_digest_tells_nulls_empties_and_field_boundaries_apart(migrated_url: str) -> None:
    """NULL and '' differ, text moved from one field to the next differs, so does the jsonb's
    structure (which jsonb's own hash ignores); the same fields give the same 8 bytes."""
    cases = [
        (AT, None, "body", None, "[]", "[]"),
        (AT, "", "body", None, "[]", "[]"),
        (AT, None, "body", "", "[]", "[]"),
        (AT, "a", "bc", None, "[]", "[]"),
        (AT, "ab", "c", None, "[]", "[]"),
        (AT, None, "body", None, "{}", "[]"),
        (AT, None, "body", None, "[[]]", "[]"),
        (AT, None, "body", None, "[]", "{}"),
        (AT, None, "body", None, '["a", "b"]', "[]"),
        (AT, None, "body", None, '[["a"], "b"]', "[]"),
        ("2026-01-01T00:00:01Z", None, "body", None, "[]", "[]"),
    ]
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        digests = [conn.execute(DIGEST, case).fetchone()[0] for case in cases]  # type: ignore[index]
        again = conn.execute(DIGEST, cases[0]).fetchone()[0]  # type: ignore[index]
    assert len(set(digests)) == len(cases)
    assert again == digests[0] and len(again) == 8


def test_posts_digested_by_0023_are_not_indexed_again(migrated_url: str) -> None:
    """A search_posts row carrying 0023's 16-byte md5 digest of the post's current text keeps its
    document when the post's updated_at moves without a text change (the old digest is checked with
    the old function); a text change indexes it again, with the new 8-byte digest."""
    post = seed(migrated_url)["0x01"]
    index(migrated_url)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE search_posts s SET source_hash = search_post_source_hash(p.created_at, p.title, p.body, p.url, "
            "p.embeds, p.mentions) FROM external_posts p WHERE p.id = s.post_id"
        )
        before = conn.execute(VERSION, (post,)).fetchone()
        assert before is not None and before[1] == 16
        conn.execute("UPDATE external_posts SET score = 7, updated_at = now()")
        index(migrated_url)
        assert conn.execute(VERSION, (post,)).fetchone() == before
        assert conn.execute("SELECT count(*) FROM search_posts WHERE octet_length(source_hash) = 8").fetchone() == (0,)

        conn.execute("UPDATE external_posts SET title = '', updated_at = now() WHERE id = %s", (post,))  # NULL -> ''
        assert index(migrated_url) == 1
        after = conn.execute(VERSION, (post,)).fetchone()
        assert after is not None and after[0] != before[0] and after[1] == 8

        conn.execute("UPDATE external_posts SET score = 8, updated_at = now() WHERE id = %s", (post,))
        index(migrated_url)
        assert conn.execute(VERSION, (post,)).fetchone() == after
