"""Alerts: tell someone when a worker fails, goes down, stays degraded, and when it recovers.

`AlertRules` (pure) turns what Healdec sees about one worker, tick by tick, into at most one alert
per episode and level: an episode starts when the worker stops being healthy and ends when it is
healthy again (the recovery alert, if anything was alerted) or when an operator stops or pauses it
(silently: they know). Within an episode an alert fires only when the condition gets worse than
what was already sent, so flapping between `down` and `degraded` pages once.

`Alerts` is a manager part: one task evaluates every worker on each Healdec sweep interval (and at
once when a runner changes state), and each delivery runs in its own task with retries and
backoff, so a slow or dead receiver never delays supervision. Every attempt is recorded in
`alert_deliveries` with the URL masked (a webhook URL carries its receiver's token).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from manager.config import AlertsConfig, WebhookConfig
from manager.logs import iso
from sql import query
from workers.redact import SecretScrubber, redact_webhook_url

if TYPE_CHECKING:  # httpx (and the rich/click it pulls in) loads only when webhooks are configured
    import httpx

    from healdec.engine import HealthEngine
    from manager.supervisor import Supervisor

log = logging.getLogger(__name__)

LEVELS = {"degraded": 1, "down": 2, "failed": 3}  # how bad; an episode alerts only on getting worse
QUIET_STATES = frozenset({"stopped", "paused", "disabled"})  # an operator's choice: no alerts
RESTARTING_STATES = frozenset({"backoff", "starting", "stopping"})  # Healdec is handling it
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class Sighting:
    """One worker as Healdec judged it at one moment."""

    state: str
    verdict: str
    reasons: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, str]:
        return {"state": self.state, "verdict": self.verdict}


@dataclass(frozen=True)
class Alert:
    worker: str
    event: str  # failed | down | degraded | recovered
    before: Sighting
    now: Sighting
    at: float
    unhealthy_for_s: float

    def json_body(self, source: str) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "event": self.event,
            "from": self.before.as_json(),
            "to": self.now.as_json(),
            "reasons": self.now.reasons,
            "unhealthyForSeconds": round(self.unhealthy_for_s, 1),
            "time": iso(self.at),
            "source": source,
        }

    def text(self, source: str) -> str:
        if self.event == "recovered":
            head = f"{self.worker} recovered after {self.unhealthy_for_s:.0f} s: {self.now.state}, healthy"
        else:
            head = f"{self.worker} is {self.event.upper()} (state {self.now.state}, verdict {self.now.verdict})"
        why = "; ".join(self.now.reasons)
        return f"[{source}] {head}" + (f": {why}" if why else "")

    def body(self, webhook: WebhookConfig, source: str) -> dict[str, Any]:
        return {"text": self.text(source)} if webhook.format == "slack" else self.json_body(source)


class AlertRules:
    """The episode bookkeeping for one worker (pure: the caller passes the time)."""

    def __init__(self, worker: str, for_s: float) -> None:
        self.worker = worker
        self.for_s = for_s
        self.previous: Sighting | None = None
        self.unhealthy_since: float | None = None  # the episode's start
        self.alerted: str | None = None  # the worst level sent in this episode
        self.last_sent: Sighting | None = None  # what the last alert of this episode reported
        self.before_episode: Sighting | None = None  # the last sighting before the episode began

    def level(self, seen: Sighting, now: float) -> str | None:
        """The alert level this sighting calls for, if any (degraded only once it lasted for_s)."""
        if seen.state == "failed":
            return "failed"
        if seen.state == "running" and seen.verdict == "down":
            return "down"  # hung or silent while it should be working
        lasted = now - self.unhealthy_since if self.unhealthy_since is not None else 0.0
        return "degraded" if lasted >= self.for_s else None

    def observe(self, seen: Sighting, now: float) -> Alert | None:
        """Take one sighting; the alert it calls for, if any. An alert's `before` is what the
        previous alert of the episode reported, or how the worker was before the episode began."""
        previous, self.previous = self.previous, seen
        if seen.state in QUIET_STATES:  # stopped or paused on purpose: the episode ends unannounced
            self.unhealthy_since, self.alerted, self.last_sent = None, None, None
            return None
        if seen.state == "running" and seen.verdict == "healthy":
            last_sent, since = self.last_sent, self.unhealthy_since
            self.unhealthy_since, self.alerted, self.last_sent = None, None, None
            if last_sent is None or since is None:
                return None
            return Alert(self.worker, "recovered", last_sent, seen, now, now - since)
        if self.unhealthy_since is None:
            self.unhealthy_since, self.before_episode = now, previous or seen
        level = self.level(seen, now)
        if level is None or (self.alerted is not None and LEVELS[level] <= LEVELS[self.alerted]):
            return None
        before = self.last_sent or self.before_episode or seen
        self.alerted, self.last_sent = level, seen
        return Alert(self.worker, level, before, seen, now, now - self.unhealthy_since)


@dataclass(frozen=True)
class Delivery:
    """One attempt's outcome, as recorded."""

    worker: str
    event: str
    url: str  # masked
    attempt: int
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.error is None


