"""Shutdown: SIGTERM stops everything cleanly; SIGKILL of the manager leaves no orphans."""

from __future__ import annotations

import os
import signal
import time

from tests.support.manager import example_worker, wait_gone

WORKERS = {
    "counter": example_worker(),
    # a shell whose child holds on: only a process-group signal reaches the grandchild
    "family": {"command": ["bash", "-c", "sleep 300 & wait"], "heartbeat": False},
}


def test_sigterm_exits_zero_with_no_child_left(boot_manager):
    m = boot_manager(WORKERS)
    m.wait_worker("counter", lambda w: w["healthy"])
    m.wait_worker("family", lambda w: w["state"] == "running")
    time.sleep(0.2)
    children = [p.pid for p in m.descendants()]
    assert len(children) >= 4  # guardian, counter, bash, sleep
    started = time.monotonic()
    assert m.terminate(timeout=15) == 0
    assert time.monotonic() - started < 5 + 2  # stop_timeout_s + 2
    wait_gone(children, 2)
    assert "stopped" in m.output()
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
