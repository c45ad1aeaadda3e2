"""The search worker's writes per post (issue 15, migration 0029), on a real Postgres: the cheaper
source digest still tells every text change apart, and a database upgraded from 0023's md5 digests
is not indexed again because the stored digests changed format."""

from __future__ import annotations

import concurrent.futures
import time
import uuid

import psycopg
import pytest

from tests.workers.test_search import index, seed
from workers.search.worker import STREAMS, run_statements

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


# ---- hard deletes racing the indexing (no foreign keys per row since 0029: a lock and a cascade) ------

ROWS = "SELECT (SELECT count(*) FROM search_posts WHERE post_id = %(id)s) + (SELECT count(*) FROM post_tags WHERE post_id = %(id)s)"


def index_in(conn: psycopg.Connection, ids: list[int]) -> list[int]:
    """The worker's statements for these posts, in the caller's open transaction; those of the ids
    that have a search document after them (the tests pass posts never indexed before)."""
    run_statements(conn, STREAMS["posts"][1], ids)
    return [r[0] for r in conn.execute("SELECT post_id FROM search_posts WHERE post_id = ANY(%s) ORDER BY 1", (ids,))]


def wait_for_lock(conn: psycopg.Connection, pid: int) -> None:
    """Until backend `pid` waits for a lock (5 s at most)."""
    deadline = time.monotonic() + 5
    while conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() != ("Lock",):
        assert time.monotonic() < deadline, "the other transaction never waited for the lock"
        time.sleep(0.02)


