"""A minimal worker that counts: the template for new workers, and the manager's test subject.

Each cycle it takes the next `batch_size` integers after its cursor and "processes" them. Its
settings make it misbehave on purpose, so supervision can be shown working with real processes:
`fail_items` (item numbers that raise), `reject_all` (every item raises, as an upstream that
refuses everything would), `item_delay_ms` (slow items), `hang_s` (an item that blocks without
heartbeats, as a stuck upstream call would). `head` and `head_growth` play an upstream's newest
item number, so the worker reports its lag in rows (`head` unset: no lag).

Copy this package to start a worker: settings model, `run_cycle` from the base's building blocks,
`__main__.py` so that `python -m workers.<name>` runs it.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from pydantic import Field

from workers.base import Batch, CycleResult, Worker
from workers.settings import WorkerSettings


class ExampleSettings(WorkerSettings):
    """Defaults here; `workers.<name>.<key>` in the config file or a `<name>_<key>` settings row override."""

    batch_size: int = Field(default=5, gt=0)
    item_delay_ms: float = Field(default=0, ge=0)
    fail_items: list[int] = []
    reject_all: bool = False
    head: int | None = None
    head_growth: int = Field(default=0, ge=0)  # how much `head` grows per cycle
    hang_s: float = Field(default=0, ge=0)


class ExampleWorker(Worker[int]):
    settings_model = ExampleSettings
    settings: ExampleSettings

    def run_cycle(self) -> CycleResult:
        """One batch after the cursor; the cursor moves in the same transaction as the results."""
        batch = self.next_batch(self.load_cursor())
        with self.transaction() as tx:
            result, complete = self.run_items(batch.items, tx, self.process)
            if complete:  # a stop request mid-batch leaves the cursor where it was
                self.save_cursor(tx, batch.cursor)
        head = self.settings.head
        behind = None if head is None else head + self.settings.head_growth * self.cycles - batch.cursor
        self.report_lag(behind, "rows")
        return result

    def next_batch(self, cursor: Any) -> Batch[int]:
        start = int(cursor or 0)
        size = self.settings.batch_size
        return Batch(list(range(start, start + size)), cursor=start + size)

    def process(self, item: int, tx: psycopg.Connection[Any]) -> int:
        """Write one item's results with `tx`; return how many items it counts as."""
        if item in self.settings.fail_items:
            raise ValueError(f"item {item} is configured to fail")
        if self.settings.reject_all:
            raise ValueError(f"item {item} rejected by the upstream")
        if self.settings.item_delay_ms:
            time.sleep(self.settings.item_delay_ms / 1000)
        if self.settings.hang_s:
            time.sleep(self.settings.hang_s)  # deliberately deaf to heartbeats
        return 1
