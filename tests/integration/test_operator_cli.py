"""The operator's CLI against a running manager: `restart|stop|start NAME` and `logs NAME` through
its API with ADMIN_TOKEN, clear refusals without it, and an audit row for every CLI change.
"""

from __future__ import annotations

import getpass
import queue
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.support.cli import run_cli, start_cli
from tests.support.manager import TOKEN, ManagerHandle, example_worker, module_manager

TALKER = "echo to-out; echo to-err >&2; n=0; while :; do n=$((n+1)); echo tick $n; sleep 0.3; done"


@pytest.fixture(scope="module")
def m(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    tmp = tmp_path_factory.mktemp("operator")
    fleet = {"counter": example_worker(), "talker": {"command": ["bash", "-c", TALKER], "heartbeat": False}}
    with module_manager(pg_admin_url, tmp, fleet) as handle:
        yield handle


def cli(m: ManagerHandle, *args: str, token: str | None = TOKEN):
    env = {"ADMIN_TOKEN": token} if token is not None else None
    return run_cli(*args, "--config", str(m.config_path), env=env, drop=() if token is not None else ("ADMIN_TOKEN",))


def test_restart_stop_and_start_act_through_the_running_manager(m: ManagerHandle):
    first = m.wait_worker("counter", lambda w: w["healthy"])
    out = cli(m, "restart", "counter")
    assert out.returncode == 0 and out.stdout.startswith("counter: restart accepted"), out.stderr
    m.wait_worker("counter", lambda w: w["restartCount"] == 1 and w["pid"] not in (None, first["pid"]))

    assert cli(m, "stop", "counter").returncode == 0
    assert m.wait_worker("counter", lambda w: w["state"] == "stopped")["pid"] is None
    assert cli(m, "start", "counter").returncode == 0
    m.wait_worker("counter", lambda w: w["state"] == "running" and w["pid"])
    events = m.wait_events("counter", lambda es: es[-1]["event"] == "restarted" and len(es) > 5, what="the start")
    assert [e["event"] for e in events][-3:] == ["exited", "stopped", "restarted"]
    assert events[-3]["detail"]["reason"] == "operator stop"


def test_a_missing_or_wrong_token_is_refused_clearly_and_changes_nothing(m: ManagerHandle):
    before = m.wait_worker("counter", lambda w: w["state"] == "running" and w["pid"])
    missing = cli(m, "restart", "counter", token=None)
    assert missing.returncode == 4 and "ADMIN_TOKEN is not set" in missing.stderr
    wrong = cli(m, "stop", "counter", token="not-the-token")
    assert wrong.returncode == 4 and "refused ADMIN_TOKEN (HTTP 401" in wrong.stderr
    assert "not-the-token" not in wrong.stdout + wrong.stderr
    for result in (missing, wrong):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    after = m.worker("counter")
    assert (after["pid"], after["restartCount"], after["state"]) == (before["pid"], before["restartCount"], "running")

    unknown = cli(m, "restart", "nobody")
    assert unknown.returncode == 2 and "nobody" in unknown.stderr


def test_without_a_manager_the_command_says_so(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"api": {"port": 1}, "workers": {"w": example_worker()}}))
    result = run_cli("restart", "w", "--config", str(path), env={"ADMIN_TOKEN": TOKEN})
    assert result.returncode == 3 and "is `python -m manager` running?" in result.stderr


def test_logs_prints_recent_lines_with_stderr_marked(m: ManagerHandle):
    m.wait_worker("talker", lambda w: w["state"] == "running")
    m.wait_worker("talker", lambda w: "tick 2" in m.output())
    lines = cli(m, "logs", "talker", "-n", "300").stdout.splitlines()
    texts = [line.split(" ", 2)[1:] for line in lines]
    assert ["ERR", "to-err"] in texts and ["out", "to-out"] in texts
    assert all(line.split(" ", 1)[0].endswith("Z") for line in lines)  # each line with its time
    last_two = cli(m, "logs", "talker", "-n", "2").stdout.splitlines()
    assert len(last_two) == 2 and all(" out tick " in line for line in last_two)
    assert cli(m, "logs", "talker", token=None).returncode == 4


def test_logs_follow_prints_new_lines_once_until_interrupted(m: ManagerHandle):
    m.wait_worker("talker", lambda w: w["state"] == "running")
    proc = start_cli(
        "logs", "talker", "-n", "1", "--follow", "--config", str(m.config_path), env={"ADMIN_TOKEN": TOKEN}
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 10
        while len(seen) < 4 and time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0  # generous: a busy host may still be starting it
    assert len(seen) >= 4, seen
    ticks = [int(line.rsplit(" ", 1)[1]) for line in seen]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # in order, none twice, none missed


def test_cli_changes_leave_an_audit_row_with_who_and_when(m: ManagerHandle):
    before = datetime.now(UTC)
    assert cli(m, "settings", "set", "counter_note", '"hello"').returncode == 0
    assert cli(m, "flags", "disable", "counter_extra_enabled").returncode == 0
    after = datetime.now(UTC)
    rows = m.sql(
        "SELECT kind, key, new_value, actor, application_name, changed_at FROM config_audit"
        " WHERE key IN ('counter_note', 'counter_extra_enabled') ORDER BY id"
    )
    who = f"cli:{getpass.getuser()}"
    assert [(kind, key, new, actor, app) for kind, key, new, actor, app, _ in rows] == [
        ("setting", "counter_note", "hello", who, "worker-manager:cli"),
        ("flag", "counter_extra_enabled", False, who, "worker-manager:cli"),
    ]
    assert all(before <= changed_at <= after for *_, changed_at in rows)
