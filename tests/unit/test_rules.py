"""Healdec's rules as pure functions: backoff, budget, verdicts."""

from __future__ import annotations

import pytest

from healdec.rules import (
    HealthInputs,
    RestartPolicy,
    Verdict,
    backoff_delay_s,
    decide_after_crash,
    error_rate,
    judge,
)

POLICY = RestartPolicy(
    max_restarts=3, restart_window_s=60, min_uptime_s=10, restart_delay_ms=1000, max_restart_delay_ms=5000
)


@pytest.mark.parametrize(("streak", "delay"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (40, 5.0)])
def test_backoff_doubles_up_to_the_cap(streak, delay):
    assert backoff_delay_s(streak, POLICY) == delay


def test_quick_crash_backs_off_and_stable_run_restarts_at_once():
    quick = decide_after_crash(uptime_s=1, quick_crashes=1, restart_times=[], now=100, policy=POLICY)
    assert (quick.give_up, quick.delay_s, quick.quick_crashes) == (False, 2.0, 2)
    stable = decide_after_crash(uptime_s=10, quick_crashes=4, restart_times=[], now=100, policy=POLICY)
    assert (stable.give_up, stable.delay_s, stable.quick_crashes) == (False, 0.0, 0)


def test_budget_counts_only_restarts_inside_the_window():
    spent = decide_after_crash(uptime_s=50, quick_crashes=0, restart_times=[50, 60, 70], now=100, policy=POLICY)
    assert spent.give_up
    aged_out = decide_after_crash(uptime_s=50, quick_crashes=0, restart_times=[10, 60, 70], now=100, policy=POLICY)
    assert not aged_out.give_up


def test_error_rate():
    assert error_rate(0, 0) == 0.0
    assert error_rate(1, 4) == 0.25


def running(**kw):
    base = dict(
        state="running",
        uses_heartbeat=True,
        heartbeat_timeout_s=30,
        stale_after_s=120,
        uptime_s=50,
        heartbeat_age_s=1,
        phase="running",
        last_cycle_ok=True,
        success_age_s=5,
    )
    base.update(kw)
    return HealthInputs(**base)


def test_fresh_heartbeat_and_good_cycle_is_healthy():
    health = judge(running())
    assert health.healthy and health.verdict is Verdict.HEALTHY and health.reasons == []


def test_idle_worker_without_items_is_still_healthy():
    # success means a cycle completed, whether or not it found work
    assert judge(running(success_age_s=1)).verdict is Verdict.HEALTHY


def test_silent_worker_is_hung_and_down():
    health = judge(running(heartbeat_age_s=31))
    assert health.hung and health.verdict is Verdict.DOWN and not health.healthy
    assert "no heartbeat for 31 s" in health.reasons[0]


def test_no_first_heartbeat_is_degraded_then_hung():
    assert judge(running(heartbeat_age_s=None, uptime_s=2)).verdict is Verdict.DEGRADED
    assert judge(running(heartbeat_age_s=None, uptime_s=31)).hung


def test_stale_is_degraded_but_alive():
    health = judge(running(success_age_s=500))
    assert health.healthy and health.verdict is Verdict.DEGRADED and not health.hung
    assert health.reasons[0].startswith("stale: no successful cycle for 500 s")


def test_failed_last_cycle_is_unhealthy_and_degraded():
    health = judge(running(last_cycle_ok=False, last_error="HTTPError: 502"))
    assert not health.healthy and health.verdict is Verdict.DEGRADED
    assert health.reasons == ["last cycle failed: HTTPError: 502"]


def test_rate_limit_and_error_rate_are_reasons():
    health = judge(running(rate_limited_for_s=20, error_rate=0.5))
    assert health.verdict is Verdict.DEGRADED
    assert any("rate limit" in r for r in health.reasons) and any("error rate 50%" in r for r in health.reasons)


def test_waiting_for_configuration_is_reported_not_stale():
    health = judge(running(phase="waiting", last_error="hub_url is not set", success_age_s=None, uptime_s=999))
    assert not health.healthy and health.verdict is Verdict.DEGRADED
    assert health.reasons == ["waiting: hub_url is not set"]


@pytest.mark.parametrize(
    ("state", "verdict"),
    [("failed", "down"), ("backoff", "down"), ("paused", "healthy"), ("disabled", "healthy"), ("starting", "degraded")],
)
def test_non_running_states(state, verdict):
    health = judge(running(state=state))
    assert not health.healthy and health.verdict.value == verdict


def test_plain_command_alive_is_healthy():
    assert judge(running(uses_heartbeat=False, heartbeat_age_s=None)).healthy
