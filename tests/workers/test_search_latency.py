"""What keeps a search's fixed cost low without changing its answer: the recency cutoff each session
remembers until search_posts changes (migration 0025), and search connections that come warm."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from manager.store import Store
from sql import queries_from
from tests.workers.test_search import POSTS, index, seed

CUTOFF = "SELECT s.created_at FROM search_posts AS s ORDER BY s.created_at DESC, s.post_id DESC OFFSET %s - 1 LIMIT 1"
SINCE = "SELECT search_recent_since(true, %s)"


def _since(conn: psycopg.Connection[Any], scan: int) -> Any:
    row = conn.execute(SINCE, (scan,)).fetchone()
    assert row is not None
    return row[0]


def _cutoff(conn: psycopg.Connection[Any], scan: int) -> Any:
    row = conn.execute(CUTOFF, (scan,)).fetchone()
    return row[0] if row else None


def _changes(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT sum(changes) FROM search_posts_changes").fetchone()
    assert row is not None
    return int(row[0])


def _add_post(conn: psycopg.Connection[Any], minutes_ago: int) -> int:
    row = conn.execute(
        "INSERT INTO external_posts (platform, external_id, author_name, body, created_at) "
        "VALUES ('farcaster', %s, 'someone', 'ethereum again', now() - make_interval(mins => %s)) RETURNING id",
        (f"0xnew{minutes_ago}", minutes_ago),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def indexed(migrated_url: str) -> dict[str, int]:
    ids = seed(migrated_url)
    index(migrated_url)
    return ids


def test_the_remembered_cutoff_is_used_until_search_posts_changes(migrated_url: str, indexed: dict[str, int]) -> None:
    """A session finds where the newest posts begin once and answers from memory while search_posts
    is unchanged; any change, indexed or dropped, makes it look again."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        assert _since(conn, 4) == _cutoff(conn, 4) is not None
        assert _since(conn, len(POSTS) + 1) is None  # fewer posts than that: none left out
        assert _since(conn, 4) == _cutoff(conn, 4)
        # the answer comes from memory: a planted one under the same count of changes is returned
        planted = conn.execute("SELECT now() - interval '1 year'").fetchone()
        assert planted is not None
        key = f"{_changes(conn)}/4/"
        micros = conn.execute("SELECT (extract(epoch FROM %s::timestamptz) * 1000000)::bigint", planted).fetchone()
        assert micros is not None
        conn.execute("SELECT set_config('search.recent_since', %s, false)", (key + str(micros[0]),))
        assert _since(conn, 4) == planted[0]
        # a newer post indexed moves the cutoff: looked up again
        _add_post(conn, 5)
        index(migrated_url)
        assert _since(conn, 4) == _cutoff(conn, 4) != planted[0]
        before = _cutoff(conn, 4)
        # the newest post dropped: the cutoff moves back
        conn.execute("DELETE FROM search_posts WHERE post_id = (SELECT max(post_id) FROM search_posts)")
        assert _since(conn, 4) == _cutoff(conn, 4) != before


def test_a_change_committed_after_the_lookup_is_not_missed(migrated_url: str, indexed: dict[str, int]) -> None:
    """A change counts only once it commits, in the same snapshot as the posts: a session that looks
    while another transaction's insert is open remembers a count without it, so the commit makes it
    look again (a counter bumped before the commit, as a sequence is, would hide the new post)."""
    with (
        psycopg.connect(migrated_url, autocommit=True) as reader,
        psycopg.connect(migrated_url, autocommit=True) as writer,
    ):
        newest_id = _add_post(writer, 1)
        with writer.transaction():
            writer.execute(
                "INSERT INTO search_posts (post_id, created_at, source_updated_at, tsv) "
                "SELECT id, created_at, updated_at, to_tsvector('english', body) FROM external_posts WHERE id = %s",
                (newest_id,),
            )
            old = _since(reader, 1)  # the insert is not committed: the newest is still the old one
            assert old == _cutoff(reader, 1)
        newest = _since(reader, 1)
        assert newest == _cutoff(reader, 1) and newest > old


