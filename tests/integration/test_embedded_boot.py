"""Boot as a newcomer does: no DATABASE_URL, no ADMIN_TOKEN, a clean data directory.

The slowest boot of the suite (initdb), so one test makes every assertion about it.
"""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import psycopg
import yaml

from manager.db import embedded_settings
from tests.support.manager import TOKEN, ManagerHandle, example_worker, wait_gone


def _postgres_pids(data_dir: Path) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "postgres" and str(data_dir) in " ".join(proc.info["cmdline"] or []):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def test_embedded_postgres_from_a_clean_data_dir_and_a_generated_token(tmp_path: Path):
    data_dir = tmp_path / "pg"
    m = ManagerHandle(tmp_path, "", {"counter": example_worker()}, timeout=120)
    config = yaml.safe_load(m.config_path.read_text())
    config["database"] = {"data_dir": str(data_dir)}  # no url: the embedded server
    m.config_path.write_text(yaml.safe_dump(config))
    m.env.pop("ADMIN_TOKEN")
    try:
        m.start()
        m.wait_worker("counter", lambda w: w["healthy"] and w["itemsProcessed"] > 0, timeout=30)
        output = m.output()

        (url,) = re.findall(r"embedded Postgres: (postgresql://\S+)", output)
        assert (data_dir / "PG_VERSION").exists()
        with psycopg.connect(url) as conn:  # the printed URL works, the schema is there
            versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
            assert versions[0] == "0001"
            assert conn.execute("SELECT enabled FROM feature_flags WHERE flag_name = 'counter_enabled'").fetchone() == (
                True,
            )
            # sized for the host on first start (manager.db.embedded_settings), not Postgres's stock 128 MB
            running = dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())
            wanted = embedded_settings(psutil.virtual_memory().total)
            assert int(running["shared_buffers"]) * 8192 == int(wanted["shared_buffers"].removesuffix("MB")) * 2**20
            assert running["max_wal_size"] == "4096" and running["max_connections"] == wanted["max_connections"]

        tokens = re.findall(r"ADMIN_TOKEN was not set; this run's admin token is: (\S+)", output)
        assert len(tokens) == 1, output  # printed once
        (token,) = tokens
        assert len(token) >= 24 and output.count(token) == 1
        assert m.api("POST", "/api/workers/counter/restart", token=TOKEN).status_code == 401
        assert m.api("POST", "/api/workers/counter/restart", token=token).status_code == 202
        m.wait_worker("counter", lambda w: w["restartCount"] == 1 and w["state"] == "running")

        servers = _postgres_pids(data_dir)
        assert servers, "no embedded postgres process found"
        assert m.terminate() == 0
        wait_gone(servers, 10)  # the manager stops the server it started
    finally:
        m.close()
        for pid in _postgres_pids(data_dir):  # only if the assertion above failed: leave nothing running
            psutil.Process(pid).terminate()
