"""Template-fork respawn: `module:` workers are forked from a pre-imported template process.

The manager still reads their output, notices their exit at once (pidfd) and restarts them; SIGHUP
swaps in a fresh template without touching running workers; a template that dies is replaced.
"""

from __future__ import annotations

import os
import signal

import psutil

from tests.support.manager import example_worker, wait_gone
from tests.support.waiting import wait_for


def _templates(m) -> list[int]:
    """The manager's direct children that are templates (forked workers share their command line)."""
    manager = psutil.Process(m.proc.pid)
    return [p.pid for p in manager.children() if "manager.zygote" in " ".join(p.cmdline())]


def _template_pid(m) -> int:
    return wait_for(lambda: (_templates(m) or [None])[0], 30, what="the template")


def test_a_module_worker_is_forked_from_the_template_and_respawned_from_it(boot_manager):
    secret = "sentinel-secret-7f3a"
    m = boot_manager({"counter": example_worker()}, env={"SOME_PROVIDER_API_KEY": secret})
    first = m.wait_worker("counter", lambda w: w["healthy"])["pid"]
    template = _template_pid(m)
    assert psutil.Process(first).ppid() == template
    # /proc/<pid>/environ of a forked worker is the template's: it holds no secret of the manager's.
    for pid in (template, first):
        environ = psutil.Process(pid).environ()
        assert "ADMIN_TOKEN" not in environ and secret not in "".join(environ.values()), pid
    assert os.getpgid(first) == first  # its own process group, like an exec'd worker
    wait_for(lambda: f"[counter] counter worker started (pid {first})" in m.output(), 10, what="prefixed output")

    os.kill(first, signal.SIGKILL)
    second = m.wait_worker("counter", lambda w: w["healthy"] and w["pid"] not in (None, first))["pid"]
    assert psutil.Process(second).ppid() == template
    exited = m.sql("SELECT detail->>'signal' FROM supervision_events WHERE worker_name='counter' AND event='exited'")
    assert exited == [(str(int(signal.SIGKILL)),)]  # the exit status came through the template


def test_sighup_swaps_the_template_and_a_dead_template_is_replaced(boot_manager):
    m = boot_manager({"counter": example_worker()})
    running = m.wait_worker("counter", lambda w: w["healthy"])["pid"]
    old = _template_pid(m)

    os.kill(m.proc.pid, signal.SIGHUP)  # pick up code changes: a fresh template, workers untouched
    fresh = wait_for(lambda: _template_pid_except(m, old), 30, what="a new template")
    assert m.worker("counter")["pid"] == running
    m.api("POST", "/api/workers/counter/restart").raise_for_status()
    restarted = m.wait_worker("counter", lambda w: w["healthy"] and w["pid"] not in (None, running))["pid"]
    assert psutil.Process(restarted).ppid() == fresh
    wait_gone([old], 5)  # the retired template left once its last worker was gone

    os.kill(fresh, signal.SIGKILL)  # its worker gets its parent-death signal and is restarted
    m.wait_worker("counter", lambda w: w["healthy"] and w["pid"] not in (None, restarted), timeout=20)
    wait_for(lambda: _template_pid_except(m, fresh), 30, what="the template to be started again")


def _template_pid_except(m, old: int) -> int | None:
    pids = [pid for pid in _templates(m) if pid != old]
    return pids[0] if pids else None
