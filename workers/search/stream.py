"""Changed posts indexed as a stream over the lanes, the cursor moved over the committed prefix.

Why a stream: a batch split over the lanes and waited for as a whole leaves every lane idle until
the slowest range of the batch ends (a GIN pending-list cleanup lands on one backend at a time and
can take 100+ ms), and again while the next batch is read and the cursor committed: 20-27% of the
cores stayed idle, and more lanes did not help. Here a lane takes the next range as soon as it is free
(lab, 1,000,000 posts at batch 2000, quiet: 8,016 posts/s with 4% idle against 6,606/s with 13%).

- The reader (the worker's thread, on the worker's connection, outside any transaction) reads the
  changed posts after its read position, `batch_size` at a time, splits each batch into consecutive
  ranges (`split`: `index_connections` of them, none under `lane_min_rows`) and submits them to the
  lanes in cursor order. It stays at most READ_AHEAD batches ahead of the cursor, so a free lane
  finds a range waiting, while a slow range holds back a bounded number of rows.
- A lane indexes a range and commits it in its own transaction (fast_commit, fenced).
- The cursor passes the committed prefix only: the ranges settle in cursor order; a range whose
  transaction rolled back is redone when it reaches the head, in the worker's transaction (at once,
  else row by row, skipping and recording the bad rows: `SearchWorker.redo_range`). The cursor is
  saved in a small transaction of its own (fenced, fast_commit) started after the ranges it passes
  committed, so its commit record follows theirs in the WAL: a crash loses a tail of ranges and
  cursor moves, never keeps a cursor without its rows. It is not folded into the transaction of the
  range completing the prefix because a lane cannot know, when it commits, whether the ranges
  before it will; the worker's thread, which sees every outcome, can. It costs one small commit per
  step that moved the cursor.
- Ranges committed past a range that is not (yet) are indexed again after a crash or a stop;
  that writes nothing (index_posts leaves a document built from the same version alone).
- A post edited while an earlier range holding it is still in flight comes back in a later batch:
  its range is held until every range before it settled, so two transactions never index the same
  post at once (the later one would note its words against a document the earlier one replaces).
- At the end of a cycle (time up, stop, error) the ranges not started are cancelled and the running
  ones end (on a stop they are cancelled in the server and roll back, so SIGTERM is answered
  within a statement); the prefix settles (a failed range redone unless stopping) and nothing stays
  in flight between cycles.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from workers.base import CycleResult
from workers.search.lanes import Lanes

READ_AHEAD = 2  # batches read past the cursor before the reader waits for the lanes
WAIT_S = 0.1  # the longest a step waits for a lane (then the worker beats, checks its deadline and stop)


class Indexer(Protocol):
    """What the stream asks of the worker (workers/search/worker.py)."""

    @property
    def stopping(self) -> bool: ...

    def read_posts(self, after: dict[str, Any], limit: int) -> list[tuple[int, str]]:
        """(id, updated_at as text) of the next changed posts after the position `after`."""
        ...

    def index_range(self, ids: list[int], conn: psycopg.Connection[Any]) -> None: ...

    def redo_range(self, ids: list[int]) -> CycleResult | None: ...

    def save_posts_cursor(self, cursor: dict[str, Any]) -> None: ...


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


@dataclass
class Range:
    """Consecutive changed posts, indexed in one transaction on a lane."""

    ids: list[int]
    end: dict[str, Any]  # the cursor just past its last row
    held: bool = False  # one of its posts is in an earlier range: waits until every earlier range settled
    future: Future[bool] | None = None  # submitted: whether its transaction committed

    @property
    def done(self) -> bool:
        return self.future is not None and self.future.done()


class PostStream:
    """One cycle's stream of changed posts from `after` (the committed cursor)."""

    def __init__(
        self, indexer: Indexer, lanes: Lanes, after: dict[str, Any], batch_size: int, parts: int, min_part: int
    ) -> None:
        self.indexer, self.lanes = indexer, lanes
        self.batch_size, self.parts, self.min_part = batch_size, parts, min_part
        self.position = after  # the read position: past the last row read
        self.exhausted = False  # a batch came back short: nothing more to read this cycle
        self.window: deque[Range] = deque()  # read, not yet passed by the cursor, in cursor order
        self._ids: Counter[int] = Counter()  # the posts in the window

    @property
    def drained(self) -> bool:
        """Everything changed up to the last read is indexed and passed by the cursor."""
        return self.exhausted and not self.window

    def step(self) -> CycleResult:
        """Top the window up, wait (at most WAIT_S) for a lane to end a range, and move the cursor
        over the committed prefix. Returns what the cursor passed."""
        self._fill()
        running = [r.future for r in self.window if r.future is not None and not r.future.done()]
        if running:
            concurrent.futures.wait(running, timeout=WAIT_S, return_when=concurrent.futures.FIRST_COMPLETED)
        passed = self._settle(redo=True)
        self._submit()  # a held range may have reached the head
        return passed

    def finish(self) -> CycleResult:
        """End the stream for this cycle: the ranges not started are dropped, the running ones end
        (cancelled on a stop), then the prefix settles. No lane outlives the cycle."""
        for r in self.window:
            if r.future is not None:
                r.future.cancel()  # only those not started yet
        stopping = self.indexer.stopping
        if stopping:
            self.lanes.cancel()
        concurrent.futures.wait([r.future for r in self.window if r.future is not None])
        try:
            return self._settle(redo=not stopping)
        finally:
            self.window.clear()
            self._ids.clear()

    def _fill(self) -> None:
        """Read batches until READ_AHEAD of them lie between the cursor and the read position."""
        while not self.exhausted and not self.indexer.stopping and self._rows() < READ_AHEAD * self.batch_size:
            rows = self.indexer.read_posts(self.position, self.batch_size)
            self.exhausted = len(rows) < self.batch_size
            if rows:
                self._add(rows)
        self._submit()

    def _add(self, rows: list[tuple[int, str]]) -> None:
        """A batch's ranges at the end of the window (held if a post of theirs is in it already)."""
        ids = [row[0] for row in rows]
        last = 0
        for part in split(ids, self.parts, self.min_part):
            last += len(part)
            post_id, updated_at = rows[last - 1]
            end = {"updated_at": updated_at, "id": post_id}
            self.window.append(Range(part, end, held=any(self._ids[i] for i in part)))
        self._ids.update(ids)
        self.position = self.window[-1].end

    def _submit(self) -> None:
        """Hand the lanes every range not submitted yet, in order; a held one only at the head."""
        for i, r in enumerate(self.window):
            if r.future is None:
                if r.held and i > 0:
                    return
                r.future = self.lanes.submit(functools.partial(self.indexer.index_range, r.ids))

    def _settle(self, redo: bool) -> CycleResult:
        """Pass the ranges at the head that committed (redoing one that rolled back, if `redo`),
        and move the cursor past them in one small transaction. A lost lease is raised."""
        passed, end = CycleResult(), None
        while self.window and self.window[0].done:
            head = self.window[0]
            assert head.future is not None
            if head.future.cancelled():
                break
            if head.future.result():
                passed.items += len(head.ids)
            else:
                redone = self.indexer.redo_range(head.ids) if redo else None
                if redone is None:  # not redone, or a stop interrupted it (rolled back)
                    break
                passed.add(redone)
            end = head.end
            self.window.popleft()
            self._ids.subtract(head.ids)
        if end is not None:
            self.indexer.save_posts_cursor(end)
        self._ids = +self._ids  # drop the zero counts
        return passed

    def _rows(self) -> int:
        return sum(len(r.ids) for r in self.window)
