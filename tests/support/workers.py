"""Running one worker as a real process, exactly as the manager would start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from sql import apply_migrations
from tests.support.manager import ROOT
from tests.support.postgres import fresh_database
from tests.support.waiting import wait_for

# The worker module run for a worker name (default: `workers.<name>`).
MODULES = {"farcaster": "workers.social.farcaster", "reddit": "workers.social.reddit"}


def start_worker(name: str, url: str, config: dict[str, Any], log_dir: Path) -> subprocess.Popen[bytes]:
    """`python -m <its module>` with WORKER_NAME, DATABASE_URL and WORKER_CONFIG (output in log_dir)."""
    env = {**os.environ, "WORKER_NAME": name, "DATABASE_URL": url, "WORKER_CONFIG": json.dumps(config)}
    module = MODULES.get(name, f"workers.{name}")
    with (log_dir / "worker.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=log)


def kill_mid_sync(name: str, url: str, config: dict[str, Any], log_dir: Path, under_way: Callable[[], bool]) -> None:
    """Start the worker as a real process and SIGKILL it as soon as `under_way()` says so."""
    proc = start_worker(name, url, config, log_dir)
    try:
        wait_for(under_way, 30, 0.01, f"the {name} sync to be under way")
    finally:
        proc.kill()
        proc.wait()


def resume_matches_fresh_run(
    make: Callable[[str], Any], url: str, pg_admin_url: str, snapshot: Callable[[str], Any]
) -> None:
    """Run one cycle on the interrupted database (the restart) and one on a new database; the
    tables must come out identical: nothing lost, nothing duplicated."""
    make(url).run_cycle()
    with fresh_database(pg_admin_url) as other:
        with psycopg.connect(other) as conn:
            apply_migrations(conn)
        make(other).run_cycle()
        assert snapshot(url) == snapshot(other)
