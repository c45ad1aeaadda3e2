"""Supervision with real processes: status shape, restarts with backoff, the budget, hung workers."""

from __future__ import annotations

import time

from tests.support.manager import example_worker, pid_alive, wait_gone

STATUS_KEYS = {
    "name",
    "healthy",
    "enabled",
    "state",
    "pid",
    "lastRun",
    "lastSuccess",
    "lastError",
    "errorRate",
    "restartCount",
    "uptimeSeconds",
    "cpuPercent",
    "rssBytes",
    "itemsProcessed",
    "verdict",
    "reasons",
}


def test_boot_reports_every_configured_worker(boot_manager):
    m = boot_manager(
        {
            "counter": example_worker(),
            "plain": {"command": ["bash", "-c", "echo plain says hi; exec sleep 300"], "heartbeat": False},
            "dormant": {**example_worker(), "enabled": False},
        }
    )
    counter = m.wait_worker("counter", lambda w: w["healthy"] and w["itemsProcessed"] > 0, what="a healthy counter")
    assert set(counter) >= STATUS_KEYS
    assert counter["state"] == "running" and counter["verdict"] == "healthy" and counter["reasons"] == []
    assert counter["lastRun"].endswith("Z") and counter["lastSuccess"].endswith("Z")
    assert counter["rssBytes"] > 1_000_000 and counter["uptimeSeconds"] > 0
    assert pid_alive(counter["pid"])

    plain = m.worker("plain")
    assert plain["state"] == "running" and plain["healthy"] is True  # no heartbeats: alive = healthy
    dormant = m.worker("dormant")
    assert dormant["state"] == "disabled" and dormant["pid"] is None and dormant["healthy"] is False
    assert [w["name"] for w in m.status()] == ["counter", "plain", "dormant"]
    assert "[plain] plain says hi" in m.output()


def test_kill_9_restarts_with_backoff_and_counts(boot_manager):
    m = boot_manager({"counter": example_worker()}, healdec={"restart_delay_ms": 600, "min_uptime_s": 30})
    first = m.wait_worker("counter", lambda w: w["healthy"])
    killed_at = time.monotonic()
    m.kill_worker("counter")
    backoff = m.wait_worker("counter", lambda w: w["state"] == "backoff", what="backoff")
    assert backoff["verdict"] == "down" and "SIGKILL" in backoff["reasons"][0]
    again = m.wait_worker("counter", lambda w: w["state"] == "running" and w["pid"] != first["pid"])
    assert time.monotonic() - killed_at >= 0.5  # waited out restart_delay_ms (quick crash)
    assert again["restartCount"] == 1
    events = m.wait_events("counter", lambda es: len(es) >= 4, what="four events stored")
    assert [e["event"] for e in events][:4] == ["started", "exited", "backoff", "restarted"]


RESTART_DELAY_S = 5.0


def test_stable_worker_restarts_at_once(boot_manager):
    m = boot_manager(
        {"counter": example_worker()}, healdec={"restart_delay_ms": int(RESTART_DELAY_S * 1000), "min_uptime_s": 0.5}
    )
    first = m.wait_worker("counter", lambda w: w["healthy"] and w["uptimeSeconds"] > 0.6)
    killed_at = time.time()
    m.kill_worker("counter")
    m.wait_worker("counter", lambda w: w["pid"] not in (None, first["pid"]), timeout=RESTART_DELAY_S / 5)
    # the manager's own clock: the exit was noticed, and the restart made, within a fifth of the delay
    events = m.wait_events("counter", lambda es: es[-1]["event"] == "restarted", what="the restart recorded")
    exited, restarted = events[-2]["at"], events[-1]["at"]
    assert events[-2]["event"] == "exited" and events[-2]["detail"]["signal"] == 9
    assert exited - killed_at < 0.5, f"exit noticed after {exited - killed_at:.3f} s"
    assert restarted - killed_at < RESTART_DELAY_S / 5, f"restarted after {restarted - killed_at:.3f} s"


def test_crash_loop_fails_after_budget_and_api_restart_revives(boot_manager):
    m = boot_manager(
        {"crasher": {"command": ["bash", "-c", "echo boom >&2; exit 3"], "heartbeat": False}},
        healdec={"max_restarts": 3, "restart_delay_ms": 20, "max_restart_delay_ms": 100},
    )
    failed = m.wait_worker("crasher", lambda w: w["state"] == "failed", what="failed")
    assert failed["restartCount"] == 3 and failed["verdict"] == "down"
    assert "restart budget" in failed["reasons"][0]
    time.sleep(0.3)
    assert m.worker("crasher")["state"] == "failed"  # stays failed: no more restarts
    stored = m.wait_events("crasher", lambda es: es and es[-1]["event"] == "failed", what="the failed event stored")
    events = [e["event"] for e in stored]
    assert events.count("started") + events.count("restarted") == 4 and events[-1] == "failed"

    assert m.api("POST", "/api/workers/crasher/restart").status_code == 202
    m.wait_worker("crasher", lambda w: w["restartCount"] > 3, what="a new attempt")
    again = m.wait_worker("crasher", lambda w: w["state"] == "failed", what="failed again with a fresh budget")
    assert again["restartCount"] == 3 + 1 + 3  # the crashes, the operator's restart, a fresh budget's crashes