def retry_delays_s(attempts: int, base_s: float) -> list[float]:
    """The waits between attempts: base, 2·base, 4·base ... (one fewer than the attempts)."""
    return [base_s * 2**i for i in range(attempts - 1)]


class Alerts:
    """The alerting part: watches the workers through Healdec, delivers alerts to the webhooks."""

    def __init__(
        self,
        config: AlertsConfig,
        supervisor: Supervisor,
        engine: HealthEngine,
        pool: AsyncConnectionPool | None,
        interval_s: float,
        *,
        retention_s: float = 14 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._supervisor = supervisor
        self._engine = engine
        self._pool = pool
        self._interval_s = interval_s
        self._retention_s = retention_s
        self._clock = clock
        self._source = f"worker-manager@{socket.gethostname()}"
        self._rules = {name: AlertRules(name, config.for_s) for name in supervisor.runners}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._last_prune = float("-inf")
        for runner in supervisor.runners.values():
            runner.on_change.append(lambda _runner: self._wake.set())

    @property
    def enabled(self) -> bool:
        return bool(self._config.webhooks)

    async def start(self) -> None:
        if not self.enabled:
            return
        # In a thread: importing httpx takes long enough (rich, click...) to stall the workers'
        # start if the event loop did it.
        httpx = await asyncio.to_thread(importlib.import_module, "httpx")
        self._client = httpx.AsyncClient(timeout=self._config.timeout_s, follow_redirects=False)
        self._task = asyncio.create_task(self._watch_forever(), name="alerts")

    async def stop(self) -> None:
        """Stop watching; give deliveries in flight a moment, then cancel them."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._deliveries:
            _, pending = await asyncio.wait(self._deliveries, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # ---- watching -----------------------------------------------------------------------------

    async def _watch_forever(self) -> None:
        while True:
            try:
                await self._prune_if_due()
                self.evaluate()
            except Exception as exc:  # alerting must never take anything else down
                log.warning("alert evaluation failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):  # not wait_for: see manager/listen.py
                    await self._wake.wait()
            self._wake.clear()

    def evaluate(self) -> list[Alert]:
        """Look at every worker once; start a delivery for each alert that is due."""
        now = self._clock()
        fired = []
        for name, runner in self._supervisor.runners.items():
            health = self._engine.health(runner)
            seen = Sighting(runner.state.value, health.verdict.value, [runner.scrub(r) for r in health.reasons])
            alert = self._rules[name].observe(seen, now)
            if alert is not None:
                fired.append(alert)
                for webhook in self._config.webhooks:
                    task = asyncio.create_task(self._deliver(alert, webhook), name=f"alert-{name}")
                    self._deliveries.add(task)
                    task.add_done_callback(self._deliveries.discard)
        return fired

    # ---- delivering ---------------------------------------------------------------------------

    async def _deliver(self, alert: Alert, webhook: WebhookConfig) -> None:
        import httpx

        assert self._client is not None
        masked = redact_webhook_url(webhook.url)
        parts = urllib.parse.urlsplit(webhook.url)
        scrub = SecretScrubber({webhook.url, parts.path, parts.query})  # errors may quote any of them
        body = alert.body(webhook, self._source)
        delays = retry_delays_s(self._config.attempts, self._config.retry_base_s)
        for attempt in range(1, self._config.attempts + 1):
            status: int | None = None
            try:
                response = await self._client.post(webhook.url, json=body)
                status = response.status_code
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {scrub(str(exc)) or 'no answer'}"
            await self._record(Delivery(alert.worker, alert.event, masked, attempt, status, error))
            if error is None:
                return
            if attempt <= len(delays):
                await asyncio.sleep(delays[attempt - 1])
        log.warning("alert %s for %s not delivered to %s after %d attempts", alert.event, alert.worker, masked, attempt)

    async def _record(self, delivery: Delivery) -> None:
        if self._pool is None:
            return
        d = delivery
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    query("insert_alert_delivery"),
                    (d.worker, d.event, d.url, d.attempt, d.status_code, d.error, d.delivered),
                )
        except Exception as exc:  # the database being down must not stop the delivery
            log.warning("could not record an alert delivery: %s", exc)

    async def _prune_if_due(self) -> None:
        if self._pool is None or time.monotonic() - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = time.monotonic()
        async with self._pool.connection() as conn:
            await conn.execute(query("prune_alert_deliveries"), {"keep_s": self._retention_s})
