"""Live flags through plain SQL, settings seen by workers, and the audit trail."""

from __future__ import annotations

import time

from psycopg.conninfo import conninfo_to_dict

from tests.support.manager import example_worker, pid_alive
from tests.support.waiting import wait_for

FLAG_DEADLINE_S = 1.0
# Flag tests run with the periodic re-read out of reach, so only LISTEN/NOTIFY can pass them.
NO_REREAD = {"flag_reread_s": 3600}


def _committed_then(m, statement, name, check):
    m.sql(statement)
    committed = time.monotonic()
    w = m.wait_worker(name, check, timeout=5)
    return w, time.monotonic() - committed


def test_sql_flag_pauses_and_resumes_within_a_second(boot_manager):
    m = boot_manager({"counter": example_worker(), "other": example_worker()}, healdec=NO_REREAD)
    first = m.wait_worker("counter", lambda w: w["healthy"])
    paused, took = _committed_then(
        m,
        "UPDATE feature_flags SET enabled = false WHERE flag_name = 'counter_enabled'",
        "counter",
        lambda w: w["state"] == "paused",
    )
    assert took < FLAG_DEADLINE_S, f"paused after {took:.3f} s"
    assert paused["pid"] is None and paused["enabled"] is False and not pid_alive(first["pid"])
    assert paused["restartCount"] == 0
    assert m.worker("other")["state"] == "running"  # only the flagged worker is touched

    resumed, took = _committed_then(
        m,
        "UPDATE feature_flags SET enabled = true WHERE flag_name = 'counter_enabled'",
        "counter",
        lambda w: w["state"] == "running" and w["pid"],
    )
    assert took < FLAG_DEADLINE_S, f"running again after {took:.3f} s"
    assert resumed["restartCount"] == 0  # no budget spent
    m.wait_worker("counter", lambda w: w["healthy"])
    events = [e for (e,) in m.sql("SELECT event FROM supervision_events WHERE worker_name='counter' ORDER BY id")]
    assert "paused" in events and "resumed" in events


def test_flag_insert_with_defaults_and_delete_mean_what_they_say(boot_manager):
    m = boot_manager({"counter": example_worker()}, healdec=NO_REREAD)
    m.wait_worker("counter", lambda w: w["healthy"])
    m.sql("DELETE FROM feature_flags WHERE flag_name = 'counter_enabled'")  # a missing row means enabled
    time.sleep(0.2)
    assert m.worker("counter")["state"] == "running"
    m.sql(
        "SET application_name = 'psql-test';"
        " INSERT INTO feature_flags (flag_name, enabled) VALUES ('counter_enabled', false)"
    )
    m.wait_worker("counter", lambda w: w["state"] == "paused", timeout=3)
    (row,) = m.sql("SELECT description, updated_by FROM feature_flags WHERE flag_name = 'counter_enabled'")
    role = conninfo_to_dict(m.database_url)["user"]
    assert row == ("", f"{role} (psql-test)")  # who: the database role and the application name


def test_config_seeds_flags_but_never_overwrites(boot_manager, migrated_url):
    m = boot_manager({"counter": example_worker()}, start=False)
    m.sql("INSERT INTO feature_flags (flag_name, enabled) VALUES ('counter_enabled', false)")
    m.start()
    w = m.wait_worker("counter", lambda w: w["state"] == "paused")
    assert w["pid"] is None
    assert m.sql("SELECT enabled FROM feature_flags WHERE flag_name='counter_enabled'") == [(False,)]


def test_settings_reach_the_worker_at_its_next_cycle(boot_manager):
    m = boot_manager({"counter": example_worker()})
    m.wait_worker("counter", lambda w: w["itemsProcessed"] >= 5)
    response = m.api("PUT", "/api/settings/counter_batch_size", json={"value": 50})
    assert response.status_code == 200, response.text

    def seen() -> bool:
        (row,) = m.sql("SELECT detail FROM worker_heartbeats WHERE worker_name = 'counter'")
        return row[0]["config"].get("batch_size") == 50

    wait_for(seen, 5, what="the worker's effective config to show batch_size 50")
    before = m.worker("counter")["itemsProcessed"]
    m.wait_worker("counter", lambda w: w["itemsProcessed"] >= before + 50)


def test_every_change_is_audited_with_who(boot_manager):
    m = boot_manager({"counter": example_worker()})
    m.wait_worker("counter", lambda w: w["state"] == "running")
    assert m.api("PUT", "/api/flags/counter_enabled", json={"enabled": False}).status_code == 200
    m.sql("SET application_name = 'psql'; UPDATE feature_flags SET enabled = true WHERE flag_name = 'counter_enabled'")
    m.sql("INSERT INTO settings (key, value) VALUES ('counter_batch_size', '7')")
    rows = m.sql("SELECT kind, key, old_value, new_value, actor FROM config_audit ORDER BY id")
    changes = [(k, key, old, new) for k, key, old, new, _ in rows]
    assert ("flag", "counter_enabled", True, False) in changes
    assert ("flag", "counter_enabled", False, True) in changes
    assert ("setting", "counter_batch_size", None, 7) in changes
    actors = [actor for *_, actor in rows]
    assert "api:admin" in actors
    assert any("psql" in a for a in actors)  # raw SQL: the role and application name
    audit = m.api("GET", "/api/audit?key=counter_enabled").json()
    assert audit[0]["new_value"] is True and len(audit) >= 2


def test_dropped_listener_is_reported_and_recovers(boot_manager):
    m = boot_manager({"counter": example_worker()})
    m.wait_worker("counter", lambda w: w["healthy"])
    m.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'worker-manager:flags'")
    wait_for(lambda: "flag listener lost its database connection" in m.output(), 10, what="the drop to be reported")
    wait_for(lambda: m.http.get("/healthz").json()["flagListener"]["connected"], 10, what="the listener to reconnect")
    assert "flag listener reconnected" in m.output()
    m.sql("UPDATE feature_flags SET enabled = false WHERE flag_name = 'counter_enabled'")
    m.wait_worker("counter", lambda w: w["state"] == "paused", timeout=3)
