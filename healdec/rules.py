"""Healdec's decisions as pure functions of plain inputs: no processes, no database, no clock.

Times are seconds (monotonic for process facts, database-clock ages for heartbeats). Each
function returns plain values, so every rule is unit-tested in microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int
    restart_window_s: float
    min_uptime_s: float
    restart_delay_ms: int
    max_restart_delay_ms: int


@dataclass(frozen=True)
class CrashDecision:
    """What to do after a worker crashed: restart after `delay_s`, or give up (`failed`)."""

    give_up: bool
    delay_s: float
    quick_crashes: int  # consecutive crashes that came before min_uptime_s


def restarts_in_window(restart_times: Iterable[float], now: float, window_s: float) -> int:
    return sum(1 for t in restart_times if now - t < window_s)


def backoff_delay_s(quick_crashes: int, policy: RestartPolicy) -> float:
    """Delay before the next restart: restart_delay_ms doubled per consecutive quick crash."""
    if quick_crashes <= 0:
        return 0.0
    delay_ms = policy.restart_delay_ms * 2 ** min(quick_crashes - 1, 32)
    return min(delay_ms, policy.max_restart_delay_ms) / 1000


def decide_after_crash(
    *,
    uptime_s: float,
    quick_crashes: int,
    restart_times: Iterable[float],
    now: float,
    policy: RestartPolicy,
) -> CrashDecision:
    """Restart at once after a stable run, back off after quick crashes, fail past the budget.

    `quick_crashes` is the count before this crash; `restart_times` are the budgeted restarts
    already made. Restarting now would be one more, so the budget is spent when the window
    already holds `max_restarts`.
    """
    quick = uptime_s < policy.min_uptime_s
    streak = quick_crashes + 1 if quick else 0
    if restarts_in_window(restart_times, now, policy.restart_window_s) >= policy.max_restarts:
        return CrashDecision(give_up=True, delay_s=0.0, quick_crashes=streak)
    return CrashDecision(give_up=False, delay_s=backoff_delay_s(streak, policy), quick_crashes=streak)


def error_rate(failed_cycles: int, total_cycles: int) -> float:
    """Failed cycles over all cycles (0 when there were none)."""
    return round(failed_cycles / total_cycles, 4) if total_cycles else 0.0


@dataclass(frozen=True)
class HealthInputs:
    """Everything Healdec knows about one worker at one moment."""

    state: str  # the supervision state (manager.states.WorkerState value)
    uses_heartbeat: bool
    heartbeat_timeout_s: float
    stale_after_s: float
    uptime_s: float | None = None  # since the current process started
    heartbeat_age_s: float | None = None  # None: no heartbeat from the current process yet
    phase: str | None = None  # what the worker says it is doing: running | waiting | idle
    last_cycle_ok: bool | None = None
    last_error: str | None = None
    success_age_s: float | None = None  # since the last successful cycle of this process
    error_rate: float = 0.0
    error_rate_threshold: float = 0.25
    rate_limited_for_s: float | None = None  # the worker is waiting out an upstream rate limit
    flag_name: str | None = None
    crash_note: str | None = None  # e.g. "exited with code 1; restarting in 2.0 s"
    memory_restarts_last_hour: int = 0  # graceful restarts for going over max_rss_mb
    max_rss_mb: float | None = None


@dataclass(frozen=True)
class Health:
    healthy: bool
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    hung: bool = False  # alive but silent past its heartbeat timeout: kill and restart


MEMORY_RESTARTS_DEGRADED = 3  # more memory restarts than this in an hour: `degraded`


def _memory_reasons(inputs: HealthInputs) -> list[str]:
    """A worker that keeps outgrowing its memory limit is not well, even between restarts."""
    count = inputs.memory_restarts_last_hour
    if count <= MEMORY_RESTARTS_DEGRADED:
        return []
    return [f"memory: restarted {count} times in the last hour for rss over max_rss_mb {inputs.max_rss_mb or 0:g}"]


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def judge(inputs: HealthInputs) -> Health:
    """The verdict and its reasons. Liveness (heartbeats) and staleness (success) stay separate."""
    state = inputs.state
    if state == "disabled":
        return Health(False, Verdict.HEALTHY, ["disabled in the config: the manager does not run it"])
    if state == "paused":
        flag = inputs.flag_name or "its flag"
        return Health(False, Verdict.HEALTHY, [f"paused: {flag} is false"])
    if state == "stopped":
        return Health(False, Verdict.HEALTHY, ["stopped (exited cleanly or stopped by an operator)"])
    if state == "failed":
        note = f" ({inputs.crash_note})" if inputs.crash_note else ""
        return Health(False, Verdict.DOWN, [f"failed: restart budget spent{note}; restart it to try again"])
    if state == "backoff":
        return Health(False, Verdict.DOWN, [f"crashed: {inputs.crash_note or 'restarting soon'}"])
    if state in ("starting", "stopping"):
        return Health(False, Verdict.DEGRADED, [f"{state}"])

    # running
    memory = _memory_reasons(inputs)
    if not inputs.uses_heartbeat:
        return Health(True, Verdict.DEGRADED if memory else Verdict.HEALTHY, memory)

    timeout = inputs.heartbeat_timeout_s
    if inputs.heartbeat_age_s is None:
        waited = inputs.uptime_s or 0.0
        if waited > timeout:
            return Health(
                False,
                Verdict.DOWN,
                [f"hung: no heartbeat {_seconds(waited)} after start (timeout {_seconds(timeout)})"],
                hung=True,
            )
        return Health(False, Verdict.DEGRADED, ["waiting for the first heartbeat"])
    if inputs.heartbeat_age_s > timeout:
        return Health(
            False,
            Verdict.DOWN,
            [f"hung: no heartbeat for {_seconds(inputs.heartbeat_age_s)} (timeout {_seconds(timeout)})"],
            hung=True,
        )

    reasons: list[str] = memory
    healthy = True
    if inputs.phase == "waiting":
        healthy = False
        reasons.append(f"waiting: {inputs.last_error or 'dependencies not ready'}")
    elif inputs.last_cycle_ok is False:
        healthy = False
        reasons.append(f"last cycle failed: {inputs.last_error or 'unknown error'}")
    if inputs.rate_limited_for_s is not None and inputs.rate_limited_for_s > 0:
        reasons.append(f"upstream rate limit: backing off for {_seconds(inputs.rate_limited_for_s)}")
    if inputs.error_rate > inputs.error_rate_threshold:
        reasons.append(f"error rate {inputs.error_rate:.0%} over the last hour")
    age_without_success = inputs.success_age_s if inputs.success_age_s is not None else inputs.uptime_s
    if inputs.phase != "waiting" and age_without_success is not None and age_without_success > inputs.stale_after_s:
        reasons.append(
            f"stale: no successful cycle for {_seconds(age_without_success)} "
            f"(stale after {_seconds(inputs.stale_after_s)})"
        )
    verdict = Verdict.DEGRADED if reasons else Verdict.HEALTHY
    return Health(healthy, verdict, reasons)
