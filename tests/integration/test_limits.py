"""Resource limits with real processes: a worker that outgrows `max_rss_mb` is restarted
gracefully without spending its crash budget, and `nice` reaches the process."""

from __future__ import annotations

import sys

import psutil

from tests.support.waiting import wait_for

# Touches 64 MB (bytes * n writes every page), then idles; exits on SIGTERM like any worker.
HOG = "import time\nhog = b'x' * (64 * 1024 * 1024)\nprint('allocated', flush=True)\ntime.sleep(600)"


def test_over_max_rss_mb_restarts_gracefully_outside_the_budget(boot_manager):
    m = boot_manager(
        {
            "hog": {"command": [sys.executable, "-c", HOG], "heartbeat": False, "max_rss_mb": 40},
            "calm": {
                "command": [sys.executable, "-c", "import time; time.sleep(600)"],
                "heartbeat": False,
                "max_rss_mb": 200,
                "nice": 7,
            },
        },
        healdec={"max_restarts": 1, "sweep_interval_ms": 100},
    )
    # The API answers once the workers run, and the hog may have been restarted already by then:
    # what follows counts restarts from the first pid seen, not from the first pid ever.
    first = m.wait_worker("hog", lambda w: w["pid"], what="a pid")
    calm = m.wait_worker("calm", lambda w: w["pid"], what="a pid")
    assert psutil.Process(calm["pid"]).nice() == 7 != psutil.Process().nice()  # set, not inherited

    # Two restarts would spend a budget of 1 twice over if they counted against it.
    wanted = max(2, first["restartCount"] + 1)
    m.wait_worker(
        "hog", lambda w: w["restartCount"] >= wanted and w["state"] == "running", timeout=20, what="two restarts"
    )
    hog = m.worker("hog")
    assert hog["pid"] != first["pid"]

    events = m.sql("SELECT event, detail FROM supervision_events WHERE worker_name = 'hog' ORDER BY id")
    memory = [detail["reason"] for event, detail in events if event == "memory_restart"]
    assert len(memory) >= 2
    for reason in memory:
        mb = int(reason.split()[1])
        assert mb > 40 and reason == f"rss {mb} MB > max_rss_mb 40"
    exits = [detail for event, detail in events if event == "exited"]
    assert exits and all(d.get("reason") == "memory limit" for d in exits)
    assert "failed" not in [event for event, _ in events] and "backoff" not in [event for event, _ in events]

    later = m.worker("calm")  # under its limit: left alone
    assert (later["restartCount"], later["state"], later["pid"]) == (0, "running", calm["pid"])

    # More than three in an hour: Healdec calls it degraded and says why, while it runs.
    def memory_reason() -> list[str]:
        w = m.worker("hog")
        found = [r for r in w["reasons"] if r.startswith("memory: restarted")]
        return found if w["state"] == "running" and w["verdict"] == "degraded" else []

    [reason] = wait_for(memory_reason, 30, 0.02, "the memory reason")
    assert reason.endswith("times in the last hour for rss over max_rss_mb 40")
