"""Healdec's engine: gathers the facts (process state from the supervisor, CPU and memory from
psutil, heartbeats from Postgres), applies the rules, and kills workers the rules call hung.

Facts are refreshed by a sweep; `status()` only reads memory, so the status endpoint never waits
on the database or a worker. The sweep is event-driven: it runs when a heartbeat or a cycle was
written (NOTIFY `worker_heartbeats`, sql/migrations/0017), when a worker changes state, when a
running worker could have passed its heartbeat timeout (so a hung worker is killed as soon as
before), and every `REFRESH_S` at rest — at most once per `sweep_interval_ms`. While the
announcements cannot be heard (listener down, database unreachable) it polls every interval.
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

from healdec.rules import Health, HealthInputs, LagSamples, Verdict, error_rate, judge, lag_growth, record_lag
from manager.config import Config
from manager.listen import Listener
from manager.logs import iso
from manager.runner import WorkerRunner
from manager.states import WorkerState
from manager.supervisor import Supervisor
from sql import query

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
REFRESH_S = 30.0  # at rest, with nothing announced, the facts are re-read this often (hourly windows move)
HUNG_MARGIN_S = 0.01  # the deadline sweep comes just after the timeout, so the age is past it
STATUS_MAX_AGE_S = 0.1  # ages and uptimes in a cached status reply are at most this old


@dataclass(frozen=True)
class ProcessSample:
    cpu_percent: float
    rss_bytes: int


def _scrubbed(runner: WorkerRunner, text: str | None) -> str | None:
    return runner.scrub(text) if text else text


def _cycle_ms(stats: dict[str, Any]) -> dict[str, float | None]:
    """Cycle durations over the last hour, in milliseconds (None before the first cycle)."""
    return {k: None if stats.get(f"{k}_ms") is None else round(stats[f"{k}_ms"], 1) for k in ("last", "p50", "p95")}


def _items_per_second(stats: dict[str, Any]) -> float | None:
    """Items done per second spent in cycles over the last hour: the worker's speed while it works."""
    busy = stats.get("busy_s") or 0.0
    return round((stats.get("items_done") or 0) / busy, 2) if busy > 0 else None


