"""Replicas that claim work: N copies of a worker share one queue without processing an item twice.

A worker configured with `replicas: N` runs as N instances (`ai`, `ai-2`, ... `ai-N`), each with its
own lease and heartbeat. Instead of one `(updated_at, id)` cursor per stream, its streams go through
`work_queue` (sql/migrations/0015_work_claims.sql), the pattern of Oban, River and seed mirror-queue
workers:

- feed: whoever gets the feed row's lock (FOR UPDATE SKIP LOCKED; the others do not wait) moves the
  stream's cursor over the source table and queues what changed, in one fenced transaction;
- claim: `FOR UPDATE SKIP LOCKED` takes up to `batch_size` due items nobody holds, marks them
  claimed by this replica with a deadline (`claim_timeout_s`) and counts an attempt. A claim that
  ran out (its replica died or hung) is claimable again; an item claimed `max_attempts` (5) times
  without completing is parked as `failed` with its last error, so a poison item cannot loop forever;
- process outside any transaction (provider calls, ...);
- complete, in the transaction that writes the results: `complete()` marks done only the claims
  this replica still holds (same attempt number, not taken over) and returns their ids; only those
  are written. A replica whose claim was taken over writes nothing for it, so no item is processed
  twice to completion, and an item is done only when its results committed, so none is skipped;
- a failed batch gives its claims back (`release`), ready again after a short delay.

When nothing is claimable the replica backs off (`IdleBackoff`): the wait doubles from
`claim_idle_ms` up to the worker's `interval_ms`, and resets as soon as a claim succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import Field

from sql import query
from workers.backlog import START, rows_after
from workers.settings import WorkerSettings

SQL = "claims.sql"
MAX_ATTEMPTS = 5

#: (connection, cursor after which to read, limit) -> [(id, updated_at), ...] oldest first.
ReadChanged = Callable[[psycopg.Connection[Any], dict[str, Any], int], list[tuple[int, datetime]]]
Fence = Callable[[psycopg.Connection[Any]], None]


class ClaimSettings(WorkerSettings):
    """The settings of a worker that can run as replicas. With `replicas: 1` it follows its own
    cursors as before; with more, every copy claims from the queue."""

    replicas: int = Field(default=1, ge=1)  # set in the config (the manager starts the copies)
    claim_timeout_s: float = Field(default=300, gt=0)  # a claim not completed by then is claimable again
    claim_idle_ms: int = Field(default=500, gt=0)  # first wait when nothing is claimable (doubles)
    claim_max_attempts: int = Field(default=MAX_ATTEMPTS, ge=1)  # then the item is parked as failed
    claim_feed_rows: int = Field(default=5000, gt=0)  # source rows queued per feed


@dataclass(frozen=True)
class Claim:
    """One claimed item; `attempts` identifies this claim (a new claim of it counts one more)."""

    item_id: int
    attempts: int
    version: datetime


class ClaimQueue:
    """One stream of a replicated worker: feed, claim, complete, release."""

    def __init__(
        self,
        worker: str,
        stream: str,
        replica: str,
        fence: Fence,
        timeout_s: float = 300.0,
        max_attempts: int = MAX_ATTEMPTS,
        feed_size: int = 5000,
    ) -> None:
        self.worker, self.stream = worker, stream
        self.queue = f"{worker}:{stream}"
        self.replica = replica
        self._fence = fence
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.feed_size = feed_size

    def feed(self, conn: psycopg.Connection[Any], read_changed: ReadChanged) -> int | None:
        """Queue up to `feed_size` source rows changed after the feed's cursor and move it, in one
        fenced transaction. None when another replica holds the feed (it is feeding right now)."""
        conn.execute(query("ensure_feed", SQL), {"queue": self.queue, "worker": self.worker, "stream": self.stream})
        with conn.transaction():
            row = conn.execute(query("lock_feed", SQL), (self.queue,)).fetchone()
            if row is None:
                return None
            self._fence(conn)
            rows = read_changed(conn, row[0] or START, self.feed_size)
            if rows:
                conn.execute(
                    query("enqueue", SQL),
                    {"queue": self.queue, "ids": [r[0] for r in rows], "versions": [r[1] for r in rows]},
                )
                last_id, last_at = rows[-1]
                conn.execute(
                    query("move_feed", SQL), (Jsonb({"updated_at": last_at.isoformat(), "id": last_id}), self.queue)
                )
        return len(rows)

    def claim(self, conn: psycopg.Connection[Any], limit: int) -> list[Claim]:
        """Up to `limit` items for this replica alone (a short fenced transaction of its own)."""
        with conn.transaction():
            self._fence(conn)
            rows = conn.execute(
                query("claim", SQL),
                {
                    "queue": self.queue,
                    "limit": limit,
                    "max_attempts": self.max_attempts,
                    "by": self.replica,
                    "timeout_s": self.timeout_s,
                },
            ).fetchall()
        return [Claim(int(r[0]), int(r[1]), r[2]) for r in rows]

    def take(self, conn: psycopg.Connection[Any], limit: int, read_changed: ReadChanged) -> list[Claim]:
        """Claim up to `limit` items, feeding the queue first when it runs short."""
        claims = self.claim(conn, limit)
        if len(claims) < limit and self.feed(conn, read_changed):
            claims += self.claim(conn, limit - len(claims))
        return claims

    def complete(self, tx: psycopg.Connection[Any], claims: Iterable[Claim]) -> set[int]:
        """Inside the results' transaction: the ids of the claims still ours, now marked done
        (their rows stay locked until commit). Write results for these ids only."""
        claims = list(claims)
        if not claims:
            return set()
        self._fence(tx)
        rows = tx.execute(query("complete", SQL), self._params(claims)).fetchall()
        return {int(r[0]) for r in rows}

    def release(
        self,
        conn: psycopg.Connection[Any],
        claims: Iterable[Claim],
        error: str | None = None,
        charge: bool = True,
        delay_s: float = 1.0,
    ) -> None:
        """Give claims back, ready again after `delay_s`. `charge`: the attempt counts (the batch
        failed); False for a stop or a rate limit, which are not the items' fault."""
        claims = list(claims)
        if claims:
            conn.execute(
                query("release", SQL),
                {**self._params(claims), "error": error, "charge": charge, "delay_s": delay_s},
            )

    def _params(self, claims: list[Claim]) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "by": self.replica,
            "ids": [c.item_id for c in claims],
            "attempts": [c.attempts for c in claims],
            "max_attempts": self.max_attempts,
        }


