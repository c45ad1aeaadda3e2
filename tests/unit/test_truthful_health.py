"""Issue 10's rules as pure functions: a blocked worker's one stable reason, growing lag, and how
worker failures are classified as blocking."""

from __future__ import annotations

from collections import Counter

import httpx

from healdec.rules import HealthInputs, Verdict, judge, lag_growth, record_lag
from workers.blocked import blocked_reason, error_kind, every_item_failing
from workers.errors import BudgetSpent, CredentialsRefused, NotConfigured, RateLimited, UpstreamError


def running(**facts) -> HealthInputs:
    base = {"state": "running", "uses_heartbeat": True, "heartbeat_timeout_s": 30, "stale_after_s": 60}
    return HealthInputs(**{**base, "heartbeat_age_s": 1.0, "uptime_s": 500.0, **facts})


def test_a_blocked_worker_is_degraded_with_only_its_reason_whatever_else_holds():
    reason = "not configured: hub_url is not set: set workers.fc.hub_url in the config or the settings row fc_hub_url"
    for phase in ("waiting", "running", "idle"):
        for ok in (None, True, False):
            health = judge(running(phase=phase, blocked=reason, last_cycle_ok=ok, error_rate=1.0, success_age_s=9e9))
            assert (health.healthy, health.verdict, health.reasons) == (False, Verdict.DEGRADED, [reason])


def test_a_starting_worker_is_not_yet_healthy_and_a_hung_one_is_still_down():
    assert judge(running(phase="starting")).verdict is Verdict.DEGRADED
    hung = judge(running(phase="waiting", blocked="not configured: x", heartbeat_age_s=99.0))
    assert hung.verdict is Verdict.DOWN and hung.hung


def test_lag_that_keeps_growing_for_the_window_is_named_with_its_figure():
    samples: list[tuple[float, float]] = []
    for t, lag in [(0, 10), (1, 10), (2, 40), (4, 90), (6, 1200)]:
        samples = record_lag(samples, t, lag, window_s=5)
    assert lag_growth(samples, now=6, window_s=5) == (10, 1200)
    health = judge(running(lag_growth=(10, 1200), lag_unit="blocks", lag_window_s=5, success_age_s=1))
    assert health.verdict is Verdict.DEGRADED and health.healthy
    assert health.reasons == ["lag growing: 1,200 blocks behind, up from 10 over 5.0 s"]


def test_lag_that_fell_plateaued_or_is_too_young_is_not_growth():
    fell = [(0.0, 10.0), (2.0, 50.0), (3.0, 20.0), (4.0, 30.0)]
    assert lag_growth(fell, now=6, window_s=5) is None
    flat: list[tuple[float, float]] = []
    for t in range(20):
        flat = record_lag(flat, t, 7, window_s=5)
    assert flat == [(0, 7)] and lag_growth(flat, now=19, window_s=5) is None
    young = [(3.0, 1.0), (4.0, 9.0)]
    assert lag_growth(young, now=6, window_s=5) is None  # not yet a whole window of history
    assert record_lag(fell, 7, None, window_s=5) == []  # no lag reported: the history clears


def test_failures_that_block_a_worker_say_what_is_wrong():
    assert blocked_reason(NotConfigured.missing("eth", "rpc_url", "ETH_RPC_URL")) == (
        "not configured: rpc_url is not set: set workers.eth.rpc_url in the config "
        "(or the environment variable ETH_RPC_URL) or the settings row eth_rpc_url"
    )
    assert blocked_reason(BudgetSpent("$2 of $2")) == "budget spent: $2 of $2"
    assert blocked_reason(CredentialsRefused("HTTP 401")) == "credentials refused: HTTP 401"
    request = httpx.Request("POST", "https://rpc.example.org:8545/")
    try:
        try:
            raise httpx.ConnectError("name not resolved", request=request)
        except httpx.ConnectError as exc:
            raise UpstreamError("eth_blockNumber: ConnectError talking to rpc.example.org") from exc
    except UpstreamError as wrapped:
        assert blocked_reason(wrapped) == "upstream unreachable: rpc.example.org"
    assert blocked_reason(UpstreamError("HTTP 502")) is None  # transient: the cycle failed, that is all
    assert blocked_reason(RateLimited("429", 5)) is None


def test_every_item_failing_names_the_most_common_error_kind():
    errors = Counter(error_kind(m) for m in ["ValueError: item 7 rejected", "ValueError: item 8 rejected", "KeyError"])
    assert every_item_failing(errors) == "every item failing; most common error: ValueError: item N rejected"
