"""How the console words and formats status values on first render (Jinja filters).

The browser keeps them current afterwards with the same rules in `static/format.js`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

# state → (indicator key, label). A running worker is labelled by Healdec's verdict instead.
STATE_LABELS = {
    "starting": ("starting", "Starting"),
    "stopping": ("stopping", "Stopping"),
    "paused": ("paused", "Paused"),
    "backoff": ("backoff", "Backoff"),
    "stopped": ("stopped", "Stopped"),
    "failed": ("failed", "Failed"),
    "disabled": ("disabled", "Disabled"),
}


def status_of(worker: dict[str, Any]) -> tuple[str, str]:
    """The indicator for one worker: what an operator reads first."""
    state = worker.get("state", "")
    if state == "running":
        if worker.get("healthy") and worker.get("verdict") == "healthy":
            return "healthy", "Healthy"
        if worker.get("verdict") == "down":
            return "down", "Down"
        if worker.get("verdict") == "degraded":
            return "degraded", "Degraded"
        return "running", "Running"
    return STATE_LABELS.get(state, ("unknown", state.title() or "Unknown"))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s < 600 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def percent(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return "0 %" if value == 0 else f"{value * 100:.{digits}f} %"


def cpu(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def exact(iso_time: str | None) -> str:
    """ISO 8601 UTC as `2026-01-01 12:00:03 UTC`."""
    if not iso_time:
        return "never"
    try:
        parsed = datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    except ValueError:
        return iso_time
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


def count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def cycle_ms(stats: dict[str, float | None] | None) -> str:
    """`{last, p50, p95}` cycle durations as `120 ms last · 95 ms median · 300 ms p95`."""
    if not stats or stats.get("last") is None:
        return "—"
    return " · ".join(
        f"{stats[k] or 0:,.0f} ms {label}" for k, label in (("last", "last"), ("p50", "median"), ("p95", "p95"))
    )


def per_second(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} / s"


def lag(worker: dict[str, Any]) -> str:
    """The worker's lag in its own unit (`12 blocks`), or a dash when it reports none."""
    value = worker.get("lag")
    return "—" if value is None else f"{value:,.0f} {worker.get('lagUnit') or ''}".rstrip()


FILTERS = {
    "duration": duration,
    "size": size,
    "percent": percent,
    "cpu": cpu,
    "exact": exact,
    "count": count,
    "cycle_ms": cycle_ms,
    "per_second": per_second,
    "lag": lag,
}


def summary(workers: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """The tiles above the table: how many workers are fine, need a look, or are off on purpose."""
    keys = [status_of(w)[0] for w in workers]
    return [
        ("total", "Workers", len(keys)),
        ("healthy", "Healthy", sum(k == "healthy" for k in keys)),
        ("attention", "Need attention", sum(k in ATTENTION for k in keys)),
        ("idle", "Paused or stopped", sum(k in IDLE for k in keys)),
    ]


ATTENTION = frozenset({"degraded", "down", "failed", "backoff"})
IDLE = frozenset({"paused", "stopped", "disabled"})
