"""The posts' indexing stream (workers/search/stream.py) on a real Postgres: lanes do not wait for
each other, and the cursor passes only the committed prefix, through failures and stops.

A range is held back by a trigger that takes an advisory lock the test holds: its lane waits in the
server while the other lane goes on, so ranges complete out of order without any timing guess."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.workers.test_search import seed_many
from workers.base import CycleResult
from workers.search import SearchWorker

LOCK = 4242
STREAMING = {"batch_size": 2, "index_connections": 2, "lane_min_rows": 1}  # ranges of one post


def cursor_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT (value->>'id')::int FROM sync_cursors WHERE worker_name = 'search' AND cursor_key = 'posts'"
    ).fetchone()
    return row[0] if row else 0


def indexed(conn: psycopg.Connection[Any]) -> set[int]:
    return {r[0] for r in conn.execute("SELECT post_id FROM search_posts")}


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


def trigger(conn: psycopg.Connection[Any], post: int, action: str) -> None:
    """Run `action` (plpgsql) whenever the document of `post` is written."""
    conn.execute(
        "CREATE FUNCTION on_post() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.post_id = {post} THEN {action}; END IF; RETURN NEW; END $$"
    )
    conn.execute("CREATE TRIGGER on_post BEFORE INSERT ON search_posts FOR EACH ROW EXECUTE FUNCTION on_post()")


class Cycle:
    """A worker's cycle running in a thread of its own, so the test can watch and stop it."""

    def __init__(self, url: str) -> None:
        self.worker = SearchWorker(name="search", config=STREAMING, database_url=url)
        self.result: CycleResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.worker.run_cycle()
        except BaseException as exc:
            self.error = exc

    def join(self) -> CycleResult:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the cycle did not end"
        self.worker.close()
        for conn in (self.worker._data, self.worker._control):
            if conn is not None:
                conn.close()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@pytest.fixture
def held(migrated_url: str) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    """20 posts; the test's connection holding the lock, and another to watch with."""
    seed_many(migrated_url, 20)
    with (
        psycopg.connect(migrated_url, autocommit=True) as holder,
        psycopg.connect(migrated_url, autocommit=True) as watch,
    ):
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK,))
        yield holder, watch


def test_ranges_committed_out_of_order_do_not_move_the_cursor_past_an_open_one(migrated_url: str, held: Any) -> None:
    """Post 3's range waits; the other lane goes on with the ranges after it (no barrier) and
    commits them, but the cursor stays before post 3 until its range commits."""
    holder, watch = held
    trigger(watch, 3, f"PERFORM pg_advisory_xact_lock_shared({LOCK})")
    cycle = Cycle(migrated_url)
    wait_until(lambda: indexed(watch) >= {1, 2, 4, 5, 6}, "the ranges after post 3 are committed")
    time.sleep(0.3)  # a few of the stream's steps (0.1 s each at most): none may pass post 3
    assert 3 not in indexed(watch)
    assert cursor_id(watch) == 2
    holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
    assert cycle.join().items == 20
    assert indexed(watch) == set(range(1, 21))
    assert cursor_id(watch) == 20


def test_a_range_that_fails_is_redone_row_by_row_before_the_cursor_passes_it(migrated_url: str) -> None:
    """Post 6's range (posts 5 and 6) rolls back on its lane while later ranges commit; it is redone
    in the worker's transaction, post 5 indexed, post 6 recorded and skipped, and the cursor goes on."""
    seed_many(migrated_url, 12)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        trigger(conn, 6, "RAISE EXCEPTION 'refused post %', NEW.post_id")
        worker = SearchWorker(
            name="search", config={**STREAMING, "batch_size": 4, "lane_min_rows": 2}, database_url=migrated_url
        )
        try:
            result = worker.run_cycle()
        finally:
            worker.close()
            for c in (worker._data, worker._control):
                if c is not None:
                    c.close()
        assert (result.items, result.item_errors) == (11, 1)
        assert indexed(conn) == set(range(1, 13)) - {6}
        assert cursor_id(conn) == 12
        errors = conn.execute("SELECT item_key, message FROM worker_errors WHERE worker_name = 'search'").fetchall()
    assert [key for key, _ in errors] == ["post 6"] and "refused post" in errors[0][1]


def test_a_stop_mid_stream_leaves_every_row_up_to_the_cursor_indexed(migrated_url: str, held: Any) -> None:
    """A stop while post 5's range waits (and later ones committed) ends the cycle without waiting
    for it: it is cancelled and rolls back, the cursor stays before it, every row up to the cursor
    is indexed. The next cycle indexes the rest; the ranges committed past the cursor are read
    again and write nothing."""
    holder, watch = held
    trigger(watch, 5, f"PERFORM pg_advisory_xact_lock_shared({LOCK})")
    cycle = Cycle(migrated_url)
    wait_until(lambda: indexed(watch) >= {6, 7, 8}, "the ranges after post 5 are committed")
    versions = dict(watch.execute("SELECT post_id, xmin::text FROM search_posts WHERE post_id > 5").fetchall())
    cycle.worker.request_stop()
    cycle.join()  # ends with the lock still held: post 5's range was cancelled
    position = cursor_id(watch)
    assert position < 5 and 5 not in indexed(watch)
    assert set(range(1, position + 1)) <= indexed(watch)

    holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
    assert Cycle(migrated_url).join().items == 20 - position
    assert indexed(watch) == set(range(1, 21)) and cursor_id(watch) == 20
    again = dict(watch.execute("SELECT post_id, xmin::text FROM search_posts WHERE post_id IN (6, 7, 8)").fetchall())
    assert again == {post: versions[post] for post in (6, 7, 8)}  # the same row versions: nothing rewritten
