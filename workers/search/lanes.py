"""Extra data connections that index the later ranges of a batch while the worker indexes the first.

Building the documents (to_tsvector) and folding the lexicon are CPU work inside Postgres, one
backend per connection: a single connection keeps one core busy however large its batches. A batch
of ids is split into consecutive ranges (in cursor order); each later range is indexed and committed
in its own transaction on its own connection (a thread each, waiting on the server), while the
worker's own transaction indexes the first range. The cursor moves only in the worker's
transaction, to the end of the whole batch, and only after every later range committed: a range
that failed is indexed again in the worker's transaction (where a bad row is skipped row by row), so
the cursor never passes an uncommitted row. When the worker's transaction fails after later ranges
committed, the cursor stays where it was and those rows come back in the next batch, where indexing
them again writes nothing (a document built from the same version is left alone, so no word is
counted twice). The lexicon fold is split the same way, by lexeme (migration 0023).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg

from workers.errors import WorkerError

#: Runs inside an open transaction on the given connection.
Work = Callable[[psycopg.Connection[Any]], None]


def split(ids: Sequence[int], parts: int, min_part: int) -> list[list[int]]:
    """Consecutive ranges of `ids` (in their order), at most `parts`, none smaller than `min_part`
    unless there is only one."""
    parts = max(1, min(parts, len(ids) // max(1, min_part)))
    size, extra = divmod(len(ids), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(list(ids[start:end]))
        start = end
    return out


class Lanes:
    """`count` extra connections and threads, opened on first use and kept between batches."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], count: int) -> None:
        self._connect = connect
        self.count = count
        self._conns: list[psycopg.Connection[Any] | None] = [None] * count
        self._pool: ThreadPoolExecutor | None = None

    def start(self, works: list[Work]) -> list[Future[bool]]:
        """Run each work (at most `count`) in its own transaction on its own lane, at the same
        time; each future says whether its transaction committed (False: rolled back)."""
        if len(works) > self.count:
            raise ValueError(f"{len(works)} works for {self.count} lanes")
        if works and self._pool is None:
            self._pool = ThreadPoolExecutor(self.count, thread_name_prefix="search-lane")
        return [self._pool.submit(self._run, lane, work) for lane, work in enumerate(works) if self._pool]

    @staticmethod
    def wait(futures: list[Future[bool]]) -> list[bool]:
        """Every work's outcome, in order (after all have ended). A lost lease is raised."""
        outcomes: list[bool] = []
        error: BaseException | None = None
        for future in futures:
            try:
                outcomes.append(future.result())
            except BaseException as exc:  # still wait for the others: none may outlive the batch
                outcomes.append(False)
                error = error or exc
        if error is not None:
            raise error
        return outcomes

    def _run(self, lane: int, work: Work) -> bool:
        try:
            conn = self._conns[lane]
            if conn is None or conn.closed or conn.broken:
                conn = self._conns[lane] = self._connect()
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
        for conn in list(self._conns):
            if conn is not None and not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.cancel_safe(timeout=2)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for conn in self._conns:
            if conn is not None:
                conn.close()
        self._conns = [None] * self.count
