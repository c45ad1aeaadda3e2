"""Run now and cron schedules, with a real manager, real worker processes and NOTIFY through Postgres."""

from __future__ import annotations

import time
from datetime import datetime

from tests.integration.test_cli import run_cli
from tests.support.manager import TOKEN, example_worker
from tests.support.waiting import wait_for


def cycles(m, name: str) -> int:
    return m.sql("SELECT count(*) FROM cycle_runs WHERE worker_name = %s", (name,))[0][0]


def parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def test_run_now_starts_a_cycle_within_a_second_without_a_restart(boot_manager):
    m = boot_manager(
        {
            "counter": example_worker(interval_ms=600_000),  # next cycle in ten minutes
            "idle": example_worker(enabled=False),
        }
    )
    w = m.wait_worker("counter", lambda w: w["healthy"] and w["nextRun"] is not None and cycles(m, "counter") >= 1)
    pid, before = w["pid"], cycles(m, "counter")
    assert 590 < (parse(w["nextRun"]).timestamp() - time.time()) <= 600

    asked = time.monotonic()
    answer = m.api("POST", "/api/workers/counter/run")
    assert answer.status_code == 202, answer.text
    wait_for(lambda: cycles(m, "counter") > before, 1.0, 0.01, "a cycle within 1 s of run-now")
    assert time.monotonic() - asked < 1.0
    assert m.worker("counter")["pid"] == pid and m.worker("counter")["restartCount"] == 0

    # The CLI goes through the same endpoint with ADMIN_TOKEN.
    before = cycles(m, "counter")
    out = run_cli("run-now", "counter", "--config", str(m.config_path), env={"ADMIN_TOKEN": TOKEN})
    assert out.returncode == 0, out.stderr
    wait_for(lambda: cycles(m, "counter") > before, 2.0, 0.01, "a cycle after `manager run-now`")

    # Refusals: no token, unknown worker, a worker that is not running.
    assert m.api("POST", "/api/workers/counter/run", token=None).status_code == 401
    assert m.api("POST", "/api/workers/nope/run").status_code == 404
    refused = m.api("POST", "/api/workers/idle/run")
    assert refused.status_code == 409 and "not running" in refused.json()["detail"]
    cli = run_cli("run-now", "idle", "--config", str(m.config_path), env={"ADMIN_TOKEN": TOKEN})
    assert cli.returncode != 0 and "not running" in cli.stderr and "Traceback" not in cli.stderr


def test_a_cron_schedule_reports_its_next_slot_and_runs_once_at_start(boot_manager):
    m = boot_manager({"cron": example_worker(schedule="*/5 * * * *", timezone="Europe/Berlin")})
    w = m.wait_worker("cron", lambda w: w["healthy"] and w["nextRun"] is not None, timeout=20)
    assert cycles(m, "cron") == 1  # never ran before: one run at start, then the schedule
    slot = parse(w["nextRun"])
    assert slot.minute % 5 == 0 and slot.second == 0
    assert 0 < slot.timestamp() - time.time() <= 300