def test_index_lanes_do_not_wait_for_each_others_count(migrated_url: str, indexed: dict[str, int]) -> None:
    """The change counter a writer would take first is held by another open transaction: the
    writer counts on a free one instead of waiting for that commit."""
    with (
        psycopg.connect(migrated_url, autocommit=True) as holder,
        psycopg.connect(migrated_url, autocommit=True) as lane,
    ):
        lane_pid = lane.info.backend_pid
        before = _changes(lane)
        with holder.transaction():
            holder.execute("SELECT 1 FROM search_posts_changes WHERE slot = %s FOR UPDATE", (lane_pid % 16,))
            lane.execute("SET lock_timeout = '2s'")
            lane.execute("DELETE FROM search_posts WHERE post_id = (SELECT min(post_id) FROM search_posts)")
        assert _changes(lane) == before + 1


def test_ranking_is_the_same_with_the_cutoff_remembered(migrated_url: str, indexed: dict[str, int]) -> None:
    """The recency-bounded path ranks the same posts whether its cutoff was found or remembered."""
    statement = queries_from("search.sql")["search_posts"]
    params = {"walk": True, "dense": False, "scan": 4, "window": 100, "limit": 2, "exclude": []}
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        for tsquery in ("'ethereum'", "'gas' | 'fee'", "'ethereum' | 'eth':*"):
            conn.execute("SELECT set_config('search.recent_since', '', false)")  # forgotten: found
            found = conn.execute(statement, params | {"q": tsquery}).fetchall()
            assert conn.execute("SELECT current_setting('search.recent_since')").fetchone() != ("",)
            remembered = conn.execute(statement, params | {"q": tsquery}).fetchall()
            assert found == remembered and found, tsquery


async def test_search_connections_come_warm(migrated_url: str) -> None:
    """The API's search pool compiles the search functions on each connection before handing it
    out (their first call costs 30-60 ms): the connection a search gets has them compiled already."""
    store = Store(migrated_url)
    await store.start()
    try:
        async with store.search_connection() as conn:
            cur = await conn.execute(
                "SELECT ident FROM pg_backend_memory_contexts WHERE name = 'PL/pgSQL function' AND ident LIKE 'search%'"
            )
            compiled = {row[0].split("(")[0] for row in await cur.fetchall()}
    finally:
        await store.stop()
    assert compiled >= {
        "search_posts_text",
        "search_posts_top",
        "search_expected_recent",
        "search_recent_since",
        "search_widen",
        "search_similar_lexemes",
    }


def test_ranking_every_match_when_few_gives_the_same_posts(migrated_url: str, indexed: dict[str, int]) -> None:
    """With `few` (the lexicon expects no more matches than the window) search_posts_top ranks every
    match instead of sorting them by time first: the same posts as the newest-window path, also
    when the expectation was wrong (more matches than the window: the newest are ranked after all)."""
    statement = "SELECT post_id, rank FROM search_posts_top(%s::tsquery, false, false, %s, %s, 5000, %s, %s)"
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        for tsquery in ("'ethereum'", "'gas' | 'fee'", "'ethereum' | 'eth':*", "'solana' & 'outage'"):
            for limit, exclude, window in ((20, [], 100), (2, [], 100), (2, [indexed["0x03"]], 100), (2, [], 2)):
                args = (tsquery, limit, exclude, window)
                newest = conn.execute(statement, (*args, False)).fetchall()
                assert conn.execute(statement, (*args, True)).fetchall() == newest, (tsquery, limit, exclude, window)
        # five posts say ethereum: a window of 2 ranks only the 2 newest, whichever path
        assert {row[0] for row in conn.execute(statement, ("'ethereum'", 20, [], 2, True))} == {
            indexed["t3_07"],
            indexed["0x08"],
        }
