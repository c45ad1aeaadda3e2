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

Writes go through one background writer (manager/queued_writer.py), in order and retried until the
database is back, so recording never makes a runner wait on the database and a lost end never reads
as an instance that never stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from manager.queued_writer import QueuedWriter
from manager.runner import WorkerRunner
from manager.supervisor import Supervisor
from sql import query

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
        self._writer: QueuedWriter[_Start | _End] = QueuedWriter("instance-audit", self._write_batch)
        for runner in supervisor.runners.values():
            runner.on_change.append(self._changed)

    def _changed(self, runner: WorkerRunner) -> None:
        process = runner.process
        pid = process.pid if process is not None and process.running else None
        recorded = self._open.get(runner.name)
        if recorded is not None and recorded != pid:
            del self._open[runner.name]
            self._writer.put(_End(runner.name, recorded, time.time(), runner.state.value))
        if pid is not None and recorded != pid:
            assert process is not None
            self._open[runner.name] = pid
            self._writer.put(_Start(runner.name, runner.lease_epoch, pid, process.started_wall))

    async def start(self) -> None:
        await self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()

    async def _write_batch(self, batch: list[_Start | _End]) -> None:
        for record in batch:  # one transaction each: a retried batch rewrites only idempotent records
            await self._write(record)
            if isinstance(record, _End):
                self._rows.pop((record.name, record.pid), None)

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