def test_exit_zero_is_stopped_not_restarted(boot_manager):
    m = boot_manager({"oneshot": {"command": ["bash", "-c", "echo done"], "heartbeat": False}})
    w = m.wait_worker("oneshot", lambda w: w["state"] == "stopped")
    time.sleep(0.3)
    assert m.worker("oneshot")["state"] == "stopped" and w["restartCount"] == 0


def test_hung_worker_is_killed_and_replaced(boot_manager, database_url):
    # healdec's timeout is 60 s, the worker's own 3 s: only the per-worker timeout can act in time
    m = boot_manager(
        {"counter": example_worker(heartbeat_timeout_s=3)},
        healdec={"min_uptime_s": 0.1, "heartbeat_timeout_s": 60},
    )
    first = m.wait_worker("counter", lambda w: w["healthy"])
    m.sql("INSERT INTO settings (key, value) VALUES ('counter_hang_s', '600')")  # next item blocks, silent
    hung = m.wait_worker("counter", lambda w: w["pid"] not in (None, first["pid"]), timeout=15, what="a replacement")
    assert hung["restartCount"] == first["restartCount"] + 1
    assert not pid_alive(first["pid"])
    events = m.wait_events(
        "counter", lambda es: any(e["event"] == "killed_hung" and e["pid"] == first["pid"] for e in es), what="the kill"
    )
    (kill,) = [e for e in events if e["event"] == "killed_hung" and e["pid"] == first["pid"]]
    assert "hung: no heartbeat" in kill["detail"]["reason"] and "(timeout 3.0 s)" in kill["detail"]["reason"]


def test_operator_stop_and_start(boot_manager):
    m = boot_manager({"counter": example_worker()})
    first = m.wait_worker("counter", lambda w: w["healthy"])
    assert m.api("POST", "/api/workers/counter/stop").status_code == 202
    stopped = m.wait_worker("counter", lambda w: w["state"] == "stopped")
    assert stopped["pid"] is None
    wait_gone([first["pid"]], 5)
    assert m.api("POST", "/api/workers/counter/start").status_code == 202
    m.wait_worker("counter", lambda w: w["state"] == "running" and w["pid"])


def test_operator_restart_counts_but_spends_no_budget(boot_manager):
    m = boot_manager({"counter": example_worker()}, healdec={"max_restarts": 1})
    first = m.wait_worker("counter", lambda w: w["healthy"])
    for expected in (1, 2):  # more operator restarts than max_restarts: the budget is not touched
        assert m.api("POST", "/api/workers/counter/restart").status_code == 202
        w = m.wait_worker("counter", lambda w, n=expected: w["restartCount"] == n and w["state"] == "running")
        assert w["pid"] != first["pid"]
    m.wait_worker("counter", lambda w: w["healthy"])


def test_worker_output_as_json_lines(boot_manager):
    import json

    m = boot_manager({"counter": example_worker()}, args=["--log-format", "json"])
    m.wait_worker("counter", lambda w: w["itemsProcessed"] > 0)
    records = [json.loads(line) for line in m.output().splitlines() if line.startswith("{")]
    assert any(r["worker"] == "counter" and "worker started" in r["text"] for r in records)
    assert all({"worker", "at", "stream", "text"} <= set(r) for r in records)


def test_old_history_is_pruned_after_the_retention_period(boot_manager, migrated_url):
    m = boot_manager({"counter": example_worker()}, healdec={"events_retention_days": 1}, start=False)
    m.sql(
        "INSERT INTO supervision_events (worker_name, occurred_at, event) VALUES "
        "('counter', now() - interval '3 days', 'started'), ('counter', now() - interval '1 hour', 'exited')"
    )
    m.sql(
        "INSERT INTO worker_errors (worker_name, occurred_at, message) VALUES ('counter', now() - interval '3 days', 'old')"
    )
    m.start()
    m.wait_worker("counter", lambda w: w["healthy"])
    events = m.sql("SELECT event FROM supervision_events WHERE occurred_at < now() - interval '10 minutes'")
    assert events == [("exited",)]  # the 3-day-old one is gone, the recent one kept
    assert m.sql("SELECT count(*) FROM worker_errors WHERE message = 'old'") == [(0,)]
