"""Supervision events (started, exited, restarted, backoff, failed, paused, resumed, killed as
hung): kept in memory for the API and written to Postgres in the background (manager/queued_writer.py),
so recording an event never makes the supervisor wait on the database, and a database restart loses none.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from manager.logs import iso
from manager.queued_writer import QueuedWriter
from sql import query


@dataclass(frozen=True)
class SupervisionEvent:
    worker: str
    event: str
    at: float
    pid: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"at": iso(self.at), "event": self.event, "pid": self.pid, "detail": self.detail}


class EventRecorder:
    """Records events in memory at once and in Postgres through a background writer."""

    def __init__(self, pool: AsyncConnectionPool | None, per_worker: int = 200) -> None:
        self._pool = pool
        self._recent: dict[str, deque[SupervisionEvent]] = {}
        self._per_worker = per_worker
        self._writer: QueuedWriter[SupervisionEvent] | None = (
            QueuedWriter("event-writer", self._write) if pool is not None else None
        )

    def record(self, worker: str, event: str, pid: int | None = None, **detail: Any) -> SupervisionEvent:
        item = SupervisionEvent(worker, event, time.time(), pid, detail)
        self._recent.setdefault(worker, deque(maxlen=self._per_worker)).append(item)
        if self._writer is not None:
            self._writer.put(item)
        return item

    def recent(self, worker: str, limit: int = 50) -> list[SupervisionEvent]:
        return list(self._recent.get(worker, ()))[-limit:]

    async def start(self) -> None:
        if self._writer is not None:
            await self._writer.start()

    async def stop(self) -> None:
        if self._writer is not None:
            await self._writer.stop()

    async def _write(self, batch: list[SupervisionEvent]) -> None:
        assert self._pool is not None
        async with self._pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                query("insert_supervision_event"),
                [(e.worker, e.at, e.event, e.pid, Jsonb(e.detail)) for e in batch],
            )
