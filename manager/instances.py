"""The audit of worker instances: which process ran a worker, under which lease epoch and manager,
from when to when (`worker_instances`, sql/migrations/0015_work_claims.sql).

An instance is live while it can commit. The lease holder writes a row when it spawns a worker
(`started_at`: the spawn) and closes it when it reaps the process (`ended_at`). When another
manager took the lease first (the owner died, froze, or renewed too late), the instance stopped
being able to commit at that takeover: from `worker_leases.acquired_at` of the new epoch the fence
refuses every write of the old one. So the next owner, when it starts the worker, ends the rows of
earlier epochs that are still open or were reaped after its takeover at that moment, and keeps
what is known of the old process's reaping in `end_reason`. Ordered by `started_at`, the rows of
one worker must never overlap: that is what the fleet tests check over failovers.

Writes go through a queue and one background task, in order, so recording never makes a runner
wait on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from manager.runner import WorkerRunner
from manager.supervisor import Supervisor
from sql import query

log = logging.getLogger(__name__)
SQL = "claims.sql"


@dataclass(frozen=True)
class _Start:
    name: str
    epoch: int | None
    pid: int
    at: float


@dataclass(frozen=True)
class _End:
    name: str
    pid: int
    at: float
    reason: str


class InstanceAudit:
    """A lifecycle part: follows every runner's process and records its instances."""

    def __init__(self, pool: AsyncConnectionPool, supervisor: Supervisor, manager_id: str, host: str) -> None:
        self._pool = pool
        self._manager_id, self._host = manager_id, host
        self._open: dict[str, int] = {}  # worker -> pid of its recorded, still open instance
        self._rows: dict[tuple[str, int], int] = {}  # (worker, pid) -> worker_instances.id
        self._queue: asyncio.Queue[_Start | _End] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        for runner in supervisor.runners.values():
            runner.on_change.append(self._changed)

    def _changed(self, runner: WorkerRunner) -> None:
        process = runner.process
        pid = process.pid if process is not None and process.running else None
        recorded = self._open.get(runner.name)
        if recorded is not None and recorded != pid:
            del self._open[runner.name]
            self._queue.put_nowait(_End(runner.name, recorded, time.time(), runner.state.value))
        if pid is not None and recorded != pid:
            assert process is not None
            self._open[runner.name] = pid
            self._queue.put_nowait(_Start(runner.name, runner.lease_epoch, pid, process.started_wall))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever(), name="instance-audit")

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
        while True:
            record = await self._queue.get()
            try:
                # Until the database is back (a restart takes seconds): records stay in order, and a
                # lost end would read as an instance that never stopped.
                delay_s = 0.2
                while True:
                    try:
                        await self._write(record)
                        if isinstance(record, _End):
                            self._rows.pop((record.name, record.pid), None)
                        break
                    except psycopg.OperationalError as exc:
                        log.warning("instance audit waits for the database: %s", exc)
                        await asyncio.sleep(delay_s)
                        delay_s = min(2 * delay_s, 2.0)
            except Exception as exc:  # an audit row is not worth stopping supervision for
                log.warning("instance audit write failed: %s", exc)
            finally:
                self._queue.task_done()

    async def _write(self, record: _Start | _End) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            if isinstance(record, _Start):
                params: dict[str, Any] = {"name": record.name, "epoch": record.epoch}
                if record.epoch is not None:
                    await conn.execute(query("close_abandoned_instances", SQL), params)
                cur = await conn.execute(
                    query("instance_started", SQL),
                    {**params, "pid": record.pid, "manager_id": self._manager_id, "host": self._host, "at": record.at},
                )
                row = await cur.fetchone()
                assert row is not None
                self._rows[(record.name, record.pid)] = int(row[0])
            else:
                row_id = self._rows.get((record.name, record.pid))  # forgotten once written: a retry needs it
                if row_id is not None:
                    await conn.execute(
                        query("instance_ended", SQL), {"id": row_id, "at": record.at, "reason": record.reason}
                    )