class HealthEngine:
    def __init__(self, config: Config, supervisor: Supervisor, pool: AsyncConnectionPool) -> None:
        self._config = config
        self._supervisor = supervisor
        self._pool = pool
        self._interval_s = config.healdec.sweep_interval_ms / 1000
        self._heartbeats: dict[str, dict[str, Any]] = {}
        self._heartbeats_at = time.monotonic()  # when the ages in _heartbeats were measured
        self._cycle_stats: dict[str, dict[str, Any]] = {}  # last hour's items and cycle times
        self._lag_samples: dict[str, LagSamples] = {}
        self._announced: dict[str, str] = {}  # the blocked reason last logged per worker
        self._processes: dict[int, psutil.Process] = {}
        self._samples: dict[int, ProcessSample] = {}  # by pid: a respawned worker is sampled afresh
        self._sampled_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._last_prune = float("-inf")  # prune on the first sweep, then hourly
        self.last_sweep_error: str | None = None
        self._last_sweep_failure = float("-inf")
        self._status_json: bytes | None = None
        self._status_at = 0.0
        self._due = asyncio.Event()  # something may have changed: sweep (at most once per interval)
        url = pool.conninfo if isinstance(pool.conninfo, str) else None
        self._listener = (
            None
            if url is None
            else Listener(
                url,
                ("worker_heartbeats",),
                self._on_heartbeats,
                app_name="healdec",
                what="heartbeat listener",
                consequence=f"Healdec reads heartbeats every {self._interval_s:g} s until it reconnects",
            )
        )
        for runner in supervisor.runners.values():
            runner.on_change.append(self._forget_status)
            runner.on_change.append(lambda _runner: self._due.set())

    def _forget_status(self, _runner: WorkerRunner | None = None) -> None:
        self._status_json = None

    async def start(self) -> None:
        """The first sweep runs in the sweep task, not here: at boot no worker runs yet, and the
        workers' spawn (the next parts to start) need not wait for its queries and pruning."""
        if self._listener is not None:
            await self._listener.start()
        self._task = asyncio.create_task(self._sweep_forever(), name="healdec-sweep")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await self._listener.stop()

    async def _on_heartbeats(self, _conn: Any, _notices: list[Any]) -> None:
        self._due.set()  # also right after a (re)connect: what was written meanwhile is read

    async def _until_due(self) -> None:
        """Sleep until a sweep has something to do (see the module docstring)."""
        if self._listener is None or not self._listener.connected or self.last_sweep_error is not None:
            return  # cannot hear the announcements: poll
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._next_deadline_s()):  # not wait_for: see manager/listen.py
                await self._due.wait()
        self._due.clear()

    def _next_deadline_s(self) -> float:
        """Seconds until a running worker that stays silent would be past its heartbeat timeout."""
        soonest = REFRESH_S
        since_sweep = time.monotonic() - self._heartbeats_at
        for runner in self._supervisor.runners.values():
            if runner.state is not WorkerState.RUNNING or not runner.spec.heartbeat:
                continue
            row = self._heartbeat_of(runner)
            silent_for = row["heartbeat_age_s"] + since_sweep if row else (runner.uptime_s() or 0.0)
            soonest = min(soonest, self._config.heartbeat_timeout_s(runner.name) - silent_for + HUNG_MARGIN_S)
        return max(soonest, 0.0)

    async def _sweep_forever(self) -> None:
        first = True
        while True:
            if not first:
                await asyncio.sleep(self._interval_s)  # at most one sweep per interval
                await self._until_due()
            first = False
            try:
                await self.sweep()
            except Exception as exc:  # a failed sweep keeps the last facts; report, go on
                self.last_sweep_error = str(exc)
                self._last_sweep_failure = time.monotonic()
                log.warning("healdec sweep failed: %s", exc)

    async def sweep(self) -> None:
        """Refresh every fact, then act on hung workers."""
        # A bounded wait: while the database is away the verdicts say so within seconds.
        wait_s = max(2.0, 2 * self._interval_s)
        async with self._pool.connection(timeout=wait_s) as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("heartbeat_snapshot"))
            rows = await cur.fetchall()
            await cur.execute(query("cycle_stats"))
            stats = await cur.fetchall()
            if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                keep_s = self._config.healdec.events_retention_days * 86400
                await cur.execute(query("prune_history"), {"keep_s": keep_s})
                self._last_prune = time.monotonic()
        self._heartbeats = {row["worker_name"]: row for row in rows}
        self._cycle_stats = {row["worker_name"]: row for row in stats}
        self._heartbeats_at = time.monotonic()
        self._track_lag()
        self._announce_blocked()
        self._forget_status()
        self.last_sweep_error = None
        blind_for = time.monotonic() - self._last_sweep_failure
        for runner in self._supervisor.runners.values():
            health = self.health(runner)
            # While the database was unreachable, workers could not heartbeat either: give them
            # a full timeout after it returns before calling anyone hung.
            if health.hung and blind_for > self._config.heartbeat_timeout_s(runner.name):
                runner.kill_hung(health.reasons[0])

    def _track_lag(self) -> None:
        window = self._config.healdec.lag_degraded_after_s
        for name in self._supervisor.runners:
            lag = (self._heartbeats.get(name) or {}).get("lag")
            self._lag_samples[name] = record_lag(self._lag_samples.get(name, []), self._heartbeats_at, lag, window)

    def _announce_blocked(self) -> None:
        """One log line per worker that waits (and each time its reason changes), naming what to set."""
        for runner in self._supervisor.runners.values():
            row = self._heartbeat_of(runner)
            reason = row.get("blocked") if row and row["phase"] == "waiting" else None
            if reason and self._announced.get(runner.name) != reason:
                hint = " (`make devnet` runs the whole fleet offline)" if reason.startswith("not configured") else ""
                log.warning("%s waits: %s%s", runner.name, runner.scrub(reason), hint)
            self._announced[runner.name] = reason or ""

    def _sample_of(self, pid: int | None) -> ProcessSample | None:
        """CPU and RSS are sampled when someone asks for status, at most once per sweep interval:
        a fleet at rest with nobody watching costs no /proc reads at all. A pid not seen at the
        last sampling (a worker started or respawned since) is sampled at once."""
        if pid is None:
            return None
        now = time.monotonic()
        if now - self._sampled_at >= self._interval_s:
            self._sampled_at = now
            self._sample_processes()
        if pid not in self._samples:
            self._sample_one(pid, self._processes, self._samples)
        return self._samples.get(pid)

    def _sample_processes(self) -> None:
        live: dict[int, psutil.Process] = {}
        samples: dict[int, ProcessSample] = {}
        for runner in self._supervisor.runners.values():
            if runner.pid is not None:
                self._sample_one(runner.pid, live, samples)
        self._processes, self._samples = live, samples

    def _sample_one(self, pid: int, live: dict[int, psutil.Process], samples: dict[int, ProcessSample]) -> None:
        try:
            proc = self._processes.get(pid) or psutil.Process(pid)
            with proc.oneshot():
                samples[pid] = ProcessSample(proc.cpu_percent(None), proc.memory_info().rss)
            live[pid] = proc
        except psutil.Error:
            pass

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
        items = self._cycle_stats.get(runner.name) or {}
        window = self._config.healdec.lag_degraded_after_s

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
            error_rate=error_rate(items.get("items_failed") or 0, items.get("items_attempted") or 0),
            error_rate_threshold=self._config.healdec.error_rate_degraded,
            rate_limited_for_s=(row["rate_limited_for_s"] - since_sweep)
            if row and row["rate_limited_for_s"] is not None
            else None,
            flag_name=runner.flag_name,
            crash_note=runner.crash_note,
            blocked=row.get("blocked") if row else None,
            lag_growth=lag_growth(self._lag_samples.get(runner.name, []), time.monotonic(), window),
            lag_unit=stats.get("lag_unit"),
            lag_window_s=window,
            settings_error=(row.get("detail") or {}).get("settingsError") if row else None,
            memory_restarts_last_hour=runner.memory_restarts_last_hour(),
            max_rss_mb=spec.max_rss_mb,
        )

    def health(self, runner: WorkerRunner) -> Health:
        return self._judge(runner, self.inputs(runner))

    def _judge(self, runner: WorkerRunner, inputs: HealthInputs) -> Health:
        """Healdec's rules, unless the heartbeats cannot be read: then the verdict says so
        (instead of calling a worker hung or healthy on facts that stopped moving)."""
        if self.last_sweep_error is None or not runner.spec.heartbeat or runner.state is not WorkerState.RUNNING:
            return judge(inputs)
        blind_s = time.monotonic() - self._heartbeats_at
        why = f"database unreachable for {blind_s:.0f} s: heartbeats unknown ({self.last_sweep_error})"
        return Health(False, Verdict.DEGRADED, [why])

    # ---- status, from memory ------------------------------------------------------------------

    def worker_status(self, runner: WorkerRunner, *, sample: bool = True) -> dict[str, Any]:
        """`sample=False` reports the CPU and RSS last sampled, without reading /proc (for the lease
        keeper's periodic publication, which must not keep psutil busy while nobody looks)."""
        inputs = self.inputs(runner)
        health = self._judge(runner, inputs)
        row = self._heartbeats.get(runner.name) or {}
        cycles = self._cycle_stats.get(runner.name) or {}
        measured = self._sample_of(runner.pid) if sample else self._samples.get(runner.pid or -1)
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
            "errorRate": inputs.error_rate,
            "cycleErrorRate": error_rate(row.get("failed_last_hour", 0), row.get("cycles_last_hour", 0)),
            "cycleMs": _cycle_ms(cycles),
            "itemsPerSecond": _items_per_second(cycles),
            "lag": row.get("lag"),
            "lagUnit": row.get("lag_unit"),
            "restartCount": runner.restart_count,
            "uptimeSeconds": round(uptime, 3) if uptime is not None else None,
            "cpuPercent": round(measured.cpu_percent, 2) if measured else None,
            "rssBytes": measured.rss_bytes if measured else None,
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
