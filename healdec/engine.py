"""Healdec's engine: gathers the facts (process state from the supervisor, CPU and memory from
psutil, heartbeats from Postgres), applies the rules, and kills workers the rules call hung.

Facts are refreshed by a periodic sweep; `status()` only reads memory, so the status endpoint
never waits on the database or a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import psutil
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from healdec.rules import Health, HealthInputs, error_rate, judge
from manager.config import Config
from manager.logs import iso
from manager.runner import WorkerRunner
from manager.states import WorkerState
from manager.supervisor import Supervisor
from sql import query

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
STATUS_MAX_AGE_S = 0.1  # ages and uptimes in a cached status reply are at most this old


@dataclass(frozen=True)
class ProcessSample:
    cpu_percent: float
    rss_bytes: int


def _scrubbed(runner: WorkerRunner, text: str | None) -> str | None:
    return runner.scrub(text) if text else text


class HealthEngine:
    def __init__(self, config: Config, supervisor: Supervisor, pool: AsyncConnectionPool) -> None:
        self._config = config
        self._supervisor = supervisor
        self._pool = pool
        self._interval_s = config.healdec.sweep_interval_ms / 1000
        self._heartbeats: dict[str, dict[str, Any]] = {}
        self._heartbeats_at = time.monotonic()  # when the ages in _heartbeats were measured
        self._processes: dict[int, psutil.Process] = {}
        self._samples: dict[str, ProcessSample] = {}
        self._sampled_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._last_prune = float("-inf")  # prune on the first sweep, then hourly
        self.last_sweep_error: str | None = None
        self._last_sweep_failure = float("-inf")
        self._status_json: bytes | None = None
        self._status_at = 0.0
        for runner in supervisor.runners.values():
            runner.on_change.append(self._forget_status)

    def _forget_status(self, _runner: WorkerRunner | None = None) -> None:
        self._status_json = None

    async def start(self) -> None:
        await self.sweep()
        self._task = asyncio.create_task(self._sweep_forever(), name="healdec-sweep")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.sweep()
            except Exception as exc:  # a failed sweep keeps the last facts; report, go on
                self.last_sweep_error = str(exc)
                self._last_sweep_failure = time.monotonic()
                log.warning("healdec sweep failed: %s", exc)

    async def sweep(self) -> None:
        """Refresh every fact, then act on hung workers."""
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("heartbeat_snapshot"))
            rows = await cur.fetchall()
            if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                keep_s = self._config.healdec.events_retention_days * 86400
                await cur.execute(query("prune_history"), {"keep_s": keep_s})
                self._last_prune = time.monotonic()
        self._heartbeats = {row["worker_name"]: row for row in rows}
        self._heartbeats_at = time.monotonic()
        self._forget_status()
        self.last_sweep_error = None
        blind_for = time.monotonic() - self._last_sweep_failure
        for runner in self._supervisor.runners.values():
            health = self.health(runner)
            # While the database was unreachable, workers could not heartbeat either: give them
            # a full timeout after it returns before calling anyone hung.
            if health.hung and blind_for > self._config.heartbeat_timeout_s(runner.name):
                runner.kill_hung(health.reasons[0])

    def _sample_if_due(self) -> None:
        """CPU and RSS are sampled when someone asks for status, at most once per sweep interval:
        a fleet at rest with nobody watching costs no /proc reads at all."""
        now = time.monotonic()
        if now - self._sampled_at >= self._interval_s:
            self._sampled_at = now
            self._sample_processes()

    def _sample_processes(self) -> None:
        live: dict[int, psutil.Process] = {}
        samples: dict[str, ProcessSample] = {}
        for runner in self._supervisor.runners.values():
            pid = runner.pid
            if pid is None:
                continue
            try:
                proc = self._processes.get(pid) or psutil.Process(pid)
                with proc.oneshot():
                    samples[runner.name] = ProcessSample(proc.cpu_percent(None), proc.memory_info().rss)
                live[pid] = proc
            except psutil.Error:
                continue
        self._processes, self._samples = live, samples

    # ---- judgement ----------------------------------------------------------------------------

    def _heartbeat_of(self, runner: WorkerRunner) -> dict[str, Any] | None:
        """The heartbeat row, if it was written by the worker's current process."""
        row = self._heartbeats.get(runner.name)
        if row is None or runner.pid is None or row["pid"] != runner.pid:
            return None
        return row

    def inputs(self, runner: WorkerRunner) -> HealthInputs:
        spec = runner.spec
        row = self._heartbeat_of(runner)
        since_sweep = time.monotonic() - self._heartbeats_at
        stats = self._heartbeats.get(runner.name) or {}

        def aged(value: float | None) -> float | None:
            return None if value is None else value + since_sweep

        return HealthInputs(
            state=runner.state.value,
            uses_heartbeat=spec.heartbeat,
            heartbeat_timeout_s=self._config.heartbeat_timeout_s(runner.name),
            stale_after_s=spec.effective_stale_after_s(),
            uptime_s=runner.uptime_s(),
            heartbeat_age_s=aged(row["heartbeat_age_s"]) if row else None,
            phase=row["phase"] if row else None,
            last_cycle_ok=row["last_cycle_ok"] if row else None,
            last_error=row["last_error"] if row else None,
            success_age_s=aged(stats.get("success_age_s")),
            error_rate=error_rate(stats.get("failed_last_hour", 0), stats.get("cycles_last_hour", 0)),
            error_rate_threshold=self._config.healdec.error_rate_degraded,
            rate_limited_for_s=(row["rate_limited_for_s"] - since_sweep)
            if row and row["rate_limited_for_s"] is not None
            else None,
            flag_name=runner.flag_name,
            crash_note=runner.crash_note,
            memory_restarts_last_hour=runner.memory_restarts_last_hour(),
            max_rss_mb=spec.max_rss_mb,
        )

    def health(self, runner: WorkerRunner) -> Health:
        return judge(self.inputs(runner))

    # ---- status, from memory ------------------------------------------------------------------

    def worker_status(self, runner: WorkerRunner) -> dict[str, Any]:
        self._sample_if_due()
        inputs = self.inputs(runner)
        health = judge(inputs)
        row = self._heartbeats.get(runner.name) or {}
        sample = self._samples.get(runner.name)
        uptime = runner.uptime_s()
        exit_ = runner.last_exit
        return {
            "name": runner.name,
            "healthy": health.healthy,
            "enabled": runner.spec.enabled and runner.flag_enabled,
            "state": runner.state.value,
            "pid": runner.pid,
            "lastRun": iso(row.get("last_run")),
            "lastSuccess": iso(row.get("last_success")),
            "lastError": _scrubbed(runner, row.get("last_error") if runner.spec.heartbeat else runner.crash_note),
            "errorRate": error_rate(row.get("failed_last_hour", 0), row.get("cycles_last_hour", 0)),
            "restartCount": runner.restart_count,
            "uptimeSeconds": round(uptime, 3) if uptime is not None else None,
            "cpuPercent": round(sample.cpu_percent, 2) if sample else None,
            "rssBytes": sample.rss_bytes if sample else None,
            "itemsProcessed": int(row.get("items_processed") or 0),
            "nextRun": _next_run(runner, row),
            "verdict": health.verdict.value,
            "reasons": [runner.scrub(reason) for reason in health.reasons],
            # beyond the documented minimum:
            "configEnabled": runner.spec.enabled,
            "flag": runner.flag_name,
            "flagEnabled": runner.flag_enabled,
            "heartbeat": runner.spec.heartbeat,
            "heartbeatAgeSeconds": round(inputs.heartbeat_age_s, 3) if inputs.heartbeat_age_s is not None else None,
            "stateSince": iso(runner.state_since),
            "cycles": int(row.get("cycles_total") or 0),
            "cyclesLastHour": int(row.get("cycles_last_hour") or 0),
            "failedCyclesLastHour": int(row.get("failed_last_hour") or 0),
            "lastExit": {"code": exit_.code, "signal": exit_.signal, "text": exit_.describe()} if exit_ else None,
            "kind": "module" if runner.spec.module else "command",
            "description": runner.spec.description,
        }

    def heartbeat_detail(self, name: str) -> dict[str, Any] | None:
        """What the worker last reported about itself (e.g. its effective config)."""
        row = self._heartbeats.get(name)
        return row["detail"] if row else None

    def status(self) -> list[dict[str, Any]]:
        return [self.worker_status(r) for r in self._supervisor.runners.values()]

    def status_json(self) -> bytes:
        """The status list as JSON, rebuilt on any state change or sweep and at most every 0.1 s
        otherwise, so a busy dashboard costs the manager almost nothing."""
        now = time.monotonic()
        if self._status_json is None or now - self._status_at > STATUS_MAX_AGE_S:
            self._status_json = json.dumps(self.status(), separators=(",", ":")).encode()
            self._status_at = now
        return self._status_json

    def running_count(self) -> int:
        return sum(1 for r in self._supervisor.runners.values() if r.state is WorkerState.RUNNING)


def _next_run(runner: WorkerRunner, row: dict[str, Any]) -> str | None:
    """When the worker's next cycle starts (it reports it with the heartbeat while it waits)."""
    if runner.state.value != "running":
        return None
    detail = row.get("detail")
    value = detail.get("next_run") if isinstance(detail, dict) else None
    return value if isinstance(value, str) else None
