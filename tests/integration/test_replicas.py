"""`replicas: N` through a real manager: N supervised copies, each leased and reporting on its own
row, following the worker's one flag, and sharing the indexing of new rows without overlap; and the
config refusing replicas for workers that do not claim their work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from manager.config import load_config
from manager.errors import ConfigError
from manager.worker_env import worker_environment
from tests.support.db import rows
from tests.support.waiting import wait_for
from workers.search.worker import SearchWorker

SEARCH = {
    "module": "workers.search",
    "replicas": 3,
    "interval_ms": 300,
    "heartbeat_interval_ms": 200,
    "claim_idle_ms": 100,
}


def test_config_expands_replicas_and_refuses_them_for_cursor_workers(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("workers:\n  search:\n    module: workers.search\n    replicas: 3\n    hosts: [a]\n")
    workers = load_config(path).workers
    assert list(workers) == ["search", "search-2", "search-3"]
    assert [w.replica_of for w in workers.values()] == [None, "search", "search"]
    assert workers["search-3"].hosts == ["a"]  # placed like the worker (spread over managers)

    env = worker_environment("search-2", workers["search-2"], "postgresql://db")
    assert env["WORKER_NAME"] == "search-2"
    worker = SearchWorker(name="search-2", config=json.loads(env["WORKER_CONFIG"]), database_url="")
    assert (worker.name, worker.group, worker.settings.replicas) == ("search-2", "search", 3)

    path.write_text("workers:\n  farcaster:\n    module: workers.social.farcaster\n    replicas: 2\n")
    with pytest.raises(
        ConfigError, match=r"workers\.farcaster\.replicas: 2 copies of workers\.social\.farcaster would process"
    ):
        load_config(path)
    path.write_text("workers:\n  search:\n    module: workers.search\n    replica_of: x\n")
    with pytest.raises(ConfigError, match="replica_of is set by the manager"):
        load_config(path)


def test_a_manager_runs_three_search_replicas_that_share_new_rows(boot_manager: Any, migrated_url: str) -> None:
    manager = boot_manager(workers={"search": SEARCH})
    names = ["search", "search-2", "search-3"]

    def running() -> list[dict[str, Any]] | None:
        status = manager.status()
        ok = sorted(w["name"] for w in status) == names and all(w["state"] == "running" and w["pid"] for w in status)
        return status if ok else None

    status = wait_for(running, 20, 0.1, "three running replicas")
    assert len({w["pid"] for w in status}) == 3
    leases = rows(migrated_url, "SELECT worker_name FROM worker_leases ORDER BY 1")
    assert [r[0] for r in leases] == names

    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO external_posts (platform, external_id, body, created_at) "
            "SELECT 'farcaster', 'r' || i, 'replicated post ' || i, now() FROM generate_series(1, 3000) AS i"
        )
    wait_for(
        lambda: rows(migrated_url, "SELECT count(*) FROM search_posts")[0][0] == 3000, 30, 0.2, "every post indexed"
    )
    queue = rows(
        migrated_url, "SELECT state, completions, count(*) FROM work_queue WHERE queue = 'search:posts' GROUP BY 1, 2"
    )
    assert queue == [("done", 1, 3000)]  # each completed exactly once
    beats = {r[0] for r in rows(migrated_url, "SELECT worker_name FROM worker_heartbeats")}
    assert set(names) <= beats

    # one flag for all copies
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("UPDATE feature_flags SET enabled = false WHERE flag_name = 'search_enabled'")
    wait_for(lambda: all(w["state"] == "paused" for w in manager.status()), 10, 0.1, "every replica paused")
    assert rows(migrated_url, "SELECT count(*) FROM feature_flags WHERE flag_name LIKE 'search-%'") == [(0,)]
