"""The search worker's indexing path (issue 15): tags kept in place across edits, and the commit
mode of its transactions, on a real Postgres."""

from __future__ import annotations

import psycopg

from tests.workers.test_search import index, seed
from workers.search import SearchWorker

TAGS = (  # each tag row with its row version: a row left alone keeps its xmin
    "SELECT array_agg(kind || ':' || tag || '|' || created_at::text || '@' || xmin::text ORDER BY kind, tag) "
    "FROM post_tags WHERE post_id = %s"
)


def test_an_edit_rewrites_only_the_tags_that_changed(migrated_url: str) -> None:
    """An edit keeps the tag rows still in the text as they were (no delete and insert again),
    drops the ones gone, adds the new ones, and follows a moved created_at."""
    post = seed(migrated_url)["0x01"]  # "#ethereum $ETH https://etherscan.io/tx/1"
    index(migrated_url)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        before = conn.execute(TAGS, (post,)).fetchone()[0]  # type: ignore[index]
        assert [t.split("|")[0] for t in before] == [
            "cashtag:eth",
            "domain:etherscan.io",
            "hashtag:ethereum",
        ]
        conn.execute("UPDATE external_posts SET body = body || ' and more', updated_at = now() WHERE id = %s", (post,))
        assert index(migrated_url) == 1
        assert conn.execute(TAGS, (post,)).fetchone()[0] == before  # type: ignore[index]

        conn.execute(
            "UPDATE external_posts SET body = replace(body, '$ETH', '#gm'), updated_at = now() WHERE id = %s", (post,)
        )
        assert index(migrated_url) == 1
        after = conn.execute(TAGS, (post,)).fetchone()[0]  # type: ignore[index]
        assert [t for t in after if not t.startswith("hashtag:gm|")] == before[1:]  # the kept ones untouched
        assert [t.split("|")[0] for t in after] == ["domain:etherscan.io", "hashtag:ethereum", "hashtag:gm"]

        conn.execute(
            "UPDATE external_posts SET created_at = created_at - interval '1 day', updated_at = now() WHERE id = %s",
            (post,),
        )
        assert index(migrated_url) == 1
        moved = conn.execute(
            "SELECT count(*) FROM post_tags t JOIN external_posts p ON p.id = t.post_id "
            "WHERE t.post_id = %s AND t.created_at = p.created_at",
            (post,),
        ).fetchone()
        assert moved == (3,)


def test_indexing_transactions_commit_without_waiting_for_the_wal_flush(migrated_url: str) -> None:
    """The index rows, the cursor and the lexicon fold commit with synchronous_commit off (on the
    worker's connection and its lanes', rows and cursor in one transaction), and the setting ends
    with each transaction: the connection's next one has the server's."""
    seed(migrated_url)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE commit_modes (tbl text, mode text)")
        conn.execute(
            "CREATE FUNCTION note_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO commit_modes VALUES (TG_TABLE_NAME, current_setting('synchronous_commit')); RETURN NULL; END $$"
        )
        for table in ("search_posts", "sync_cursors", "search_lexemes"):
            conn.execute(
                f"CREATE TRIGGER note_mode AFTER INSERT OR UPDATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION note_commit_mode()"
            )
        worker = SearchWorker(
            name="search", config={"index_connections": 2, "lane_min_rows": 1}, database_url=migrated_url
        )
        try:
            assert worker.run_cycle().items > 0
            assert worker.db.execute("SHOW synchronous_commit").fetchone() == ("on",)
        finally:
            worker.close()
            for c in (worker._data, worker._control):
                if c is not None:
                    c.close()
        modes = dict(conn.execute("SELECT tbl, array_agg(DISTINCT mode) FROM commit_modes GROUP BY tbl").fetchall())
    assert modes == {"search_posts": ["off"], "sync_cursors": ["off"], "search_lexemes": ["off"]}
