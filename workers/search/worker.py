"""The search worker: keeps the full-text, fuzzy and tag indexes of posts and profiles current.

Each cycle reads posts and profiles changed since its cursors (`updated_at`, `id`, bounded by
`sync_read_horizon()` so a writer's late commit is never skipped), `batch_size` at a time, and in
one transaction per batch (re)builds their documents in `search_posts` / `search_profiles` (GIN
on tsvector), re-extracts the posts' tags (hashtags, cashtags, mentions, linked domains) into
`post_tags`, adds their words to the typo-correction lexicon, and moves the cursor: the index and
its cursor commit together. The statements are in sql/search.sql, the schema in
migrations/0006_search.sql; searching is workers/search/query.py, served at GET /api/search.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import psycopg
from pydantic import Field

from sql import query
from workers.base import CycleResult, Worker
from workers.settings import WorkerSettings

START = {"updated_at": "-infinity", "id": 0}

# Per stream: the query finding changed rows, then the statements indexing a batch of their ids.
STREAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "posts": (
        "changed_posts",
        ("index_posts", "unindex_deleted_posts", "clear_post_tags", "tag_posts", "learn_post_lexemes"),
    ),
    "profiles": ("changed_profiles", ("index_profiles", "learn_profile_lexemes")),
}


def _q(name: str) -> str:
    return query(name, "search.sql")


class SearchSettings(WorkerSettings):
    interval_ms: int = Field(default=15000, gt=0)
    batch_size: int = Field(default=500, gt=0)  # rows per batch (one transaction each)
    max_cycle_s: float = Field(default=45, ge=0)  # then the cycle ends (`more_pending` if not drained)


class SearchWorker(Worker[int]):
    settings_model = SearchSettings
    settings: SearchSettings
    _stream = "posts"  # the stream whose rows `process` indexes one by one

    def run_cycle(self) -> CycleResult:
        """Alternate post and profile batches until both are drained or `max_cycle_s` is up."""
        streams = {name: functools.partial(self.index_batch, name) for name in STREAMS}
        return self.drain_streams(streams, self.settings.max_cycle_s)

    def index_batch(self, stream: str, total: CycleResult) -> bool:
        """Index the next batch of one stream; returns whether more may be waiting."""
        changed, statements = STREAMS[stream]
        limit = self.settings.batch_size
        with self.transaction() as tx:
            cursor = self.load_cursor(stream) or START
            rows: list[tuple[int, datetime]] = tx.execute(
                _q(changed), {"after_updated_at": cursor["updated_at"], "after_id": cursor["id"], "limit": limit}
            ).fetchall()
            if not rows:
                return False
            ids = [row[0] for row in rows]
            try:
                with tx.transaction():  # a savepoint: the whole batch in one go, the fast path
                    for name in statements:
                        tx.execute(_q(name), {"ids": ids})
                result = CycleResult(items=len(ids))
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except psycopg.Error:
                # Some row breaks a statement: index one at a time, logging and skipping the bad ones.
                self._stream = stream
                result, _ = self.run_items(ids, tx, self.process)
            last_id, last_updated = rows[-1]
            self.save_cursor(tx, {"updated_at": last_updated.isoformat(), "id": last_id}, stream)
        total.add(result)
        return len(rows) >= limit

    def process(self, item: int, tx: psycopg.Connection[Any]) -> int:
        """One row, when its batch failed as a whole."""
        for name in STREAMS[self._stream][1]:
            tx.execute(_q(name), {"ids": [item]})
        return 1

    def item_key(self, item: int) -> str:
        return f"{self._stream[:-1]} {item}"
