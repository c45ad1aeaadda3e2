"""The search worker: keeps the full-text, fuzzy and tag indexes of posts and profiles current.

Each cycle reads posts and profiles changed since its cursors (`updated_at`, `id`, bounded by
`sync_read_horizon()` so a writer's late commit is never skipped), `batch_size` at a time, and per
batch (re)builds their documents in `search_posts` / `search_profiles` (GIN on tsvector), brings the
posts' tags (hashtags, cashtags, mentions, linked domains) in `post_tags` in line, notes the words
each document adds for the typo-correction lexicon (all of a new post's, an edit's new words only),
and moves the cursor, never past a row whose indexing has not committed. A post whose text did not
change (an edit of its score) keeps its document and tags. Every statement covers the whole batch
inside Postgres (to_tsvector, regexp_matches); only when one fails for some row is the batch redone
row by row. Posts are indexed as a stream over `index_connections` connections (lanes,
workers/search/stream.py and lanes.py), so the documents are built on as many cores: each lane takes
the next range of changed posts as soon as it is free and commits it; the cursor moves over the
committed prefix only, a range that failed redone first. Profiles (few) go a batch at a time, rows
and cursor in one transaction. The noted word counts are folded into the lexicon when a stream is
drained (split by lexeme over the same connections) and, during a long backlog, every
`lexicon_fold_rows` rows in the background while the next batches are indexed, so a lexeme is
updated once per fold instead of once per batch. The statements are in sql/search.sql, the schema in
migrations/0006_search.sql (0023: the lanes' fold, the text digest; 0024: the fold's cost; 0030:
the noted counts in arrays, a row per batch and bucket of lexemes; 0032: the fold's cost per row);
searching is workers/search/query.py, served at GET /api/search. Indexing transactions commit
without waiting for the WAL flush (fast_commit: a crash loses the newest rows and cursor moves,
never a cursor without its rows).

With `replicas: N` the batch is claimed from a queue instead of read after a cursor
(workers/claims.py): the same statements index it, in the transaction that completes the claims,
and the replicas fold the lexicon one at a time.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
from typing import Any

import psycopg
from psycopg.types.string import TextLoader
from pydantic import Field

from sql import query
from workers.backlog import rows_waiting
from workers.base import CycleResult, Worker, describe
from workers.claims import Claims, ClaimSettings
from workers.errors import WorkerError
from workers.search.lanes import Lanes
from workers.search.stream import PostStream

START = {"updated_at": "-infinity", "id": 0}
STOP_POLL_S = 0.1  # how often a wait for the background fold checks for a stop request

# Per stream: the query finding changed rows, then the statements indexing a batch of their ids.
STREAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "posts": (
        "changed_posts",
        ("index_posts",),
    ),
    "profiles": ("changed_profiles", ("index_profiles", "learn_profile_lexemes")),
}


def _q(name: str) -> str:
    return query(name, "search.sql")


def fast_commit(conn: psycopg.Connection[Any]) -> None:
    """Let the open transaction commit without waiting for its WAL to reach the disk (and give GIN's
    pending-list flush more memory). Safe for the index: a profile batch's rows and cursor commit in
    one transaction, and a lane's range of posts commits before the worker's transaction that moves
    the cursor past it begins, so its commit record comes earlier in the WAL. A crash loses only a
    tail of the WAL: the last ranges and cursor moves, never a cursor without its rows; they are
    indexed again. No transaction waits for a WAL flush: one per range, one per cursor move."""
    conn.execute(_q("index_session"))


def id_array(ids: list[int]) -> str:
    """The ids as one int8[] literal (`{1,2,3}`): psycopg dumps a list of ints one element at a time
    in Python (1.3 ms of the worker's CPU per 1,000 ids), this text in a fifth of that."""
    return "{" + ",".join(map(str, ids)) + "}"


def run_statements(conn: psycopg.Connection[Any], statements: tuple[str, ...], ids: list[int]) -> None:
    """A batch's statements in order, inside the caller's transaction."""
    param = {"ids": id_array(ids)}
    for name in statements:
        conn.execute(_q(name), param)


class _Stopped(Exception):
    """A stop request interrupted a claimed batch indexed row by row."""


class SearchSettings(ClaimSettings):
    interval_ms: int = Field(default=15000, gt=0)
    batch_size: int = Field(default=500, gt=0)  # rows read at a time (posts: split over the lanes)
    max_cycle_s: float = Field(default=45, ge=0)  # then the cycle ends (`more_pending` if not drained)
    # The typo lexicon takes the noted word counts when a stream is drained and, during a long
    # backlog, every this many rows in the background: on a connection of its own while the next
    # batches are indexed (each fold updates every lexeme seen since the last one, once). The
    # background fold takes a core from the lanes, and a third of its cost is per distinct lexeme
    # seen since the last fold (~90,000 per 100,000 posts, looked up and updated again by every
    # fold; 10 s of one backend per 100,000 posts in EXPLAIN ANALYZE), so fewer, larger folds cost
    # less in all. 500,000 rows is about a minute of lag at the backlog rate.
    lexicon_fold_rows: int = Field(default=500_000, gt=0)
    # Posts are indexed over this many lanes at once (workers/search/stream.py), each a connection
    # of its own besides the worker's (which reads ahead and moves the cursor): the documents are
    # built by one Postgres backend per lane, so by as many cores.
    index_connections: int = Field(default=2, ge=1, le=8)
    # Each batch of posts read is split into `index_connections` ranges (one transaction on a lane
    # each), none smaller than this.
    lane_min_rows: int = Field(default=100, gt=0)


class SearchWorker(Worker[int]):
    settings_model = SearchSettings
    settings: SearchSettings
    _stream = "posts"  # the stream whose rows `process` indexes one by one
    _unfolded = 0  # rows whose words were noted since the last fold (search_lexeme_pending)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claims = Claims(self, STREAMS)  # with `replicas: N` (workers/claims.py)
        self.lanes = Lanes(self._connect, self.settings.index_connections)
        self._folder = Lanes(self._connect, 1)  # the background fold's connection
        self._folding: list[concurrent.futures.Future[bool]] = []  # the background fold under way, if any
        self._posts: PostStream | None = None  # this cycle's stream of posts, once started

    def close(self) -> None:
        self.lanes.close()
        self._folder.close()
        super().close()

    def run_cycle(self) -> CycleResult:
        """Alternate post and profile batches until both are drained or `max_cycle_s` is up."""
        streams = {name: functools.partial(self.index_batch, name) for name in STREAMS}
        total = CycleResult()
        try:
            result = self.drain_streams(streams, self.settings.max_cycle_s)
        finally:
            try:
                self._end_posts(total)  # no range outlives the cycle
            finally:
                self._await_fold()  # no fold outlives the cycle
        result.add(total)
        if self.claims.active:
            self.claims.end_cycle(result)
        self.report_lag(self.claims.rows_waiting() if self.claims.active else rows_waiting(self), "rows")
        return result

    def index_batch(self, stream: str, total: CycleResult) -> bool:
        """Index the next changes of one stream; returns whether more may be waiting."""
        if self.claims.active:
            return self.claimed_batch(stream, total)
        if stream == "posts":
            return self._post_step(total)
        return self._profile_batch(total)

    def _post_step(self, total: CycleResult) -> bool:
        """One step of the posts' stream over the lanes (workers/search/stream.py): the cursor
        passes what committed; the lexicon is folded when the stream is drained, and in the
        background every `lexicon_fold_rows` rows."""
        if self._posts is None:
            self._posts = PostStream(
                self,
                self._lanes(),
                self.load_cursor("posts") or START,
                self.settings.batch_size,
                self.settings.index_connections,
                self.settings.lane_min_rows,
            )
        self._passed(self._posts.step(), total)
        if self.stopping:
            return False
        if self._posts.drained:
            self._posts = None
            self.fold_lexicon()  # drained: the lexicon catches up (a no-op when nothing is noted)
            return False
        if self._unfolded >= self.settings.lexicon_fold_rows and not self._fold_running():
            self._folding = self._folder.start([functools.partial(self._fold_part, 0, 1)])
            self._unfolded = 0
        return True

    def _end_posts(self, total: CycleResult) -> None:
        """The cycle ends: the posts' stream stops where its committed prefix ends."""
        posts, self._posts = self._posts, None
        if posts is not None:
            self._passed(posts.finish(), total)

    def _passed(self, result: CycleResult, total: CycleResult) -> None:
        total.add(result)
        self._unfolded += result.items + result.item_errors

    def _profile_batch(self, total: CycleResult) -> bool:
        """The next batch of profiles (few: no lanes), its documents and cursor in one transaction."""
        statements = STREAMS["profiles"][1]
        limit = self.settings.batch_size
        result = CycleResult()
        try:
            with self.transaction() as tx:
                fast_commit(tx)
                cursor = self.load_cursor("profiles") or START
                rows = self._changed_rows("profiles", tx, cursor, limit)
                if rows:
                    result, complete = self._index(tx, "profiles", [row[0] for row in rows], statements)
                    if not complete:
                        raise _Stopped
                    last_id, last_updated = rows[-1]
                    self.save_cursor(tx, {"updated_at": last_updated.isoformat(), "id": last_id}, "profiles")
        except _Stopped:  # a stop interrupted the batch row by row: rolled back, the cursor stays
            return False
        self._unfolded += len(rows)
        total.add(result)
        if len(rows) < limit:
            self.fold_lexicon()  # drained: the lexicon catches up (a no-op when nothing is noted)
            return False
        return True

    @staticmethod
    def _changed_rows(
        stream: str, conn: psycopg.Connection[Any] | psycopg.Cursor[Any], after: dict[str, Any], limit: int
    ) -> list[tuple[int, Any]]:
        """(id, updated_at) of the next `limit` rows of `stream` changed after the cursor `after`
        (updated_at as `conn` loads a timestamptz: a datetime unless told otherwise)."""
        rows: list[tuple[int, Any]] = conn.execute(
            _q(STREAMS[stream][0]), {"after_updated_at": after["updated_at"], "after_id": after["id"], "limit": limit}
        ).fetchall()
        return rows

    def _lanes(self) -> Lanes:
        """The lanes indexing posts, one per `index_connections` (changed live: opened again)."""
        if self.lanes.count != self.settings.index_connections:
            self.lanes.close()
            self.lanes = Lanes(self._connect, self.settings.index_connections)
        return self.lanes

    # ---- what the posts' stream asks of the worker (stream.Indexer) ------------------------------

    def read_posts(self, after: dict[str, Any], limit: int) -> list[tuple[int, str]]:
        """The next changed posts after `after`, outside any transaction (the reader runs ahead of
        the cursor), their `updated_at` as the server writes it: a position is only ever handed back
        to the server, and turning every row's timestamp into a datetime cost the worker 2 us a post
        (4 ms of its CPU per 2,000 rows), a tenth of its share of a backlog."""
        with self.db.cursor() as cur:
            cur.adapters.register_loader("timestamptz", TextLoader)
            return self._changed_rows("posts", cur, after, limit)

    def index_range(self, ids: list[int], conn: psycopg.Connection[Any]) -> None:
        """A lane's range, in the lane's transaction (fenced like the worker's own)."""
        fast_commit(conn)
        run_statements(conn, STREAMS["posts"][1], ids)
        self.fence(conn)

    def redo_range(self, ids: list[int]) -> CycleResult | None:
        """A range whose lane rolled back, in the worker's transaction: at once, else row by row
        (the bad rows recorded and skipped). None when a stop interrupted it (rolled back)."""
        try:
            with self.transaction() as tx:
                fast_commit(tx)
                result, complete = self._index(tx, "posts", ids, STREAMS["posts"][1])
                if not complete:
                    raise _Stopped
        except _Stopped:
            return None
        return result

    def save_posts_cursor(self, cursor: dict[str, Any]) -> None:
        """Move the posts' cursor, in a transaction of its own, after the rows it passes committed."""
        with self.transaction() as tx:
            fast_commit(tx)
            self.save_cursor(tx, cursor, "posts")

    def fold_lexicon(self) -> None:
        """Fold the noted word counts into the lexicon, split by lexeme over the worker's connection
        and its lanes at the same time (migration 0023). Each part is its own transaction: a part
        that fails keeps its counts pending for the next fold."""
        self._await_fold()
        parts = self.settings.index_connections
        futures = self._lanes().start([functools.partial(self._fold_part, part, parts) for part in range(1, parts)])
        try:
            with self.transaction() as tx:
                fast_commit(tx)
                tx.execute(_q("fold_lexemes"), {"part": 0, "parts": parts})
        finally:
            Lanes.wait(futures)
        self._unfolded = 0

    def _fold_part(self, part: int, parts: int, conn: psycopg.Connection[Any]) -> None:
        fast_commit(conn)
        conn.execute(_q("fold_lexemes"), {"part": part, "parts": parts})
        self.fence(conn)

    def _fold_running(self) -> bool:
        if self._folding and self._folding[0].done():
            self._await_fold()  # ended: a lost lease is raised here
        return bool(self._folding)

    def _await_fold(self) -> None:
        """Wait for the background fold (its counts stay pending if it failed). A stop does not
        wait for it: the fold is cancelled, rolls back, and its counts wait for the next fold, so
        SIGTERM ends the worker well within the manager's stop timeout."""
        folding, self._folding = self._folding, []
        while not all(future.done() for future in folding):
            if self.stopping:
                self._folder.cancel()
                break
            concurrent.futures.wait(folding, timeout=STOP_POLL_S)
        Lanes.wait(folding)

    def claimed_batch(self, stream: str, total: CycleResult) -> bool:
        """Replicas: index a batch claimed from the stream's queue; the claims complete in the
        transaction that indexes them (only those still ours are indexed)."""
        statements = STREAMS[stream][1]
        queue, claims = self.claims.take(
            stream, self.settings.batch_size, functools.partial(self._changed_rows, stream)
        )
        try:
            with self.transaction() as tx:
                fast_commit(tx)
                ids = sorted(queue.complete(tx, claims))
                result, complete = self._index(tx, stream, ids, statements) if ids else (CycleResult(), True)
                if not complete:  # a stop interrupted it row by row: roll back, give the claims back
                    raise _Stopped
                self._unfolded += len(ids)
                if not claims or self._unfolded >= self.settings.lexicon_fold_rows:
                    tx.execute(_q("lock_lexicon"))  # replicas fold one at a time
                    tx.execute(_q("fold_lexemes"), {"part": 0, "parts": 1})
                    self._unfolded = 0
        except BaseException as exc:
            with contextlib.suppress(psycopg.Error):
                queue.release(self.db, claims, describe(exc), charge=not isinstance(exc, _Stopped | WorkerError))
            if isinstance(exc, _Stopped):
                return False
            raise
        total.add(result)
        return bool(claims) and not self.stopping

    def _index(
        self, tx: psycopg.Connection[Any], stream: str, ids: list[int], statements: tuple[str, ...]
    ) -> tuple[CycleResult, bool]:
        """The batch's statements at once (a savepoint: the fast path), or, when one fails for some
        row, one row at a time, logging and skipping the bad ones. Returns whether all were handled."""
        try:
            with tx.transaction():
                run_statements(tx, statements, ids)
            return CycleResult(items=len(ids)), True
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except psycopg.Error:
            self._stream = stream
            return self.run_items(ids, tx, self.process)

    def process(self, item: int, tx: psycopg.Connection[Any]) -> int:
        """One row, when its batch failed as a whole."""
        run_statements(tx, STREAMS[self._stream][1], [item])
        return 1

    def item_key(self, item: int) -> str:
        return f"{self._stream[:-1]} {item}"
