"""Extra data connections (lanes) that index ranges of posts, and fold the lexicon, at the same time.

Building the documents (to_tsvector) and folding the lexicon are CPU work inside Postgres, one
backend per connection: a single connection keeps one core busy however large its batches. A lane
is a thread with a connection of its own (opened on first use, kept between batches); each work
submitted runs in its own transaction on the first lane that is free, in the order submitted, so a
lane never waits for another one to finish (workers/search/stream.py streams ranges of posts
through them; the lexicon fold at drain is split by lexeme over them, migration 0023).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg

from workers.errors import WorkerError

#: Runs inside an open transaction on the given connection.
Work = Callable[[psycopg.Connection[Any]], None]


class Lanes:
    """`count` threads, each with its own connection, taking the submitted works in turn."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], count: int) -> None:
        self._connect = connect
        self.count = count
        self._local = threading.local()  # each lane thread's connection
        self._conns: list[psycopg.Connection[Any]] = []  # every lane's, to cancel and close them
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, work: Work) -> Future[bool]:
        """Run `work` in its own transaction on the next free lane; the future says whether the
        transaction committed (False: rolled back, or cancelled before it started)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.count, thread_name_prefix="search-lane")
        return self._pool.submit(self._run, work)

    def start(self, works: list[Work]) -> list[Future[bool]]:
        """Each work (at most `count`) on a lane of its own, all at the same time."""
        if len(works) > self.count:
            raise ValueError(f"{len(works)} works for {self.count} lanes")
        return [self.submit(work) for work in works]

    @staticmethod
    def wait(futures: list[Future[bool]]) -> list[bool]:
        """Every work's outcome, in order (after all have ended). A lost lease is raised."""
        outcomes: list[bool] = []
        error: BaseException | None = None
        for future in futures:
            try:
                outcomes.append(not future.cancelled() and future.result())
            except BaseException as exc:  # still wait for the others: none may outlive the batch
                outcomes.append(False)
                error = error or exc
        if error is not None:
            raise error
        return outcomes

    def _lane_connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._local.conn = self._connect()
            with self._lock:
                self._conns = [c for c in self._conns if not c.closed] + [conn]
        return conn

    def _run(self, work: Work) -> bool:
        try:
            conn = self._lane_connection()
            with conn.transaction():
                work(conn)
            return True
        except WorkerError:
            raise  # the lease moved on (the fence refused): the worker stops
        except psycopg.Error:
            return False  # the caller redoes or leaves it (a range is indexed again in its own transaction)

    def cancel(self) -> None:
        """Ask the server to cancel what each lane is running: its transaction rolls back and its
        future says False (a lane whose connection is still opening is not reached)."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.cancel_safe(timeout=2)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
