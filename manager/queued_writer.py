"""One background writer for records the supervisor keeps in Postgres without waiting on it.

Supervision events and the instance audit are recorded from the runners' hot path: recording must
never make a runner wait on the database, and a database restart (seconds) must not lose what was
recorded meanwhile. So records go into a queue, in order, and one task writes them in batches. While
the database cannot be reached the batch is retried with backoff, in order, until it is back; any
other error (a bad record) is logged and the batch dropped, since retrying it could never succeed.
If the database stays away long enough for `max_pending` records to pile up, the oldest are dropped
with one warning rather than growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import psycopg

log = logging.getLogger(__name__)
Record = TypeVar("Record")


class QueuedWriter(Generic[Record]):
    """Writes records in order through `write(batch)` in a background task (a lifecycle part)."""

    def __init__(
        self,
        name: str,
        write: Callable[[list[Record]], Awaitable[None]],
        *,
        max_batch: int = 500,
        max_pending: int = 50_000,
        max_delay_s: float = 2.0,
    ) -> None:
        self._name, self._write = name, write
        self._max_batch, self._max_pending, self._max_delay_s = max_batch, max_pending, max_delay_s
        self._pending: deque[tuple[int, Record]] = deque()  # (sequence number, record)
        self._next_seq = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._dropped = 0
        self._task: asyncio.Task[None] | None = None

    def put(self, record: Record) -> None:
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self._dropped += 1
        self._pending.append((self._next_seq, record))
        self._next_seq += 1
        self._idle.clear()
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever(), name=self._name)

    async def stop(self, flush_s: float = 3.0) -> None:
        """Flush what is queued (briefly: the database may be gone), then stop the writer."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_s):
                await self._idle.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._pending:
            log.warning("%s: %d record(s) not written at shutdown", self._name, len(self._pending))

    async def _write_forever(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            taken = [self._pending[i] for i in range(min(self._max_batch, len(self._pending)))]
            await self._write_until_done([record for _, record in taken])
            last = taken[-1][0]  # forget what was written (some may have been dropped meanwhile)
            while self._pending and self._pending[0][0] <= last:
                self._pending.popleft()
            if self._dropped:
                log.warning("%s: dropped %d oldest record(s) while the database was away", self._name, self._dropped)
                self._dropped = 0

    async def _write_until_done(self, batch: list[Record]) -> None:
        delay_s = 0.2
        while True:
            try:
                await self._write(batch)
                return
            except psycopg.OperationalError as exc:  # the database is away: keep the order, wait for it
                log.warning("%s waits for the database (%d queued): %s", self._name, len(self._pending), exc)
                await asyncio.sleep(delay_s)
                delay_s = min(2 * delay_s, self._max_delay_s)
            except Exception as exc:  # a record the database refuses: retrying cannot help
                log.warning("%s: could not write %d record(s): %s", self._name, len(batch), exc)
                return
