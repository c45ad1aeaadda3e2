"""Alerts reach a real HTTP receiver on loopback: once per episode, retried after a 500, with a
recovery alert, every attempt recorded, and the webhook's token nowhere in what the manager shows."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.manager import ManagerHandle, example_worker, free_port
from tests.support.waiting import wait_for

SECRET = "T0KEN-s3cr3t-9f8e7d"


class Receiver:
    """A webhook receiver: records every POST; answers 500 to the first `fail_first` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[tuple[str, dict[str, Any], int]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 500 if len(receiver.posts) < receiver.fail_first else 200
                receiver.posts.append((self.path, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body, status in self.posts if p == path and status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def boot_with_alerts(
    boot_manager: Any, workers: dict[str, Any], alerts: dict[str, Any], **kwargs: Any
) -> ManagerHandle:
    m: ManagerHandle = boot_manager(workers, start=False, **kwargs)
    config = yaml.safe_load(m.config_path.read_text())
    m.config_path.write_text(yaml.safe_dump({**config, "alerts": alerts}))
    return m.start()


def test_failed_is_alerted_once_retried_after_500_and_recovery_follows(boot_manager, receiver, tmp_path: Path):
    ready = tmp_path / "ready"  # the worker crashes at once until this file exists
    program = f"import os, sys, time\nif not os.path.exists({str(ready)!r}): sys.exit(3)\ntime.sleep(600)"
    receiver.fail_first = 1
    dead = f"http://127.0.0.1:{free_port()}"  # nobody listens: every attempt fails
    m = boot_with_alerts(
        boot_manager,
        {"flaky": {"command": [sys.executable, "-c", program], "heartbeat": False}},
        {
            "for_s": 60,  # the short restarting spells between crashes are not worth an alert
            "retry_base_s": 0.1,
            "webhooks": [
                {"url": f"{receiver.url}/slack/{SECRET}", "format": "slack"},
                {"url": f"{receiver.url}/json/{SECRET}"},
                {"url": f"{dead}/gone/{SECRET}"},
            ],
        },
        healdec={"max_restarts": 2, "restart_delay_ms": 20, "max_restart_delay_ms": 100},
    )

    m.wait_worker("flaky", lambda w: w["state"] == "failed", what="failed")
    wait_for(
        lambda: len(receiver.delivered(f"/slack/{SECRET}")) + len(receiver.delivered(f"/json/{SECRET}")) == 2,
        10,
        0.05,
        "both webhooks to get the alert",
    )
    [slack] = receiver.delivered(f"/slack/{SECRET}")
    [generic] = receiver.delivered(f"/json/{SECRET}")
    assert "flaky is FAILED" in slack["text"] and "restart budget spent" in slack["text"]
    assert (generic["worker"], generic["event"], generic["to"]) == (
        "flaky",
        "failed",
        {"state": "failed", "verdict": "down"},
    )
    assert generic["from"]["state"] != "failed" and generic["reasons"][0].startswith("failed: restart budget spent")
    assert len(receiver.posts) == 3  # one of the two first attempts got a 500 and was retried

    def recorded(url: str, count: int) -> list[tuple[Any, ...]] | None:
        rows = m.sql(
            "SELECT url, attempt, status_code, error, delivered FROM alert_deliveries WHERE url = %s ORDER BY id",
            (f"{url}/***",),
        )
        return rows if len(rows) >= count else None

    rows = wait_for(lambda: recorded(receiver.url, 3), 10, 0.05, "three recorded attempts")
    assert sorted((attempt, code, delivered) for _, attempt, code, _, delivered in rows) == [
        (1, 200, True),
        (1, 500, False),
        (2, 200, True),
    ]
    assert [error for *_, error, delivered in rows if not delivered] == ["HTTP 500"]

    gone = wait_for(lambda: recorded(dead, 4), 10, 0.05, "four attempts at the dead webhook")
    assert [(attempt, code, delivered) for _, attempt, code, _, delivered in gone] == [
        (n, None, False) for n in (1, 2, 3, 4)
    ]
    assert all(error.startswith("ConnectError") for *_, error, _ in gone)

    ready.touch()
    assert m.api("POST", "/api/workers/flaky/restart").status_code == 202
    wait_for(lambda: len(receiver.delivered(f"/json/{SECRET}")) == 2, 10, 0.05, "the recovery alert")
    recovered = receiver.delivered(f"/json/{SECRET}")[1]
    assert (recovered["event"], recovered["from"]["state"]) == ("recovered", "failed")
    assert recovered["to"] == {"state": "running", "verdict": "healthy"}
    wait_for(lambda: len(receiver.delivered(f"/slack/{SECRET}")) == 2, 10, 0.05, "the slack recovery alert")
    assert "flaky recovered after" in receiver.delivered(f"/slack/{SECRET}")[1]["text"]

    wait_for(lambda: recorded(receiver.url, 5), 10, 0.05, "five recorded attempts")
    wait_for(lambda: recorded(dead, 8), 10, 0.05, "eight attempts at the dead webhook")
    api = m.api("GET", "/api/alerts/deliveries", params={"worker": "flaky"})
    assert api.status_code == 200 and len(api.json()) == 13
    assert {row["url"] for row in api.json()} == {f"{receiver.url}/***", f"{dead}/***"}
    page = m.api("GET", "/workers/flaky")
    assert page.status_code == 200 and "Alerts sent" in page.text and "recovered" in page.text
    shown = api.text + page.text + m.output() + json.dumps(m.status())
    assert SECRET not in shown
    assert len(receiver.posts) == 5  # nothing more: one alert per webhook per episode


def test_degraded_alerts_once_after_for_s_and_a_settings_fix_brings_the_recovery(boot_manager, receiver):
    hook = f"/hook/{SECRET}"
    m = boot_with_alerts(
        boot_manager,
        {"counter": example_worker(batch_size="many")},  # a bad config value: it waits, degraded
        {"for_s": 1, "webhooks": [{"url": receiver.url + hook}]},
    )
    wait_for(lambda: receiver.delivered(hook), 15, 0.05, "the degraded alert")
    [alert] = receiver.delivered(hook)
    assert alert["event"] == "degraded" and alert["unhealthyForSeconds"] >= 1
    # On a loaded machine the worker may still be starting when for_s has passed; then the
    # alert must say so, otherwise it names the bad setting.
    if alert["to"]["state"] == "starting":
        assert alert["to"]["verdict"] == "degraded" and alert["reasons"] == ["waiting for the first heartbeat"]
    else:
        assert alert["to"] == {"state": "running", "verdict": "degraded"} and "batch_size" in alert["reasons"][0]
    m.wait_worker("counter", lambda w: w["heartbeatAgeSeconds"] is not None, what="a heartbeat")
    time.sleep(1)  # several sweeps and heartbeats later, still one alert for this episode
    assert len(receiver.posts) == 1

    assert m.api("PUT", "/api/settings/counter_batch_size", json={"value": 3}).status_code == 200
    wait_for(lambda: len(receiver.delivered(hook)) == 2, 15, 0.05, "the recovery alert")
    recovered = receiver.delivered(hook)[1]
    assert (recovered["event"], recovered["from"]["verdict"], recovered["to"]["verdict"]) == (
        "recovered",
        "degraded",
        "healthy",
    )
    assert len(receiver.posts) == 2
