"""The chaos run shared by `tests/chaos/` (a short one) and `make chaos` (ten minutes by default).

One set of devnet stand-ins feeds two managers running the seven standard workers side by side:
a baseline left alone, on a database of the shared test server, and the chaos fleet, on a Postgres
of its own. Every `kill_every_s` a random running worker of the chaos fleet is SIGKILLed, and its
Postgres is stopped and started again (in the middle, or `pg_restarts` times evenly spread). Then
the run waits for every worker to be healthy again, then rolls the chaos fleet over to a new
manager (started beside the old one, which is then SIGTERMed: a rolling deploy), waits for both
databases to settle, and compares their data tables row for row (`tables.py`); it checks in the
instance audit that no two instances of a worker ever ran at once, and finally stops everything
and checks that no process it saw is left.

`python -m tests.chaos.chaos` (`CHAOS_SECONDS`, default 600; `CHAOS_PG_RESTARTS`, default one per
five minutes, at least one) prints the figures.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.stats import percentile
from tests.chaos.tables import PROJECTIONS, Snapshot, differences, row_count, snapshot
from tests.support.manager import ROOT, ManagerHandle, pid_alive
from tests.support.own_postgres import OwnPostgres, own_postgres
from tests.support.postgres import fresh_database, postgres_server
from tests.support.waiting import wait_for

# Restarts are what this run is about: a budget would fail a worker after a few kills. Quick
# restarts (min_uptime_s is rarely reached between kills) back off 0.1 s doubling to 1 s.
CHAOS_HEALDEC = {
    "max_restarts": 100_000,
    "restart_window_s": 60,
    "min_uptime_s": 1,
    "restart_delay_ms": 100,
    "max_restart_delay_ms": 1000,
    "heartbeat_timeout_s": 30,
}
KILL_EVERY_S = 2.0
PG_DOWN_S = 3.0


@dataclass
class Figures:
    seconds: float
    kills: int = 0
    worker_restarts: int = 0  # restartCount: crash restarts (a kill met by a lost lease restarts as a new start)
    new_processes: int = 0  # worker processes seen replacing an earlier one, whatever the path
    pg_restarts: list[float] = field(default_factory=list)  # seconds unreachable, each
    recoveries: list[float] = field(default_factory=list)  # kill → healthy again, seconds
    settled_after_s: float = 0.0
    handover_s: float | None = None  # rolling deploy: SIGTERM of the old manager → every worker healthy on the new
    overlaps: list[str] = field(default_factory=list)  # two instances of a worker live at once (worker_instances)
    rows_compared: int = 0
    differences: list[str] = field(default_factory=list)
    unhealthy: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rec = self.recoveries
        return [
            f"chaos: {self.seconds:.0f} s, a worker SIGKILLed every {KILL_EVERY_S:g} s",
            f"kills: {self.kills}; worker restarts: {self.worker_restarts}; new processes: {self.new_processes}",
            f"postgres restarts: {len(self.pg_restarts)} (down {', '.join(f'{d:.1f}' for d in self.pg_restarts)} s)",
            f"recovery (kill to healthy again): n={len(rec)} p50 {percentile(rec, 50):.2f} s,"
            f" p99 {percentile(rec, 99):.2f} s, max {max(rec, default=float('nan')):.2f} s",
            f"rolling deploy: every worker healthy on the new manager {self.handover_s or float('nan'):.2f} s"
            f" after the old one's SIGTERM; overlapping instances: {len(self.overlaps)}",
            *[f"  {o}" for o in self.overlaps],
            f"tables settled {self.settled_after_s:.1f} s after the chaos;"
            f" rows compared: {self.rows_compared} in {len(PROJECTIONS)} tables;"
            f" differences: {len(self.differences)}",
            *[f"  {d}" for d in self.differences],
            f"unhealthy at the end: {self.unhealthy or 'none'}; processes left behind: {self.left_behind or 'none'}",
        ]


# The short run's share of the stand-ins' data: one small subreddit, three fids and no follow
# expansion, so both fleets sync it in seconds (the long run takes all of it).
SMALL = {
    "reddit": {"subreddits": ["ethdev"]},
    "farcaster": {"follow_expansion_limit": 0},
}


def fleet_workers(worker_settings: dict[str, dict[str, Any]], small: bool = False) -> dict[str, Any]:
    """The shipped config's seven workers, pointed at the stand-ins as `--devnet` does."""
    workers: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text())["workers"]
    for name, overrides in worker_settings.items():
        workers[name] = {**workers[name], **overrides, "enabled": True, **(SMALL.get(name, {}) if small else {})}
    if small:
        workers["farcaster"]["fids"] = workers["farcaster"]["fids"][:3]
    return workers


