"""Obeying upstream rate limits: spacing requests to an allowed rate, and reading `Retry-After`."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime


class Pacer:
    """At most `per_minute` requests a minute, evenly spaced; 0 or less means no limit.

    `wait(sleep)` blocks until the next request may go, through the worker's own `sleep`, so the
    wait heartbeats and ends early on SIGTERM.
    """

    def __init__(self, per_minute: float = 0.0) -> None:
        self.per_minute = float(per_minute)
        self._next_at = 0.0

    def wait(self, sleep: Callable[[float], None]) -> None:
        if self.per_minute <= 0:
            return
        delay = self._next_at - time.monotonic()
        if delay > 0:
            sleep(delay)
        self._next_at = max(self._next_at, time.monotonic()) + 60.0 / self.per_minute


def retry_after_seconds(value: str | None, default: float) -> float:
    """Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP date; `default` when
    absent or unreadable."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return default