def test_a_delete_racing_the_indexing_leaves_no_rows(migrated_url: str) -> None:
    """READ COMMITTED both ways round: a delete of a post an open indexing transaction holds waits
    for it, then its cascade removes what that transaction wrote; an indexing transaction meeting a
    post being deleted waits, then leaves it out. Neither leaves a search_posts or post_tags row."""
    ids = seed(migrated_url)
    first, second = ids["0x01"], ids["0x04"]  # both with tags
    with (
        psycopg.connect(migrated_url) as indexer,
        psycopg.connect(migrated_url) as deleter,
        psycopg.connect(migrated_url, autocommit=True) as watch,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        assert index_in(indexer, [first]) == [first]  # open: holds the post
        deleting = pool.submit(deleter.execute, "DELETE FROM external_posts WHERE id = %s", (first,))
        wait_for_lock(watch, deleter.info.backend_pid)
        indexer.commit()
        deleting.result(timeout=5)
        deleter.commit()
        assert watch.execute(ROWS, {"id": first}).fetchone() == (0,)

        deleter.execute("DELETE FROM external_posts WHERE id = %s", (second,))  # open: deleting
        indexing = pool.submit(index_in, indexer, [second])
        wait_for_lock(watch, indexer.info.backend_pid)
        deleter.commit()
        assert indexing.result(timeout=5) == []
        indexer.commit()
        assert watch.execute(ROWS, {"id": second}).fetchone() == (0,)


def test_a_repeatable_read_delete_that_cannot_see_the_indexing_fails_to_serialize(migrated_url: str) -> None:
    """A REPEATABLE READ delete whose snapshot predates an indexing commit cannot see the rows that
    commit wrote: it fails with a serialization error (the foreign key's cascade did too) instead of
    leaving them; retried, it removes them."""
    post = seed(migrated_url)["0x01"]
    with (
        psycopg.connect(migrated_url) as indexer,
        psycopg.connect(migrated_url) as deleter,
        psycopg.connect(migrated_url, autocommit=True) as watch,
    ):
        deleter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        deleter.execute("SELECT count(*) FROM external_posts")  # the snapshot
        index_in(indexer, [post])
        indexer.commit()
        with pytest.raises(psycopg.errors.SerializationFailure):
            deleter.execute("DELETE FROM external_posts WHERE id = %s", (post,))
        deleter.rollback()
        assert watch.execute(ROWS, {"id": post}).fetchone() > (0,)
        deleter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        deleter.execute("DELETE FROM external_posts WHERE id = %s", (post,))
        deleter.commit()
        assert watch.execute(ROWS, {"id": post}).fetchone() == (0,)
        index(migrated_url)
        watch.execute("TRUNCATE external_posts CASCADE")
        assert watch.execute(
            "SELECT (SELECT count(*) FROM search_posts) + (SELECT count(*) FROM post_tags)"
        ).fetchone() == (0,)


def test_a_role_that_may_only_read_the_posts_indexes_and_deletes_them(migrated_url: str) -> None:
    """The search worker's role reads external_posts only (locking rows takes UPDATE rights) and a
    social worker's role may not write the search tables: the lock and the cascade run with their
    owner's rights, as the foreign key's did."""
    post = seed(migrated_url)["0x01"]
    role = f"rw_search_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(migrated_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} NOLOGIN")
        try:
            admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
            admin.execute(
                f"GRANT INSERT, UPDATE, DELETE ON search_posts, post_tags, search_lexeme_pending, "
                f"search_posts_changes TO {role}"
            )
            with psycopg.connect(migrated_url) as conn:
                conn.execute(f"SET ROLE {role}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                    conn.execute("SELECT 1 FROM external_posts FOR KEY SHARE")
                assert index_in(conn, [post]) == [post]
                conn.commit()
            assert admin.execute(ROWS, {"id": post}).fetchone() > (0,)
            admin.execute(f"GRANT DELETE ON external_posts TO {role}")
            admin.execute(f"REVOKE ALL ON search_posts, post_tags FROM {role}")
            with psycopg.connect(migrated_url) as conn:
                conn.execute(f"SET ROLE {role}")
                conn.execute("DELETE FROM external_posts WHERE id = %s", (post,))
            assert admin.execute(ROWS, {"id": post}).fetchone() == (0,)
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


# ---- one statement per range (migration 0033): documents, words, deletions and tags together --------

TAGS = "SELECT kind || ':' || tag FROM post_tags WHERE post_id = %s ORDER BY 1"


def test_one_range_indexes_edits_new_posts_and_removed_posts_together(migrated_url: str) -> None:
    """A range holding an edited post (one tag replaced, the others kept), a post marked deleted
    and a new post: the edit's tags follow its text, the removed post loses its document and
    every tag, the new one gets both; a post brought back is indexed again with its tags."""
    ids = seed(migrated_url)
    index(migrated_url)
    edited, removed = ids["0x01"], ids["0x04"]
    with psycopg.connect(migrated_url) as conn:
        assert [r[0] for r in conn.execute(TAGS, (edited,))] == [
            "cashtag:eth",
            "domain:etherscan.io",
            "hashtag:ethereum",
        ]
        assert [r[0] for r in conn.execute(TAGS, (removed,))] == ["cashtag:sol", "hashtag:solana"]
        kept = conn.execute(
            "SELECT xmin::text FROM post_tags WHERE post_id = %s AND kind = 'cashtag'", (edited,)
        ).fetchone()
        conn.execute(
            "UPDATE external_posts SET body = replace(body, '#ethereum', '#btc'), updated_at = now() WHERE id = %s",
            (edited,),
        )
        conn.execute("UPDATE external_posts SET deleted_at = now(), updated_at = now() WHERE id = %s", (removed,))
        row = conn.execute(
            "INSERT INTO external_posts (platform, external_id, author_name, body, created_at) "
            "VALUES ('farcaster', '0x09', 'someone', 'Zkevms everywhere #l2', now()) RETURNING id"
        ).fetchone()
        assert row is not None
        new = row[0]
        conn.commit()

        run_statements(conn, STREAMS["posts"][1], [edited, removed, new])
        conn.commit()
        assert [r[0] for r in conn.execute(TAGS, (edited,))] == ["cashtag:eth", "domain:etherscan.io", "hashtag:btc"]
        assert (
            conn.execute(
                "SELECT xmin::text FROM post_tags WHERE post_id = %s AND kind = 'cashtag'", (edited,)
            ).fetchone()
            == kept
        )  # a tag still there is left alone
        assert conn.execute(ROWS, {"id": removed}).fetchone() == (0,)
        assert [r[0] for r in conn.execute(TAGS, (new,))] == ["hashtag:l2"]
        found = "SELECT post_id FROM search_posts WHERE tsv @@ to_tsquery('english', %s) ORDER BY 1"
        assert [r[0] for r in conn.execute(found, ("btc",))] == [edited]
        assert [r[0] for r in conn.execute(found, ("zkevm",))] == [new]

        conn.execute("UPDATE external_posts SET deleted_at = NULL, updated_at = now() WHERE id = %s", (removed,))
        conn.commit()
        run_statements(conn, STREAMS["posts"][1], [removed])
        conn.commit()
        assert [r[0] for r in conn.execute(TAGS, (removed,))] == ["cashtag:sol", "hashtag:solana"]
        assert [r[0] for r in conn.execute(found, ("validator",))] == [removed]
