"""However the manager is SIGKILLed, no process of its fleet outlives it by more than 2 s.

Each case kills while a worker is inside an item far longer than 2 s, so a worker that merely
finished its current item before leaving would fail. A fresh manager on the same database then
carries on from the committed cursor: the interrupted batch was not committed, so nothing is lost.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.support.manager import example_worker, wait_gone
from tests.support.waiting import wait_for

LONG_ITEM = example_worker(batch_size=1, item_delay_ms=30_000)
# a shell whose child holds on: only the guardian's group signal reaches the grandchild
FAMILY = {"command": ["bash", "-c", "sleep 300 & wait"], "heartbeat": False}


def _guardian(children: list[psutil.Process]) -> int:
    return next(p.pid for p in children if "manager/guardian.sh" in " ".join(p.cmdline()))


@pytest.mark.parametrize("how", ["process group", "manager alone", "manager, then guardian"])
def test_a_sigkilled_manager_leaves_no_process_after_2_s(boot_manager, how):
    workers = {"slow": LONG_ITEM}
    if how != "manager, then guardian":  # with no guardian left, nothing can reach a grandchild
        workers["family"] = FAMILY
    m = boot_manager(workers, new_session=True)
    assert m.proc is not None
    m.wait_worker("slow", lambda w: w["state"] == "running" and w["heartbeatAgeSeconds"] is not None, timeout=30)
    if "family" in workers:
        m.wait_worker("family", lambda w: w["state"] == "running")
    wait_for(lambda: len(m.descendants()) >= len(workers) + 1 + ("family" in workers), 5, what="the fleet")
    time.sleep(0.3)  # well inside the 30 s item
    children = m.descendants()
    guardian = _guardian(children)
    assert os.getsid(guardian) != os.getsid(m.proc.pid)  # a group signal cannot reach the guardian

    killed = time.monotonic()
    if how == "process group":
        os.killpg(m.proc.pid, signal.SIGKILL)
    else:
        os.kill(m.proc.pid, signal.SIGKILL)
        if how == "manager, then guardian":
            os.kill(guardian, signal.SIGKILL)
    m.proc.wait(5)
    wait_gone([p.pid for p in children], 2.0 - (time.monotonic() - killed))

    # the interrupted batch left the cursor where it was; a fresh manager carries on from there
    assert m.sql("SELECT value FROM sync_cursors WHERE worker_name = 'slow'") == []
    fresh = boot_manager({"slow": example_worker(batch_size=1)})
    cursor = "SELECT (value #>> '{}')::int FROM sync_cursors WHERE worker_name = 'slow'"
    wait_for(lambda: m.sql(cursor) and m.sql(cursor)[0][0] >= 3, 15, what="the fresh manager to move the cursor on")
    assert fresh.terminate() == 0
