"""Supervision events (started, exited, restarted, backoff, failed, paused, resumed, killed as
hung): kept in memory for the API and written to Postgres in the background, so recording an
event never makes the supervisor wait on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from manager.logs import iso
from sql import query

log = logging.getLogger(__name__)


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
    """Records events in memory at once and in Postgres through a background writer task."""

    def __init__(self, pool: AsyncConnectionPool | None, per_worker: int = 200) -> None:
        self._pool = pool
        self._recent: dict[str, deque[SupervisionEvent]] = {}
        self._per_worker = per_worker
        self._queue: asyncio.Queue[SupervisionEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def record(self, worker: str, event: str, pid: int | None = None, **detail: Any) -> SupervisionEvent:
        item = SupervisionEvent(worker, event, time.time(), pid, detail)
        self._recent.setdefault(worker, deque(maxlen=self._per_worker)).append(item)
        if self._pool is not None:
            self._queue.put_nowait(item)
        return item

    def recent(self, worker: str, limit: int = 50) -> list[SupervisionEvent]:
        return list(self._recent.get(worker, ()))[-limit:]

    async def start(self) -> None:
        if self._pool is not None:
            self._task = asyncio.create_task(self._write_forever(), name="event-writer")

    async def stop(self) -> None:
        """Flush what is queued (briefly), then stop the writer."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=3)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _write_forever(self) -> None:
        assert self._pool is not None
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self._pool.connection() as conn, conn.cursor() as cur:
                    await cur.executemany(
                        query("insert_supervision_event"),
                        [(e.worker, e.at, e.event, e.pid, Jsonb(e.detail)) for e in batch],
                    )
            except Exception as exc:  # the DB being down must not stop supervision
                log.warning("could not store %d supervision event(s): %s", len(batch), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()
