"""The manager's own figures with N plain workers: respawn latency after SIGKILL, SQL flag toggle
→ paused / → running, `/api/workers/status` latency under concurrent load, and the manager's RSS
and idle CPU. Each figure has a same-run baseline:

- respawn: a bare `subprocess.Popen` + kill + wait + Popen of the same worker command;
- flag toggle: a bare LISTEN/NOTIFY round trip on the same server;
- status: `/healthz` (a trivial endpoint) under the same load.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.stats import summary_ms, table
from tests.support.manager import ManagerHandle
from tests.support.postgres import fresh_database, postgres_server
from tests.support.waiting import wait_for

KILLS = 24
TOGGLES = 20


def _workers(n: int) -> dict[str, Any]:
    spec = {"module": "workers.example", "interval_ms": 2000, "heartbeat_interval_ms": 1000}
    return {f"w{i:02d}": dict(spec) for i in range(n)}


def respawn_latencies(m: ManagerHandle, names: list[str]) -> list[float]:
    out = []
    for i in range(KILLS):
        name = names[i % len(names)]
        old = m.wait_worker(name, lambda w: w["healthy"], timeout=30)["pid"]  # booted, in steady state
        started = time.perf_counter()
        os.kill(old, signal.SIGKILL)
        m.wait_worker(name, lambda w, old=old: w["pid"] not in (None, old), timeout=30, interval=0.005)
        out.append(time.perf_counter() - started)
    return out


def respawn_baseline(argv: list[str]) -> list[float]:
    """The floor: a bare asyncio parent that kills, awaits the exit and spawns again."""

    async def cycle() -> list[float]:
        out = []
        proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(KILLS):
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            proc.kill()
            await proc.wait()
            proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out.append(time.perf_counter() - started)
        proc.kill()
        await proc.wait()
        return out

    return asyncio.run(cycle())


def flag_latencies(m: ManagerHandle, name: str) -> tuple[list[float], list[float]]:
    to_paused, to_running = [], []
    with psycopg.connect(m.database_url, autocommit=True) as conn:
        for _ in range(TOGGLES):
            m.wait_worker(name, lambda w: w["state"] == "running", timeout=30)
            started = time.perf_counter()
            conn.execute("UPDATE feature_flags SET enabled = false WHERE flag_name = %s", (f"{name}_enabled",))
            m.wait_worker(name, lambda w: w["state"] == "paused", timeout=30)
            to_paused.append(time.perf_counter() - started)
            started = time.perf_counter()
            conn.execute("UPDATE feature_flags SET enabled = true WHERE flag_name = %s", (f"{name}_enabled",))
            m.wait_worker(name, lambda w: w["state"] == "running", timeout=30)
            to_running.append(time.perf_counter() - started)
    return to_paused, to_running


def notify_baseline(url: str) -> list[float]:
    out = []
    with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as sender:
        listener.execute("LISTEN bench_baseline")
        for _ in range(TOGGLES):
            started = time.perf_counter()
            sender.execute("NOTIFY bench_baseline, 'x'")
            next(listener.notifies(timeout=5, stop_after=1))
            out.append(time.perf_counter() - started)
    return out


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def load(url: str, concurrency: int = 16, seconds: float = 5.0) -> dict[str, Any]:
    """Load from a separate process: wrk when installed (C, so the server is what saturates),
    else the Python generator in bench.status_load. Returns p50/p99 in ms and requests/s."""
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pct = {m[1]: float(m[2]) * _UNITS[m[3]] for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {
            "p50": pct["50"],
            "p99": pct["99"],
            "rps": rps,
            "errors": int(errors[1]) if errors else 0,
            "tool": "wrk",
        }
    result = subprocess.run(
        [sys.executable, "-m", "bench.status_load", url, str(concurrency), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(result.stdout)
    s = summary_ms(data["latencies"])
    return {
        "p50": s["median"],
        "p99": s["p99"],
        "rps": len(data["latencies"]) / data["elapsed"],
        "errors": data["errors"],
        "tool": "python",
    }


def measure(n: int, admin_url: str, workdir: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    with fresh_database(admin_url) as url:
        m = ManagerHandle(
            workdir,
            url,
            _workers(n),
            healdec={
                "min_uptime_s": 0,
                "max_restarts": 10_000,
                "restart_window_s": 1,
                "sweep_interval_ms": 1000,
                "heartbeat_timeout_s": 60,
            },
        )
        m.start(timeout=60)
        try:
            names = list(_workers(n))
            wait_for(lambda: all(w["healthy"] for w in m.status()), 120, 0.2, "every worker healthy")
            manager = psutil.Process(m.proc.pid)

            def ms(values: list[float]) -> dict[str, float]:
                return summary_ms(values)

            kill = ms(respawn_latencies(m, names))
            base = ms(respawn_baseline([sys.executable, "-m", "workers.example"]))
            rows.append(
                [
                    n,
                    "respawn after SIGKILL (kill → new pid in status)",
                    f"{kill['median']:.1f}",
                    f"{kill['p95']:.1f}",
                    f"{kill['p99']:.1f}",
                    f"bare asyncio respawn {base['median']:.1f}",
                    f"{kill['median'] / base['median']:.2f}x",
                ]
            )
            paused, running = flag_latencies(m, names[0])
            notify = ms(notify_baseline(url))
            for label, values in (("SQL flag → paused", paused), ("SQL flag → running", running)):
                s = ms(values)
                rows.append(
                    [
                        n,
                        label,
                        f"{s['median']:.1f}",
                        f"{s['p95']:.1f}",
                        f"{s['p99']:.1f}",
                        f"NOTIFY round trip {notify['median']:.2f}",
                        f"{s['median'] / notify['median']:.1f}x",
                    ]
                )
            wait_for(lambda: all(w["state"] == "running" for w in m.status()), 60, 0.2, "all running")
            status = load(f"{m.base_url}/api/workers/status")
            health = load(f"{m.base_url}/healthz")
            rows.append(
                [
                    n,
                    f"GET /api/workers/status, 16 conns via {status['tool']} "
                    f"({status['rps']:.0f} req/s, {status['errors']} errors)",
                    f"{status['p50']:.2f}",
                    "",
                    f"{status['p99']:.2f}",
                    f"/healthz {health['p50']:.2f} ({health['rps']:.0f} req/s)",
                    f"{status['p50'] / health['p50']:.2f}x",
                ]
            )
            manager.cpu_percent(None)
            time.sleep(5)
            cpu = manager.cpu_percent(None)
            rss = manager.memory_info().rss / 2**20
            rows.append([n, "manager idle CPU % / RSS MiB", f"{cpu:.1f}%", "", "", f"RSS {rss:.0f} MiB", ""])
        finally:
            m.close()
    return rows


def main() -> None:
    counts = [int(c) for c in os.environ.get("BENCH_WORKERS", "7,50").split(",")]
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp, postgres_server(Path(tmp) / "pg") as admin_url:
        for n in counts:
            workdir = Path(tmp) / f"n{n}"
            workdir.mkdir()
            print(f"measuring with {n} workers ...", file=sys.stderr, flush=True)
            rows.extend(measure(n, admin_url, workdir))
    print(table(rows, ["workers", "measure", "median ms", "p95 ms", "p99 ms", "baseline (median ms)", "ratio"]))


if __name__ == "__main__":
    main()
