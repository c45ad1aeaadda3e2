"""Issue 10: a worker that cannot do its job reads `degraded` on every read, through the API, the
CLI and `/metrics`, for as long as the cause stands; healthy again only after a successful cycle."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from typing import Any

from manager import cli
from tests.support.manager import ManagerHandle, example_worker, free_port

FAST = {"interval_ms": 300, "heartbeat_interval_ms": 200}


def cli_status(m: ManagerHandle, *args: str) -> str:
    """`python -m manager status` against the running manager (in this process, to keep the pace)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["status", "--config", str(m.config_path), *args]) == 0
    return out.getvalue()


def metric(m: ManagerHandle, name: str, labels: str) -> float | None:
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", m.http.get("/metrics").text, re.M)
    return float(found[1]) if found else None


def observe(m: ManagerHandle, name: str, seconds: float) -> list[dict[str, Any]]:
    """Every 0.5 s for `seconds`: the API, `status --json`, the WHY column and `/metrics` must agree
    that `name` is degraded for one unchanging reason. Returns the API objects seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        api = m.worker(name)
        (cli,) = [w for w in json.loads(cli_status(m, "--json")) if w["name"] == name]
        table = next(line for line in cli_status(m).splitlines() if line.startswith(f"{name} "))
        for w in (api, cli):
            assert (w["healthy"], w["verdict"]) == (False, "degraded"), w
            assert w["reasons"] == seen[0]["reasons"] if seen else len(w["reasons"]) == 1, w
        assert table.endswith(api["reasons"][0]) and " degraded " in table, table
        assert metric(m, "worker_verdict", f'verdict="degraded",worker="{name}"') == 1.0
        assert metric(m, "worker_healthy", f'worker="{name}"') == 0.0
        seen.append(api)
        time.sleep(0.5)
    return seen


def test_unconfigured_then_unreachable_never_reads_healthy(boot_manager):
    dead = free_port()  # nothing listens here
    m = boot_manager({"fc": {"module": "workers.social.farcaster", "hub_url": "", "fids": [3], "retries": 0, **FAST}})
    waiting = m.wait_worker("fc", lambda w: w["reasons"] and w["reasons"][0].startswith("not configured"))
    reason = waiting["reasons"][0]
    assert "workers.fc.hub_url" in reason and "settings row fc_hub_url" in reason, reason
    assert "FARCASTER_HUB_URL" in reason
    seen = observe(m, "fc", 3.0)  # 15 heartbeats and sweeps of 0.2 s
    assert seen[-1]["state"] == "running" and seen[-1]["lastError"]
    assert "fc waits: not configured: hub_url is not set" in m.output()  # the boot log names what to set
    assert "make devnet" in m.output()

    m.sql("INSERT INTO settings (key, value) VALUES ('fc_hub_url', %s)", (json.dumps(f"http://127.0.0.1:{dead}"),))
    unreachable = m.wait_worker("fc", lambda w: w["reasons"] == ["upstream unreachable: 127.0.0.1"], what="unreachable")
    assert unreachable["healthy"] is False
    seen = observe(m, "fc", 2.0)  # several failed cycles: the same reason throughout
    last = seen[-1]
    assert last["cycleErrorRate"] == 1.0 and last["errorRate"] == 1.0  # a failed cycle counts as a failed item
    assert last["cycleMs"]["last"] is not None and last["cycleMs"]["p95"] >= last["cycleMs"]["p50"]


def test_every_item_failing_is_degraded_until_an_item_succeeds(boot_manager):
    m = boot_manager({"w": example_worker(reject_all=True, **FAST)})
    m.wait_worker("w", lambda w: w["reasons"] and w["reasons"][0].startswith("every item failing"))
    seen = observe(m, "w", 2.0)
    assert seen[-1]["reasons"] == ["every item failing; most common error: ValueError: item N rejected by the upstream"]
    assert seen[-1]["errorRate"] == 1.0 and seen[-1]["cycleErrorRate"] == 0.0  # cycles complete, items fail
    m.sql("INSERT INTO settings (key, value) VALUES ('w_reject_all', 'false')")
    well = m.wait_worker("w", lambda w: w["healthy"], what="healthy after a successful cycle")
    # Working again; the hour's item error rate still shows, as its own reason.
    assert well["reasons"] == [f"error rate {well['errorRate']:.0%} of items over the last hour"], well
    m.sql("INSERT INTO settings (key, value) VALUES ('w_interval_ms', '0')")  # refused: the old value stays
    refused = m.wait_worker("w", lambda w: w["reasons"][0].startswith("refused"), what="the refused row")
    assert refused["reasons"][0].startswith("refused settings row w_interval_ms: interval_ms:"), refused
    assert refused["verdict"] == "degraded" and refused["state"] == "running"


def test_error_rate_counts_items_and_the_cycle_rate_is_its_own_field(boot_manager):
    m = boot_manager({"w": example_worker(batch_size=5, fail_items=[1, 3], interval_ms=60000)})
    w = m.wait_worker("w", lambda w: w["cyclesLastHour"] == 1, what="the first cycle")
    assert (w["errorRate"], w["cycleErrorRate"], w["itemsProcessed"]) == (0.4, 0.0, 3)
    assert w["itemsPerSecond"] > 0
    assert metric(m, "worker_error_rate", 'worker="w"') == 0.4
    assert metric(m, "worker_cycle_error_rate", 'worker="w"') == 0.0


def test_lag_appears_clears_and_growing_lag_is_degraded(boot_manager):
    workers = {
        "catching": example_worker(batch_size=5, head=60, **FAST),  # 12 cycles: seen behind even on a busy host
        "falling": example_worker(batch_size=1, head=0, head_growth=10, **FAST),
    }
    m = boot_manager(workers, healdec={"lag_degraded_after_s": 1.5})
    first = m.wait_worker("catching", lambda w: w["lag"] is not None)
    assert first["lagUnit"] == "rows" and first["lag"] > 0
    caught = m.wait_worker("catching", lambda w: w["lag"] == 0, what="the lag to clear")
    assert caught["verdict"] == "healthy" and metric(m, "worker_lag", 'unit="rows",worker="catching"') == 0.0
    behind = m.wait_worker("falling", lambda w: w["verdict"] == "degraded", what="growing lag", timeout=20)
    (reason,) = behind["reasons"]
    assert re.fullmatch(r"lag growing: [\d,]+ rows behind, up from [\d,]+ over 1\.5 s", reason), reason
    m.sql("INSERT INTO settings (key, value) VALUES ('falling_head', 'null')")
    cleared = m.wait_worker("falling", lambda w: w["lag"] is None and w["verdict"] == "healthy", what="no lag")
    assert cleared["reasons"] == []
