"""No search document or tag outlives its post (migration 0026: a lock per batch and a delete
trigger instead of foreign keys), including when a post is deleted while it is being indexed."""

from __future__ import annotations

import threading

import psycopg

from sql import queries_from
from tests.workers.test_search import index, seed

LEFT = (
    "SELECT (SELECT count(*) FROM search_posts WHERE post_id = %(id)s), "
    "       (SELECT count(*) FROM post_tags WHERE post_id = %(id)s)"
)
ORPHANS = (
    "SELECT (SELECT count(*) FROM search_posts s WHERE NOT EXISTS (SELECT 1 FROM external_posts p WHERE p.id = s.post_id)),"
    "       (SELECT count(*) FROM post_tags t WHERE NOT EXISTS (SELECT 1 FROM external_posts p WHERE p.id = t.post_id))"
)


def _waits_on_a_lock(conn: psycopg.Connection, query_start: str) -> bool:
    """Whether a session running a statement that starts with `query_start` waits on a row lock,
    polled for up to 30 s."""
    for _ in range(300):
        if conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (query_start + "%",),
        ).fetchone():
            return True
        conn.execute("SELECT pg_sleep(0.1)")
    return False


def test_a_deleted_post_takes_its_document_and_tags_along(migrated_url: str) -> None:
    ids = seed(migrated_url)
    index(migrated_url)
    post = ids["0x01"]  # with a hashtag, a cashtag and a domain
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        assert conn.execute(LEFT, {"id": post}).fetchone() == (1, 3)
        conn.execute("DELETE FROM external_posts WHERE id = %s", (post,))
        assert conn.execute(LEFT, {"id": post}).fetchone() == (0, 0)
        assert conn.execute("SELECT count(*) FROM search_posts").fetchone() == (len(ids) - 1,)
        conn.execute("TRUNCATE external_posts CASCADE")
        assert conn.execute(
            "SELECT (SELECT count(*) FROM search_posts) + (SELECT count(*) FROM post_tags)"
        ).fetchone() == (0,)


def test_a_post_deleted_while_its_batch_is_read_is_not_indexed(migrated_url: str) -> None:
    """The delete is not committed when the worker reads the batch: the worker waits for it (the
    post is locked before it is read), then leaves the post out."""
    ids = seed(migrated_url)
    post = ids["0x06"]  # with a mention and a domain
    with psycopg.connect(migrated_url) as deleter, psycopg.connect(migrated_url, autocommit=True) as watcher:
        deleter.execute("DELETE FROM external_posts WHERE id = %s", (post,))  # open, not committed
        worker = threading.Thread(target=index, args=(migrated_url,), kwargs={"index_connections": 1})
        worker.start()
        try:
            assert _waits_on_a_lock(watcher, "WITH source AS")  # index_posts waits for the delete
            deleter.commit()
        finally:
            worker.join(timeout=60)
        assert not worker.is_alive()
        assert watcher.execute(LEFT, {"id": post}).fetchone() == (0, 0)
        assert watcher.execute(ORPHANS).fetchone() == (0, 0)
        assert watcher.execute("SELECT count(*) FROM search_posts").fetchone() == (len(ids) - 1,)


def test_a_delete_waits_for_the_batch_indexing_its_post(migrated_url: str) -> None:
    """The batch is not committed when the post is deleted: the delete waits for it, then takes the
    document and tags the batch committed along."""
    ids = seed(migrated_url)
    post = ids["0x01"]
    queries = queries_from("search.sql")
    with psycopg.connect(migrated_url) as indexer, psycopg.connect(migrated_url, autocommit=True) as watcher:
        row = indexer.execute(queries["index_posts"], {"ids": [post]}).fetchone()
        assert row is not None and list(row[0]) == [post]
        indexer.execute(queries["tag_posts"], {"ids": [post]})  # open, not committed

        def delete() -> None:
            with psycopg.connect(migrated_url, autocommit=True) as conn:
                conn.execute("DELETE FROM external_posts WHERE id = %s", (post,))

        deleter = threading.Thread(target=delete)
        deleter.start()
        try:
            assert _waits_on_a_lock(watcher, "DELETE FROM external_posts")
            indexer.commit()
        finally:
            deleter.join(timeout=60)
        assert not deleter.is_alive()
        assert watcher.execute(LEFT, {"id": post}).fetchone() == (0, 0)
        assert watcher.execute(ORPHANS).fetchone() == (0, 0)
