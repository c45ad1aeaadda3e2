"""SPEC promises on one live manager: output prefixes, backoff that doubles and resets, hung kills
that spend the budget, a pause that lets the current item finish, SIGKILL after stop_timeout_s, and
a status endpoint that keeps answering (and says why) while the database is away.

One manager serves the module; each test watches its own worker, so their order does not matter
(the database outage comes last because it touches every worker).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.support.manager import ManagerHandle, example_worker, module_manager, pid_alive, wait_gone
from tests.support.waiting import wait_for

HEALDEC = {
    "max_restarts": 4,
    "restart_window_s": 60,
    "min_uptime_s": 3,  # well above a hung kill's uptime, even on a loaded machine
    "restart_delay_ms": 200,
    "max_restart_delay_ms": 800,
    "heartbeat_timeout_s": 10,
    "stop_timeout_s": 3,  # room for a loaded machine to finish an item and exit
    "sweep_interval_ms": 200,
    "flag_reread_s": 3600,  # flags only through LISTEN/NOTIFY
}
ITEM_S = 2.0  # the slow worker's item takes this long

# Each start pops one line of the plan: `quick` crashes at once, `stable` crashes after outliving
# min_uptime_s, an empty plan runs on.
FLAKY_PLAN = ["quick", "quick", "stable", "quick"]
FLAKY = (
    'line=$(head -n1 "$PLAN"); sed -i 1d "$PLAN"; '
    '[ -z "$line" ] && exec sleep 300; [ "$line" = stable ] && sleep 3.5; echo "crashing ($line)"; exit 3'
)


def workers(tmp: Path) -> dict[str, Any]:
    plan = tmp / "flaky.plan"
    plan.write_text("\n".join(FLAKY_PLAN) + "\n")
    return {
        "talker": {
            "command": ["bash", "-c", "echo to-out; echo to-err >&2; exec sleep 300"],
            "heartbeat": False,
        },
        "flaky": {"command": ["bash", "-c", FLAKY], "heartbeat": False, "env": {"PLAN": str(plan)}},
        # alive but never heartbeats: hung after 0.6 s, every time
        "silent": {"command": ["bash", "-c", "exec sleep 300"], "heartbeat_timeout_s": 0.6},
        "stubborn": {
            "command": ["bash", "-c", "trap '' TERM; echo deaf to SIGTERM; while :; do sleep 0.1; done"],
            "heartbeat": False,
        },
        "slow": example_worker(batch_size=1, item_delay_ms=ITEM_S * 1000, interval_ms=50),
        "counter": example_worker(),
    }


@pytest.fixture(scope="module")
def m(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    tmp = tmp_path_factory.mktemp("promises")
    with module_manager(pg_admin_url, tmp, workers(tmp), healdec=HEALDEC) as handle:
        yield handle


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def test_worker_output_lines_carry_the_name_prefix(m: ManagerHandle):
    wait_for(lambda: "[talker] to-err" in m.output(), 10, what="the stderr line on the manager's output")
    assert "[talker] to-out" in m.output()
    detail = m.api("GET", "/api/workers/talker").json()
    streams = {line["text"]: line["stream"] for line in detail["logs"]}
    assert streams["to-err"] == "stderr" and streams["to-out"] == "stdout"


def test_backoff_doubles_and_resets_after_a_stable_run(m: ManagerHandle):
    flaky = m.wait_worker("flaky", lambda w: w["restartCount"] == 4 and w["state"] == "running", timeout=30)
    events = m.wait_events("flaky", lambda es: kinds(es).count("restarted") == 4, what="four restarts stored")
    delays = [e["detail"]["delay_s"] for e in events if e["event"] == "backoff"]
    assert delays == [0.2, 0.4, 0.2]  # doubled for the second quick crash, reset by the stable run
    restarts = [e for e in events if e["event"] == "restarted"]
    exits = [e for e in events if e["event"] == "exited"]
    gaps = [r["at"] - x["at"] for x, r in zip(exits, restarts, strict=True)]
    for gap, wanted in zip(gaps, [0.2, 0.4, 0.0, 0.2], strict=True):
        assert wanted <= gap < wanted + 1.0, gaps  # waited the delay, and not much longer
    assert exits[2]["detail"]["uptime_s"] >= HEALDEC["min_uptime_s"]  # the stable run: restarted at once
    assert flaky["verdict"] == "healthy"


def test_hung_kills_spend_the_restart_budget(m: ManagerHandle):
    failed = m.wait_worker("silent", lambda w: w["state"] == "failed", timeout=20, what="silent to fail")
    assert failed["restartCount"] == HEALDEC["max_restarts"] and failed["verdict"] == "down"
    assert "restart budget" in failed["reasons"][0]
    events = m.wait_events("silent", lambda es: es[-1]["event"] == "failed", what="the failed event stored")
    assert kinds(events).count("killed_hung") == HEALDEC["max_restarts"] + 1
    assert all("hung: no heartbeat" in e["detail"]["reason"] for e in events if e["event"] == "killed_hung")
    # quick hangs back off like quick crashes, doubling up to max_restart_delay_ms
    assert [e["detail"]["delay_s"] for e in events if e["event"] == "backoff"] == [0.2, 0.4, 0.8, 0.8]


def test_a_paused_worker_finishes_its_current_item(m: ManagerHandle):
    def cycles() -> list[tuple[Any, ...]]:
        return m.sql("SELECT started_at, finished_at, items, ok FROM cycle_runs WHERE worker_name = 'slow' ORDER BY id")

    before = len(wait_for(cycles, 15, 0.02, "a first slow cycle"))
    wait_for(lambda: len(cycles()) > before, ITEM_S + 5, 0.02, "the next cycle to end")
    time.sleep(0.5)  # now inside the next one-item cycle, which takes ITEM_S
    pid = m.worker("slow")["pid"]
    ((paused_at,),) = m.sql("UPDATE feature_flags SET enabled = false WHERE flag_name = 'slow_enabled' RETURNING now()")
    m.wait_worker("slow", lambda w: w["state"] == "paused", timeout=ITEM_S + 5)
    # the cycle in hand when the flag went off was finished and recorded, its cursor committed
    (in_hand,) = [c for c in cycles() if c[0] < paused_at < c[1]]
    assert in_hand[2:] == (1, True)
    assert m.sql("SELECT value FROM sync_cursors WHERE worker_name = 'slow'") == [(len(cycles()),)]
    assert m.sql("SELECT phase FROM worker_heartbeats WHERE worker_name = 'slow'") == [("stopped",)]
    events = m.wait_events("slow", lambda es: "paused" in kinds(es), what="the pause stored")
    (exit_,) = [e for e in events if e["event"] == "exited"]
    assert exit_["pid"] == pid and exit_["detail"]["code"] == 0 and exit_["detail"]["reason"] == "paused", exit_


def test_a_worker_deaf_to_sigterm_is_killed_after_stop_timeout(m: ManagerHandle):
    pid = m.wait_worker("stubborn", lambda w: w["state"] == "running" and w["pid"])["pid"]
    wait_for(lambda: "[stubborn] deaf to SIGTERM" in m.output(), 10, what="the trap to be set")
    asked = time.monotonic()
    assert m.api("POST", "/api/workers/stubborn/stop").status_code == 202
    m.wait_worker("stubborn", lambda w: w["state"] == "stopped", timeout=HEALDEC["stop_timeout_s"] + 3)
    took = time.monotonic() - asked
    assert HEALDEC["stop_timeout_s"] <= took < HEALDEC["stop_timeout_s"] + 1.5, took
    wait_gone([pid], 1)
    events = m.wait_events("stubborn", lambda es: "exited" in kinds(es), what="the exit stored")
    (exit_,) = [e for e in events if e["event"] == "exited"]
    assert exit_["detail"]["signal"] == 9 and exit_["detail"]["reason"] == "operator stop"
    assert exit_["detail"]["forced"] == "SIGKILL: still running 3 s after SIGTERM"
    assert "did not stop within 3 s of SIGTERM: killed (SIGKILL)" in m.output()


def test_status_answers_from_memory_while_the_database_is_down(m: ManagerHandle, pg_admin_url: str):
    """Last in the module: every worker loses its database for a few seconds."""
    counter = m.wait_worker("counter", lambda w: w["healthy"])
    dbname = conninfo_to_dict(m.database_url)["dbname"]
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))

            def down_and_quick() -> dict[str, Any] | None:
                started = time.monotonic()
                w = m.worker("counter")
                assert time.monotonic() - started < 0.5, "the status endpoint waited on something"
                return w if any("database unreachable" in r for r in w["reasons"]) else None

            down = wait_for(down_and_quick, 10, 0.05, "the verdict to name the database")
            assert down["state"] == "running" and down["pid"] == counter["pid"]
            assert down["healthy"] is False and down["verdict"] == "degraded"
            health = m.http.get("/healthz").json()
            assert health["status"] == "degraded" and any("heartbeat sweep failing" in p for p in health["problems"])
            assert pid_alive(counter["pid"])
        finally:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    back = m.wait_worker("counter", lambda w: w["healthy"], timeout=15, what="counter healthy again")
    assert back["pid"] == counter["pid"] and back["restartCount"] == counter["restartCount"]  # not called hung