class ProcessWatch:
    """Every pid the run has seen (managers' families, stand-ins, the chaos Postgres), so the end
    can tell whether any outlived it."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def add_family(self, pid: int) -> None:
        self.seen.add(pid)
        with contextlib.suppress(psutil.Error):
            self.seen.update(p.pid for p in psutil.Process(pid).children(recursive=True))

    def survivors(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(pid_alive(p) for p in self.seen):
            time.sleep(0.05)
        out = []
        for pid in sorted(p for p in self.seen if pid_alive(p)):
            with contextlib.suppress(psutil.Error):
                out.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:100]}")
        return out


class Recoveries:
    """Kill times per worker, closed when the worker is healthy again under a new pid. A worker
    killed again before it recovered keeps its first kill time: its recovery spans both."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[float, int]] = {}
        self.times: list[float] = []

    def killed(self, name: str, pid: int, at: float) -> None:
        first = self.pending.get(name, (at, pid))[0]
        self.pending[name] = (first, pid)

    def observe(self, status: list[dict[str, Any]], now: float) -> None:
        for w in status:
            kill = self.pending.get(w["name"])
            if kill and w["healthy"] and w["pid"] and w["pid"] != kill[1]:
                self.times.append(now - kill[0])
                del self.pending[w["name"]]


def _all_healthy(handle: ManagerHandle) -> list[dict[str, Any]] | None:
    status = handle.status()
    return status if all(w["healthy"] and w["state"] == "running" for w in status) else None


def _unhealthy(handle: ManagerHandle) -> list[str]:
    return [f"{w['name']} {w['state']} {w['verdict']} {w['reasons']}" for w in handle.status() if not w["healthy"]]


