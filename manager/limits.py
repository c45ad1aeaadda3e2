"""Resource limits: a worker whose resident memory stays over its `max_rss_mb` is restarted
gracefully, as PM2's max_memory_restart does.

One sample over the limit may be a passing peak (a big batch being parsed); two consecutive
samples over it mean the worker holds on to it, so `MemoryLimits` asks the runner for a graceful
restart (SIGTERM, then the usual stop timeout). The runner records it as a `memory_restart` event
with the figure and counts it in `restartCount` but not in the crash budget; Healdec calls a
worker restarted more than `MEMORY_RESTARTS_DEGRADED` times in an hour `degraded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psutil

from manager.supervisor import Supervisor

log = logging.getLogger(__name__)

SAMPLES_OVER = 2  # consecutive samples over the limit before a restart
MB = 1024 * 1024


def rss_bytes(pid: int) -> int | None:
    """The process's resident memory plus its children's (a worker may fork helpers)."""
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return int(total)
    except psutil.Error:
        return None


def over_limit_figure(rss: int, max_rss_mb: float) -> str | None:
    """`rss 612 MB > max_rss_mb 512` when over the limit, else None."""
    if rss <= max_rss_mb * MB:
        return None
    return f"rss {rss / MB:.0f} MB > max_rss_mb {max_rss_mb:g}"


class MemoryLimits:
    """Samples the memory of every worker with a `max_rss_mb` every `interval_s`."""

    def __init__(self, supervisor: Supervisor, interval_s: float) -> None:
        self._supervisor = supervisor
        self._interval_s = interval_s
        self._over: dict[str, tuple[int, int]] = {}  # worker → (pid, consecutive samples over)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if any(r.spec.max_rss_mb for r in self._supervisor.runners.values()):
            self._task = asyncio.create_task(self._watch_forever(), name="memory-limits")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                self.check()
            except Exception as exc:  # a failed sample must not end the watch
                log.warning("memory sampling failed: %r", exc)

    def check(self) -> None:
        for name, runner in self._supervisor.runners.items():
            limit, pid = runner.spec.max_rss_mb, runner.pid
            rss = rss_bytes(pid) if limit and pid is not None else None
            figure = over_limit_figure(rss, limit) if rss is not None and limit else None
            if figure is None or pid is None:
                self._over.pop(name, None)
                continue
            seen_pid, count = self._over.get(name, (pid, 0))
            count = count + 1 if seen_pid == pid else 1
            self._over[name] = (pid, count)
            if count >= SAMPLES_OVER:
                self._over.pop(name, None)
                runner.restart_for_memory(figure)
