"""The command line against a real database and a running manager; config errors exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.cli import run_cli
from tests.support.manager import ROOT, example_worker


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "workers:\n  farcaster:\n    module: workers.farcaster\n    interval_ms: soon\n",
            "workers.farcaster.interval_ms: Input should be a valid integer",
        ),
        (
            "workers:\n  both:\n    module: x\n    command: [a]\n",
            "workers.both: give exactly one of `module` or `command`",
        ),
        ("healdec:\n  max_restartz: 3\n", "healdec.max_restartz: unknown key"),
        ("workers: [\n", "not valid YAML at line"),
        ("api:\n  port: ${NO_SUCH_VAR_FOR_TEST}\n", "environment variable NO_SUCH_VAR_FOR_TEST is not set"),
    ],
)
def test_bad_config_exits_2_with_one_clear_message(tmp_path: Path, text: str, expected: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run_cli("--config", str(path))
    assert result.returncode == 2
    assert expected in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_flags_settings_and_status_commands(boot_manager, tmp_path: Path):
    m = boot_manager({"counter": example_worker()})
    m.wait_worker("counter", lambda w: w["healthy"])
    cfg = str(m.config_path)

    out = run_cli("flags", "disable", "counter", "--config", cfg)
    assert out.returncode == 0, out.stderr
    m.wait_worker("counter", lambda w: w["state"] == "paused", timeout=3)
    listing = run_cli("flags", "list", "--config", cfg).stdout
    assert "counter_enabled" in listing and "off" in listing and "cli:" in listing
    assert run_cli("flags", "enable", "counter_enabled", "--config", cfg).returncode == 0
    m.wait_worker("counter", lambda w: w["state"] == "running", timeout=3)

    assert run_cli("settings", "set", "counter_batch_size", "9", "--config", cfg).returncode == 0
    bad = run_cli("settings", "set", "counter_batch_size", "nine", "--config", cfg)
    assert bad.returncode != 0 and "is not JSON" in bad.stderr and "Traceback" not in bad.stderr
    assert "counter_batch_size  9" in run_cli("settings", "list", "--config", cfg).stdout

    table = run_cli("status", "--config", cfg)
    assert table.returncode == 0 and "WORKER" in table.stdout and "counter" in table.stdout
    raw = run_cli("status", "--json", "--config", cfg)
    parsed = json.loads(raw.stdout)
    assert raw.returncode == 0 and [w["name"] for w in parsed] == ["counter"]
    assert parsed[0]["state"] == "running" and parsed[0]["restartCount"] == 0

    # `status | head` when the reader has already gone: a quiet end, as a C tool's, no traceback
    read_end, write_end = os.pipe()
    os.close(read_end)
    piped = subprocess.run(
        [sys.executable, "-m", "manager", "status", "--config", cfg],
        cwd=ROOT,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    os.close(write_end)
    assert piped.returncode == 141 and piped.stderr == "", piped.stderr


def test_status_without_a_manager_says_so(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"api": {"port": 1}, "workers": {"w": example_worker()}}))
    result = run_cli("status", "--config", str(path))
    assert result.returncode == 3 and "is `python -m manager` running?" in result.stderr


def test_migrate_is_idempotent(database_url: str, tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": database_url}, "workers": {}}))
    first = run_cli("migrate", "--config", str(path))
    second = run_cli("migrate", "--config", str(path))
    assert first.returncode == second.returncode == 0
    assert "applied migrations: 0001_core" in first.stderr and "applied" not in second.stderr


def test_migrate_refuses_when_an_applied_migration_changed(migrated_url: str, tmp_path: Path):
    import psycopg

    from sql import migrations

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": migrated_url}, "workers": {}}))
    with psycopg.connect(migrated_url, autocommit=True) as conn:  # as if 0001_core.sql was edited since
        conn.execute("UPDATE schema_migrations SET checksum = 'edited-before' WHERE version = '0001'")
    result = run_cli("migrate", "--config", str(path))
    assert result.returncode == 1
    assert "migration 0001_core.sql was changed after it was applied" in result.stderr
    assert "new migration" in result.stderr and "Traceback" not in result.stderr
    with psycopg.connect(migrated_url, autocommit=True) as conn:  # restored: accepted again
        core = next(m for m in migrations() if m.version == "0001")
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = '0001'", (core.checksum,))
    assert run_cli("migrate", "--config", str(path)).returncode == 0


def test_unreachable_database_is_retried_and_reported(tmp_path: Path):
    from tests.support.manager import free_port

    path = tmp_path / "c.yaml"
    url = f"postgresql://nobody:secretpw@127.0.0.1:{free_port()}/nothing"
    path.write_text(yaml.safe_dump({"database": {"url": url, "connect_timeout_s": 1.5}, "workers": {}}))
    result = run_cli("--config", str(path))
    assert result.returncode == 3
    assert "cannot reach Postgres" in result.stderr and "retrying" in result.stdout
    assert "secretpw" not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_run_worker_in_the_foreground(migrated_url: str, tmp_path: Path):
    import os
    import signal

    from tests.support.waiting import wait_for

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": migrated_url}, "workers": {"counter": example_worker()}}))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "manager", "run-worker", "counter", "--config", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    import psycopg

    def items() -> int:
        with psycopg.connect(migrated_url) as conn:
            row = conn.execute("SELECT items_processed FROM worker_heartbeats WHERE worker_name='counter'").fetchone()
        return row[0] if row else 0

    try:
        wait_for(items, 20, 0.1, "the foreground worker to process items")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "counter worker stopped" in out
