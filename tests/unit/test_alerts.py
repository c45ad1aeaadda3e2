"""Alert episodes, memory-limit figures and webhook URL masking, as pure functions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from healdec.rules import HealthInputs, Verdict, judge
from manager.alerts import AlertRules, Sighting, retry_delays_s
from manager.config import Config, describe_validation_error
from manager.limits import MB, over_limit_figure
from workers.redact import redact_webhook_url

HEALTHY = Sighting("running", "healthy")
DEGRADED = Sighting("running", "degraded", ["last cycle failed: boom"])
HUNG = Sighting("running", "down", ["hung: no heartbeat for 31 s (timeout 30 s)"])
BACKOFF = Sighting("backoff", "down", ["crashed: exited with code 3"])
FAILED = Sighting("failed", "down", ["failed: restart budget spent"])


def run(rules: AlertRules, sightings: list[tuple[float, Sighting]]) -> list[tuple[float, str]]:
    return [(t, a.event) for t, s in sightings if (a := rules.observe(s, t)) is not None]


def test_degraded_alerts_only_once_it_lasted_for_s_and_recovers_once():
    rules = AlertRules("w", for_s=60)
    seen = [(0, HEALTHY), (10, DEGRADED), (69, DEGRADED), (70, DEGRADED), (80, DEGRADED), (90, HEALTHY), (95, HEALTHY)]
    assert run(rules, seen) == [(70, "degraded"), (90, "recovered")]


def test_a_short_degraded_spell_sends_nothing_not_even_a_recovery():
    rules = AlertRules("w", for_s=60)
    assert run(rules, [(0, HEALTHY), (10, DEGRADED), (50, HEALTHY), (55, DEGRADED), (100, HEALTHY)]) == []


def test_one_alert_per_episode_while_flapping_and_escalation_to_failed_is_sent():
    rules = AlertRules("w", for_s=60)
    seen = [(0, HUNG), (1, BACKOFF), (2, DEGRADED), (3, HUNG), (4, BACKOFF), (5, HUNG), (6, FAILED), (7, FAILED)]
    assert run(rules, seen) == [(0, "down"), (6, "failed")]


def test_a_crash_loop_into_failed_is_one_alert():
    rules = AlertRules("w", for_s=60)
    seen = [(0, HEALTHY), (1, BACKOFF), (1.1, Sighting("starting", "degraded")), (1.2, BACKOFF), (1.5, FAILED)]
    [alert] = [a for t, s in seen if (a := rules.observe(s, t)) is not None]
    assert (alert.event, alert.before.state, alert.now.state) == ("failed", "running", "failed")
    body = alert.json_body("test")
    assert body["from"] == {"state": "running", "verdict": "healthy"} and body["to"] == {
        "state": "failed",
        "verdict": "down",
    }
    assert body["reasons"] == ["failed: restart budget spent"] and body["worker"] == "w"
    assert alert.text("test").startswith("[test] w is FAILED (state failed, verdict down): failed: restart budget")


def test_an_operator_stop_ends_the_episode_without_a_recovery_alert():
    rules = AlertRules("w", for_s=0)
    seen = [(0, FAILED), (5, Sighting("stopped", "healthy")), (6, Sighting("starting", "degraded")), (7, HEALTHY)]
    assert run(rules, seen) == [(0, "failed"), (6, "degraded"), (7, "recovered")]


def test_each_alert_reports_the_condition_it_moves_from_and_recovery_how_long_it_lasted():
    rules = AlertRules("w", for_s=0)
    [down] = [a for t, s in [(0, HEALTHY), (10, HUNG)] if (a := rules.observe(s, t))]
    assert (down.before, down.now) == (HEALTHY, HUNG)
    failed = rules.observe(FAILED, 20)
    assert failed is not None and (failed.before, failed.now) == (HUNG, FAILED)
    alert = rules.observe(HEALTHY, 25)
    assert alert is not None and alert.event == "recovered" and alert.unhealthy_for_s == 15
    assert (alert.before, alert.now) == (FAILED, HEALTHY)
    assert alert.text("m") == "[m] w recovered after 15 s: running, healthy"


def test_retry_delays_double():
    assert retry_delays_s(4, 1.0) == [1.0, 2.0, 4.0]
    assert retry_delays_s(1, 1.0) == []


def test_webhook_urls_keep_only_scheme_host_and_port():
    assert redact_webhook_url("https://hooks.example.com/services/T0/B0/s3cr3tT0ken") == "https://hooks.example.com/***"
    assert redact_webhook_url("http://u:pw@127.0.0.1:8080/hook?token=abc") == "http://127.0.0.1:8080/***"
    assert redact_webhook_url("not a url") == "***"


def test_memory_figure_and_the_degraded_rule():
    assert over_limit_figure(612 * MB, 512) == "rss 612 MB > max_rss_mb 512"
    assert over_limit_figure(512 * MB, 512) is None
    base = {"state": "running", "uses_heartbeat": False, "heartbeat_timeout_s": 30, "stale_after_s": 60}
    assert judge(HealthInputs(**base, memory_restarts_last_hour=3, max_rss_mb=512)).verdict is Verdict.HEALTHY
    health = judge(HealthInputs(**base, memory_restarts_last_hour=4, max_rss_mb=512))
    assert health.verdict is Verdict.DEGRADED
    assert health.reasons == ["memory: restarted 4 times in the last hour for rss over max_rss_mb 512"]


def test_config_refuses_bad_limits_and_webhooks_without_echoing_the_url():
    ok = Config.model_validate(
        {
            "alerts": {"webhooks": [{"url": "https://h.example/x", "format": "slack"}]},
            "workers": {"w": {"module": "workers.example", "max_rss_mb": 512, "nice": 10}},
        }
    )
    assert ok.workers["w"].max_rss_mb == 512 and ok.alerts.webhooks[0].format == "slack"
    for bad, where in [
        ({"workers": {"w": {"module": "workers.example", "max_rss_mb": 0}}}, "workers.w.max_rss_mb"),
        ({"workers": {"w": {"module": "workers.example", "nice": 20}}}, "workers.w.nice"),
        ({"alerts": {"webhooks": [{"url": "file:///SECRETX"}]}}, "alerts.webhooks.0.url"),
        ({"alerts": {"webhooks": [{"url": "https://h.example/x", "format": "xml"}]}}, "alerts.webhooks.0.format"),
    ]:
        with pytest.raises(ValidationError) as exc:
            Config.model_validate(bad)
        message = describe_validation_error(exc.value)
        assert message.startswith(f"{where}: ") and "SECRETX" not in message
