"""Failover between managers on one database (issue 11), with the production default
`lease_ttl_s: 5`: time from `kill -9` of the manager that runs a worker to that worker running
under another manager (p50/p99 over KILLS kills), the same after SIGSTOP (a frozen host: only the
TTL tells), and a rolling-deploy hand-over (SIGTERM → running elsewhere). The baseline is the TTL
itself, what a pure expiry scheme would wait on average.

`python -m bench failover` (env BENCH_KILLS, default 20).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import summary_ms, table
from tests.support.manager import ManagerHandle
from tests.support.postgres import fresh_database, postgres_server
from tests.support.waiting import wait_for

TTL = 5.0
WORKERS = {f"w{i}": {"module": "workers.example", "interval_ms": 500, "heartbeat_interval_ms": 500} for i in range(3)}


def _boot(workdir: Path, url: str, n: int) -> ManagerHandle:
    path = workdir / f"m{n}"
    path.mkdir()
    return ManagerHandle(path, url, WORKERS, healdec={"lease_ttl_s": TTL}).start(60)


def _owner_pid(view: ManagerHandle, name: str) -> int | None:
    w = view.worker(name)
    return w["owner"]["pid"] if w["owner"] and w["state"] == "running" and w["pid"] else None


def _release_gap(view: ManagerHandle, old_pid: int, new_pid: int) -> float:
    """Seconds from the old copy's exit (its lease is released right after) to the new copy's start."""

    def gap() -> float | None:
        row = view.sql(
            "SELECT extract(epoch FROM min(occurred_at) FILTER (WHERE event IN ('started', 'restarted') AND pid = %s)"
            " - max(occurred_at) FILTER (WHERE event = 'exited' AND pid = %s))::float8"
            " FROM supervision_events WHERE worker_name = 'w0'",
            (new_pid, old_pid),
        )
        return row[0][0]

    return float(wait_for(gap, 30, 0.1, "both supervision events"))


GAPS: list[float] = []


def _one(handles: list[ManagerHandle], how: str) -> float:
    """Stop the manager running w0 in the way `how`; seconds until w0 runs under another."""
    owner_pid = wait_for(lambda: _owner_pid(handles[0], "w0"), 30, 0.05, "w0 placed")
    victim = next(h for h in handles if h.proc and h.proc.pid == owner_pid)
    other = next(h for h in handles if h is not victim)
    old_pid = victim.worker("w0")["pid"]
    started = time.perf_counter()
    assert victim.proc is not None
    if how == "kill":
        victim.proc.kill()
    elif how == "stop":
        victim.proc.send_signal(signal.SIGSTOP)
    else:
        victim.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: _owner_pid(other, "w0") not in (None, owner_pid), 60, 0.01, "w0 elsewhere")
    took = time.perf_counter() - started
    if how == "term":
        GAPS.append(_release_gap(other, old_pid, other.worker("w0")["pid"]))
    if how == "stop":
        victim.proc.send_signal(signal.SIGCONT)
        victim.proc.kill()
    victim.proc.wait()
    victim.close()
    handles.remove(victim)
    return took


def measure(url: str, workdir: Path, kills: int) -> list[list[Any]]:
    handles = [_boot(workdir, url, 0), _boot(workdir, url, 1)]
    booted = 2
    results: dict[str, list[float]] = {"kill": [], "stop": [], "term": []}
    plan = ["kill"] * kills + ["stop"] * 3 + ["term"] * 5
    try:
        for i, how in enumerate(plan):
            print(f"  {how} {i + 1}/{len(plan)}", file=sys.stderr, flush=True)
            results[how].append(_one(handles, how))
            handles.append(_boot(workdir, url, booted))
            booted += 1
    finally:
        for h in handles:
            h.close()
    rows = []
    for how, label in (
        ("kill", "kill -9 → running elsewhere"),
        ("stop", "SIGSTOP (frozen) → elsewhere"),
        ("term", "SIGTERM (deploy) → elsewhere"),
    ):
        if not results[how]:
            continue
        s = summary_ms(results[how])
        rows.append(
            [
                label,
                s["n"],
                f"{s['median']:.0f}",
                f"{s['p99']:.0f}",
                f"{s['max']:.0f}",
                f"{TTL * 1000:.0f}",
                f"{s['median'] / (TTL * 1000):.2f}",
            ]
        )
    s = summary_ms(GAPS)
    rows.append(
        [
            "deploy: old copy exited → new started",
            s["n"],
            f"{s['median']:.0f}",
            f"{s['p99']:.0f}",
            f"{s['max']:.0f}",
            "1000 (goal)",
            f"{s['median'] / 1000:.2f}",
        ]
    )
    return rows


def main() -> None:
    kills = int(os.environ.get("BENCH_KILLS", "20"))  # BENCH_KILLS=0: only the freezes and deploys
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres_server(Path(tmp) / "pg") as admin_url,
        fresh_database(admin_url) as url,
    ):
        rows = measure(url, Path(tmp), kills)
    print(table(rows, ["measure", "n", "median ms", "p99 ms", "max ms", "baseline: TTL ms", "ratio"]))


if __name__ == "__main__":
    main()
