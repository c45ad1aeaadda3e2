"""What a worker raises to tell the base class how to react."""

from __future__ import annotations


class WorkerError(Exception):
    """Base of the errors below."""


class NotConfigured(WorkerError):
    """A dependency (endpoint, credential) is missing: report it and wait, never crash-loop."""


class UpstreamError(WorkerError):
    """The upstream service failed (5xx, timeout, malformed reply): the cycle fails, retried later."""


class RateLimited(UpstreamError):
    """The upstream asked us to slow down; the next cycle waits `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after_s = max(0.0, float(retry_after_s))
