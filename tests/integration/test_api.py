"""The HTTP API: auth on every mutation, detail, flags, settings, metrics, healthz, docs."""

from __future__ import annotations

import time

from tests.support.manager import example_worker


def test_mutations_without_token_are_refused_and_change_nothing(boot_manager):
    m = boot_manager({"counter": example_worker()})
    before = m.wait_worker("counter", lambda w: w["healthy"])
    for method, path, body in [
        ("POST", "/api/workers/counter/restart", None),
        ("POST", "/api/workers/counter/stop", None),
        ("POST", "/api/workers/counter/start", None),
        ("PUT", "/api/flags/counter_enabled", {"enabled": False}),
        ("PUT", "/api/settings/counter_batch_size", {"value": 1}),
    ]:
        for token in (None, "wrong-token"):
            response = m.api(method, path, token=token, json=body)
            assert response.status_code == 401, (method, path, token, response.text)
    time.sleep(0.3)
    after = m.worker("counter")
    assert after["pid"] == before["pid"] and after["state"] == "running" and after["restartCount"] == 0
    assert m.sql("SELECT enabled FROM feature_flags WHERE flag_name='counter_enabled'") == [(True,)]
    assert m.sql("SELECT count(*) FROM settings") == [(0,)]
    assert m.api("GET", "/api/flags", token=None).status_code == 401
    assert m.api("GET", "/api/workers/counter", token=None).status_code == 401


def test_viewer_token_reads_but_cannot_change(boot_manager):
    m = boot_manager({"counter": example_worker()}, env={"VIEWER_TOKEN": "viewer-token"})
    m.wait_worker("counter", lambda w: w["state"] == "running")
    assert m.api("GET", "/api/flags", token="viewer-token").status_code == 200
    assert m.api("POST", "/api/workers/counter/stop", token="viewer-token").status_code == 403
    assert m.worker("counter")["state"] == "running"


def test_worker_detail_has_logs_events_errors_and_masked_config(boot_manager):
    m = boot_manager(
        {
            "counter": example_worker(fail_items=[1], api_key="sk-very-secret"),
            "leaky": {
                "command": ["bash", "-c", "echo the password is $SOME_PASSWORD; exec sleep 300"],
                "heartbeat": False,
                "secrets": ["SOME_PASSWORD"],  # workers get only the secrets they declare
            },
            "blabber": example_worker(interval_ms=60000),
        },  # one cycle, then quiet: our row stays
        env={"SOME_PASSWORD": "hunter2-secret"},
    )
    m.wait_worker("counter", lambda w: w["itemsProcessed"] > 0)
    detail = m.api("GET", "/api/workers/counter").json()
    assert detail["name"] == "counter" and detail["state"] == "running"
    assert any("worker started" in line["text"] for line in detail["logs"])
    assert detail["events"][0]["event"] in ("started", "restarted")
    assert any("configured to fail" in e["message"] for e in detail["errors"])
    assert detail["config"]["api_key"] == "***"
    assert (
        "sk-very-secret"
        not in m.http.get("/api/workers/counter", headers={"Authorization": "Bearer test-admin-token"}).text
    )
    assert "sk-very-secret" not in m.output()
    assert m.api("GET", "/api/workers/nope").status_code == 404
    leaky = m.api("GET", "/api/workers/leaky").json()
    assert any(line["text"] == "the password is ***" for line in leaky["logs"])
    assert "hunter2-secret" not in m.output()
    # an error message carrying a secret (as a library's exception text might) is scrubbed too
    m.wait_worker("blabber", lambda w: w["itemsProcessed"] > 0)
    m.sql("UPDATE worker_heartbeats SET last_error = 'auth failed for hunter2-secret' WHERE worker_name = 'blabber'")
    m.sql("INSERT INTO worker_errors (worker_name, message) VALUES ('blabber', 'token hunter2-secret refused')")
    blabber = m.wait_worker("blabber", lambda w: w["lastError"] is not None, what="the planted error")
    assert blabber["lastError"] == "auth failed for ***"
    detail = m.api("GET", "/api/workers/blabber").json()
    assert [e["message"] for e in detail["errors"]] == ["token *** refused"]
    assert "hunter2-secret" not in m.http.get("/api/workers/status").text


def test_flags_and_settings_endpoints(boot_manager):
    m = boot_manager({"counter": example_worker()})
    flags = m.api("GET", "/api/flags").json()
    assert [f["flag_name"] for f in flags] == ["counter_enabled"] and flags[0]["enabled"] is True
    put = m.api("PUT", "/api/flags/counter_enabled", json={"enabled": False})
    assert put.status_code == 200 and put.json()["updated_by"] == "api:admin"
    m.wait_worker("counter", lambda w: w["state"] == "paused", timeout=3)
    assert m.api("PUT", "/api/flags/counter_enabled", json={"enabled": "maybe"}).status_code == 422
    assert m.api("PUT", "/api/settings/counter_subs", json={"value": ["a", "b"]}).json()["value"] == ["a", "b"]
    assert m.api("PUT", "/api/settings/counter_token", json={"value": "s3cret"}).json()["value"] == "***"
    listed = {s["key"]: s["value"] for s in m.api("GET", "/api/settings").json()}
    assert listed == {"counter_subs": ["a", "b"], "counter_token": "***"}
    assert m.api("DELETE", "/api/settings/counter_subs", token=None).status_code == 401
    assert m.api("DELETE", "/api/settings/counter_subs").status_code == 204
    assert m.api("DELETE", "/api/settings/counter_subs").status_code == 404
    assert [s["key"] for s in m.api("GET", "/api/settings").json()] == ["counter_token"]


def test_metrics_healthz_and_docs(boot_manager):
    m = boot_manager({"counter": example_worker()})
    m.wait_worker("counter", lambda w: w["healthy"] and w["itemsProcessed"] > 0)
    text = m.http.get("/metrics").text
    assert 'worker_up{worker="counter"} 1.0' in text
    assert 'worker_healthy{worker="counter"} 1.0' in text
    assert 'worker_state{state="running",worker="counter"} 1.0' in text
    assert "worker_restarts_total" in text and "worker_items_processed_total" in text
    health = m.http.get("/healthz").json()
    assert health["status"] == "ok" and health["flagListener"]["connected"] is True
    docs = m.http.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in docs.text and "'/openapi.json'" in docs.text  # the UI, fed by our schema
    assert "/api/workers/status" in m.http.get("/openapi.json").json()["paths"]
