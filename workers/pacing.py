"""Obeying upstream rate limits: spacing requests to an allowed rate, and reading `Retry-After`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime


class Pacer:
    """At most `per_minute` requests a minute, evenly spaced; 0 or less means no limit.

    `wait(sleep)` blocks until the next request may go. Workers pass their own `sleep`, so the wait
    heartbeats and ends early on SIGTERM; clients shared by threads use the default `time.sleep`
    (each caller reserves its slot under a lock, so threads never go together).
    """

    def __init__(self, per_minute: float = 0.0) -> None:
        self.per_minute = float(per_minute)
        self._next_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def per_second(cls, rate: float) -> Pacer:
        return cls(rate * 60 if rate and rate > 0 else 0.0)

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> None:
        if self.per_minute <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_at)
            self._next_at = start + 60.0 / self.per_minute
        if start > now:
            sleep(start - now)


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
