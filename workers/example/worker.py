"""A minimal worker that counts: the template for new workers, and the manager's test subject.

Each cycle it takes the next `batch_size` integers after its cursor and "processes" them. Its
settings make it misbehave on purpose, so supervision can be shown working with real processes:
`fail_items` (item numbers that raise), `item_delay_ms` (slow items), `hang_s` (an item that
blocks without heartbeats, as a stuck upstream call would).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from workers.base import Batch, Worker


class ExampleWorker(Worker[int]):
    defaults = {"batch_size": 5, "item_delay_ms": 0, "fail_items": [], "hang_s": 0}

    def fetch_batch(self, cursor: Any) -> Batch[int]:
        start = int(cursor or 0)
        size = int(self.setting("batch_size"))
        return Batch(list(range(start, start + size)), cursor=start + size)

    def process(self, item: int, tx: psycopg.Connection[Any]) -> int:
        if item in self.setting("fail_items"):
            raise ValueError(f"item {item} is configured to fail")
        if self.setting("item_delay_ms"):
            time.sleep(float(self.setting("item_delay_ms")) / 1000)
        if self.setting("hang_s"):
            time.sleep(float(self.setting("hang_s")))  # deliberately deaf to heartbeats
        return 1