def wreak(
    chaos: ManagerHandle,
    pg: OwnPostgres,
    seconds: float,
    pg_restarts: int,
    watch: ProcessWatch,
    rng: random.Random,
    say: Callable[[str], None],
) -> Figures:
    """Kill a random running worker every KILL_EVERY_S for `seconds`, restart Postgres
    `pg_restarts` times along the way, then wait for every worker to be healthy again."""
    assert chaos.proc is not None
    figures = Figures(seconds)
    recoveries = Recoveries()
    start = time.monotonic()
    end = start + seconds
    restarts_at = [start + seconds * (i + 1) / (pg_restarts + 1) for i in range(pg_restarts)]
    restarter: threading.Thread | None = None
    next_kill = start + KILL_EVERY_S
    next_watch = start
    pids: dict[str, set[int]] = {}  # every worker process seen running, per worker

    def seen(status: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for w in status:
            if w["pid"]:
                pids.setdefault(w["name"], set()).add(w["pid"])
        return status

    while (now := time.monotonic()) < end:
        status = seen(chaos.status())
        recoveries.observe(status, now)
        if now >= next_watch:
            watch.add_family(chaos.proc.pid)
            with contextlib.suppress(OSError, ValueError):  # no postmaster.pid while it is down
                watch.add_family(pg.postmaster_pid())
            next_watch = now + 0.5
        if now >= next_kill:
            next_kill += KILL_EVERY_S
            running = [w for w in status if w["state"] == "running" and w["pid"]]
            if running:
                victim = rng.choice(running)
                with contextlib.suppress(ProcessLookupError):  # it died by itself a moment ago
                    os.kill(victim["pid"], signal.SIGKILL)
                    figures.kills += 1
                    recoveries.killed(victim["name"], victim["pid"], now)
        if restarts_at and now >= restarts_at[0] and not (restarter and restarter.is_alive()):
            restarts_at.pop(0)
            say(f"chaos: restarting Postgres at {now - start:.0f} s")
            restarter = threading.Thread(target=lambda: figures.pg_restarts.append(pg.restart(PG_DOWN_S)))
            restarter.start()
        time.sleep(0.1)
    if restarter:
        restarter.join()
    say(f"chaos: {figures.kills} kills; waiting for every worker to be healthy again")

    def recovered() -> list[dict[str, Any]] | None:
        status = seen(chaos.status())
        recoveries.observe(status, time.monotonic())
        return status if not recoveries.pending and _all_healthy(chaos) else None

    with contextlib.suppress(AssertionError):
        wait_for(recovered, 120, 0.1, "every worker healthy again")
    watch.add_family(chaos.proc.pid)
    figures.unhealthy = _unhealthy(chaos) + [f"{name} not recovered since its kill" for name in recoveries.pending]
    figures.recoveries = recoveries.times
    figures.worker_restarts = sum(w["restartCount"] for w in seen(chaos.status()))
    figures.new_processes = sum(len(p) - 1 for p in pids.values())
    return figures


OVERLAPS = """
SELECT a.worker_name, a.pid, a.manager_id, b.pid, b.manager_id
FROM worker_instances a JOIN worker_instances b
  ON a.worker_name = b.worker_name AND a.id < b.id
 AND a.started_at < coalesce(b.ended_at, 'infinity') AND b.started_at < coalesce(a.ended_at, 'infinity')
"""


def overlapping_instances(url: str) -> list[str]:
    """Pairs of instances of one worker that were live at the same time, from the audit."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(OVERLAPS).fetchall()
    return [f"{name}: pid {p1} ({m1}) and pid {p2} ({m2})" for name, p1, m1, p2, m2 in rows]


def roll_over(old: ManagerHandle, successor: ManagerHandle, say: Callable[[str], None]) -> float:
    """A rolling deploy: with the successor up beside it, SIGTERM the old manager; returns the
    seconds until the successor runs every worker, healthy."""
    say("chaos: rolling deploy: SIGTERM to the old manager")
    started = time.monotonic()
    old.terminate()
    wait_for(lambda: _all_healthy(successor), 90, 0.05, "every worker healthy on the new manager")
    return time.monotonic() - started


def settle(baseline_url: str, chaos_url: str, timeout: float) -> tuple[Snapshot, Snapshot, float]:
    """Wait until both databases hold the same rows and neither changed since the last look:
    both fleets have synced everything the stand-ins hold. Returns the last snapshots."""
    started = time.monotonic()
    last: tuple[Snapshot, Snapshot] | None = None
    while True:
        now = (snapshot(baseline_url), snapshot(chaos_url))
        if now[0] == now[1] and now == last:
            return now[0], now[1], time.monotonic() - started
        if time.monotonic() - started > timeout:
            return now[0], now[1], time.monotonic() - started
        last = now
        time.sleep(2)


@contextlib.contextmanager
def _manager(workdir: Path, url: str, workers: dict[str, Any], env: dict[str, str]) -> Iterator[ManagerHandle]:
    workdir.mkdir(parents=True, exist_ok=True)
    handle = ManagerHandle(workdir, url, workers, healdec=CHAOS_HEALDEC, env=env, new_session=True)
    try:
        yield handle.start(90)
    finally:
        handle.close()


def run(
    workdir: Path,
    baseline_url: str,
    seconds: float,
    pg_restarts: int = 1,
    settle_timeout: float = 180,
    small: bool = False,
    seed: int = 12,
    say: Callable[[str], None] = print,
) -> Figures:
    """The whole run; see the module's docstring. Raises only if something cannot even start."""
    from devnet.stack import start_devnet

    watch = ProcessWatch()
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(own_postgres("wm-chaos-pg-"))
        watch.add_family(pg.postmaster_pid())
        before = {p.pid for p in psutil.Process().children()}
        devnet = start_devnet(say)
        stack.callback(devnet.stop)
        for child in psutil.Process().children():  # the stand-ins are this process's children
            if child.pid not in before:
                watch.add_family(child.pid)
        workers = fleet_workers(devnet.worker_settings, small)
        chaos_url = stack.enter_context(fresh_database(pg.url))
        baseline = stack.enter_context(_manager(workdir / "baseline", baseline_url, workers, devnet.env))
        chaos = stack.enter_context(_manager(workdir / "chaos", chaos_url, workers, devnet.env))
        for handle in (baseline, chaos):
            assert handle.proc is not None
            watch.add_family(handle.proc.pid)
        try:
            wait_for(lambda: _all_healthy(baseline) and _all_healthy(chaos), 90, 0.2, "both fleets healthy")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: baseline {_unhealthy(baseline)}, chaos {_unhealthy(chaos)}") from None
        say("chaos: both fleets healthy; the chaos begins")
        figures = wreak(chaos, pg, seconds, pg_restarts, watch, random.Random(seed), say)
        successor = stack.enter_context(_manager(workdir / "successor", chaos_url, workers, devnet.env))
        assert successor.proc is not None
        watch.add_family(successor.proc.pid)
        try:
            figures.handover_s = roll_over(chaos, successor, say)
        except AssertionError:
            figures.unhealthy += [f"after the rolling deploy: {u}" for u in _unhealthy(successor)]
        watch.add_family(successor.proc.pid)
        assert baseline.proc is not None
        watch.add_family(baseline.proc.pid)
        figures.unhealthy += [f"baseline {u}" for u in _unhealthy(baseline)]
        expected, got, figures.settled_after_s = settle(baseline_url, chaos_url, settle_timeout)
        figures.rows_compared = row_count(expected)
        figures.differences = differences(expected, got)
        figures.overlaps = overlapping_instances(chaos_url)
    figures.left_behind = watch.survivors(10)
    return figures


def main() -> None:
    seconds = float(os.environ.get("CHAOS_SECONDS", "600"))
    pg_restarts = int(os.environ.get("CHAOS_PG_RESTARTS", str(max(1, int(seconds // 300)))))
    workdir = Path(tempfile.mkdtemp(prefix="wm-chaos-"))
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    try:
        with postgres_server(workdir / "pg") as admin_url, fresh_database(admin_url) as baseline_url:
            figures = run(workdir, baseline_url, seconds, pg_restarts, say=lambda s: print(s, flush=True))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(figures.lines()))
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    failed = figures.differences or figures.unhealthy or figures.left_behind or figures.overlaps
    ok = not failed and figures.handover_s is not None and figures.rows_compared > 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
