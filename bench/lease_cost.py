"""What leases cost an idle fleet (issue 11): database transactions per second and manager CPU with
1 and 8 idle workers (one manager, `lease_ttl_s: 5`, workers on a 60 s interval with the default 5 s
heartbeat). The lease keeper's share is fixed per manager, not per worker: each tick (every
`lease_ttl_s / 3`) renews all its leases and its `managers` row, takes its commands and reads the
managers and the leases in one statement (`lease_tick`); the marginal cost of a worker is the slope
between the two runs, mostly its own heartbeat (which now also runs the fence).

`python -m bench lease_cost` (env BENCH_LEASE_WINDOW_S, default 15).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.stats import table
from tests.support.manager import ManagerHandle
from tests.support.postgres import fresh_database, postgres_server
from tests.support.waiting import wait_for

TTL = 5.0
WINDOW_S = float(os.environ.get("BENCH_LEASE_WINDOW_S", "15"))
KEEPER_STATEMENTS_PER_TICK = 1  # lease_tick


def _commits(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _measure(workdir: Path, url: str, workers: int) -> dict[str, float]:
    spec = {"module": "workers.example", "interval_ms": 60000}
    (workdir / f"w{workers}").mkdir()
    # the production defaults, not the tests' quick sweeps
    healdec = {"lease_ttl_s": TTL, "sweep_interval_ms": 1000, "flag_reread_s": 30, "heartbeat_timeout_s": 30}
    handle = ManagerHandle(workdir / f"w{workers}", url, {f"w{i}": dict(spec) for i in range(workers)}, healdec=healdec)
    handle.start(60)
    try:
        wait_for(lambda: all(w["state"] == "running" for w in handle.status()), 60, 0.2, "every worker running")
        time.sleep(3)  # boot settled: first cycles done
        assert handle.proc is not None
        proc = psutil.Process(handle.proc.pid)
        cpu, commits, started = sum(proc.cpu_times()[:2]), _commits(url), time.monotonic()
        time.sleep(WINDOW_S)
        elapsed = time.monotonic() - started
        return {
            "tps": (_commits(url) - commits - 1) / elapsed,  # minus the reading itself
            "cpu": (sum(proc.cpu_times()[:2]) - cpu) / elapsed * 100,
        }
    finally:
        handle.close()


def main() -> None:
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres_server(Path(tmp) / "pg") as admin_url,
        fresh_database(admin_url) as url,
    ):
        runs = {n: _measure(Path(tmp), url, n) for n in (1, 8)}
    slope = (runs[8]["tps"] - runs[1]["tps"]) / 7
    keeper = KEEPER_STATEMENTS_PER_TICK / (TTL / 3)
    rows: list[list[Any]] = [
        [
            f"{n} idle worker(s)",
            f"{r['tps']:.2f}",
            f"{r['tps'] / n:.2f}",
            f"{keeper:.2f}",
            f"{keeper / n:.2f}",
            f"{r['cpu']:.1f}",
        ]
        for n, r in runs.items()
    ]
    print(
        table(
            rows,
            ["one manager", "db xact/s", "per worker", "lease keeper q/s", "keeper per worker", "manager CPU %"],
        )
    )
    print(f"marginal cost of one idle worker: {slope:.2f} xact/s (its heartbeat every 5 s, fenced)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
