"""Shutdown: SIGTERM stops everything cleanly; SIGKILL of the manager leaves no orphans."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.manager import ManagerHandle, example_worker, wait_gone

WORKERS = {
    "counter": example_worker(),
    # a shell whose child holds on: only a process-group signal reaches the grandchild
    "family": {"command": ["bash", "-c", "sleep 300 & wait"], "heartbeat": False},
}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_exits_zero_with_no_child_left(boot_manager, sig):
    m = boot_manager(WORKERS)
    m.wait_worker("counter", lambda w: w["healthy"])
    m.wait_worker("family", lambda w: w["state"] == "running")
    time.sleep(0.2)
    children = [p.pid for p in m.descendants()]
    assert len(children) >= 4  # guardian, counter, bash, sleep
    started = time.monotonic()
    m.proc.send_signal(sig)
    assert m.proc.wait(15) == 0
    assert time.monotonic() - started < 5 + 2  # stop_timeout_s + 2
    wait_gone(children, 2)
    assert "[counter] counter worker stopped" in m.output()  # the worker itself said goodbye
    # the graceful stop reached the worker: it wrote its last heartbeat on the way out
    assert m.sql("SELECT phase FROM worker_heartbeats WHERE worker_name='counter'") == [("stopped",)]


def test_sigkill_of_the_manager_leaves_no_orphans(boot_manager):
    m = boot_manager(WORKERS)
    m.wait_worker("counter", lambda w: w["healthy"])
    m.wait_worker("family", lambda w: w["state"] == "running")
    time.sleep(0.2)
    children = [p.pid for p in m.descendants()]
    assert len(children) >= 4
    os.kill(m.proc.pid, signal.SIGKILL)
    m.proc.wait(5)
    wait_gone(children, 2.0)


# The long-running parts in the order the manager starts them; HTTP comes last.
STARTED_BEFORE_HTTP = [
    "database pool",
    "orphan guardian",
    "event recorder",
    "worker template",
    "workers",
    "memory limits",
    "flag listener",
    "healdec",
    "alerts",
    "instance audit",
    "leases",
]


def test_a_failure_late_in_startup_stops_the_started_workers_in_reverse(tmp_path: Path, database_url: str):
    m = ManagerHandle(tmp_path, database_url, {"counter": example_worker()})
    with socket.socket() as squatter:  # the API port is taken: HTTP, the last part, cannot start
        squatter.bind(("127.0.0.1", m.port))
        squatter.listen()
        try:
            with pytest.raises(AssertionError, match="manager exited with 1"):
                m.start()
        finally:
            m.close()
    output = m.output()
    assert f"cannot listen on 127.0.0.1:{m.port}" in output
    stops = [
        line.removeprefix("[manager] stopping ")
        for line in output.splitlines()
        if line.startswith("[manager] stopping ")
    ]
    assert stops == list(reversed(STARTED_BEFORE_HTTP))
    # the worker had started and was stopped by the shutdown while the event recorder still ran
    events = m.sql(
        "SELECT event, pid, detail->>'reason' FROM supervision_events WHERE worker_name = 'counter' ORDER BY id"
    )
    assert events[0][0] == "started" and events[-1][0] == "exited" and events[-1][2] == "shutdown", events
    wait_gone([events[0][1]], 2)


def test_sigterm_stops_the_parts_in_reverse_order(boot_manager):
    m = boot_manager({"counter": example_worker()})
    m.wait_worker("counter", lambda w: w["state"] == "running")
    assert m.terminate(timeout=15) == 0
    stops = [
        line.removeprefix("[manager] stopping ")
        for line in m.output().splitlines()
        if line.startswith("[manager] stopping ")
    ]
    assert stops == ["http", *reversed(STARTED_BEFORE_HTTP)]