class IdleBackoff:
    """The wait after a cycle that found nothing claimable: doubles from `first_s` up to `max_s`,
    back to `first_s` once work is found, so an idle replica costs little and new work starts soon."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s, self.max_s = first_s, max(first_s, max_s)
        self._next = first_s
        self.idle_since: float | None = None

    def found_work(self) -> None:
        self._next, self.idle_since = self.first_s, None

    def next_wait_s(self) -> float:
        """The wait after one more empty cycle."""
        if self.idle_since is None:
            self.idle_since = time.monotonic()
        wait, self._next = self._next, min(self._next * 2, self.max_s)
        return wait


def queues_waiting(conn: psycopg.Connection[Any], queues: list[str]) -> int:
    """Items of `queues` not done yet (ready or claimed)."""
    row = conn.execute(query("queue_waiting", SQL), (queues,)).fetchone()
    return int(row[0]) if row else 0


def feed_cursors(conn: psycopg.Connection[Any], queues: list[str]) -> dict[str, dict[str, Any]]:
    """Where each queue's feed got to (START when it never fed)."""
    found = dict(conn.execute(query("feed_cursors", SQL), (queues,)).fetchall())
    return {q: found.get(q) or START for q in queues}


class Claims:
    """The claim queues of one replicated worker (one per stream) and its idle backoff."""

    def __init__(self, worker: Any, streams: Iterable[str]) -> None:
        self._worker = worker
        self.streams = list(streams)
        self.backoff = IdleBackoff(0.5, 60.0)
        self._queues: dict[str, ClaimQueue] = {}
        self._recovered = False

    @property
    def active(self) -> bool:
        """Whether the worker claims (runs as replicas) rather than following its own cursors."""
        return int(self._worker.settings.replicas) > 1

    def queue(self, stream: str) -> ClaimQueue:
        s, w = self._worker.settings, self._worker
        queue = self._queues.get(stream)
        wanted = (s.claim_timeout_s, s.claim_max_attempts, s.claim_feed_rows)
        if queue is None or (queue.timeout_s, queue.max_attempts, queue.feed_size) != wanted:
            queue = ClaimQueue(w.group, stream, w.name, w.fence, *wanted)
            self._queues[stream] = queue
        return queue

    def take(self, stream: str, limit: int, read_changed: ReadChanged) -> tuple[ClaimQueue, list[Claim]]:
        """The stream's queue and up to `limit` items claimed from it (fed first if it runs short).
        On the first call, the claims this replica's previous process left are given back."""
        db = self._worker.db
        if not self._recovered:
            with db.transaction():
                self._worker.fence(db)
                queues = [f"{self._worker.group}:{name}" for name in self.streams]
                db.execute(query("release_mine", SQL), {"queues": queues, "by": self._worker.name})
            self._recovered = True
        queue = self.queue(stream)
        return queue, queue.take(db, limit, read_changed)

    def end_cycle(self, result: Any) -> None:
        """Idle backoff: a cycle that claimed nothing waits `claim_idle_ms`, doubling up to `interval_ms`."""
        s = self._worker.settings
        self.backoff.first_s, self.backoff.max_s = (
            s.claim_idle_ms / 1000,
            max(s.claim_idle_ms / 1000, s.interval_ms / 1000),
        )
        if result.items or result.item_errors:
            self.backoff.found_work()
            result.wait_s = self.backoff.first_s
        else:
            result.wait_s = self.backoff.next_wait_s()

    def rows_waiting(self) -> int:
        """Queued items not done, plus source rows the feeds have not reached (the `posts` and
        `profiles` streams of workers/backlog.py)."""
        db = self._worker.db
        names = [f"{self._worker.group}:{stream}" for stream in ("posts", "profiles")]
        cursors = feed_cursors(db, names)
        return queues_waiting(db, names) + rows_after(db, cursors[names[0]], cursors[names[1]])
