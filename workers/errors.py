"""What a worker raises to tell the base class how to react."""

from __future__ import annotations


class WorkerError(Exception):
    """Base of the errors below."""


class NotConfigured(WorkerError):
    """A dependency (endpoint, credential) is missing: report it and wait, never crash-loop."""

    @classmethod
    def missing(cls, worker: str, key: str, env: str | None = None) -> NotConfigured:
        """The standard message for an unset key: where to set it, in the config and as a settings row."""
        via_env = f" (or the environment variable {env})" if env else ""
        return cls(
            f"{key} is not set: set workers.{worker}.{key} in the config{via_env} or the settings row {worker}_{key}"
        )


class BudgetSpent(NotConfigured):
    """A spending limit is reached: wait (without calling the upstream) until it frees up."""


class UpstreamError(WorkerError):
    """The upstream service failed (5xx, timeout, malformed reply): the cycle fails, retried later."""


class CredentialsRefused(UpstreamError):
    """The upstream refused our credentials (HTTP 401/403): nothing works until someone fixes them."""


class UpstreamUnreachable(UpstreamError):
    """No connection to the upstream at all (refused, no route, name not resolved)."""

    def __init__(self, message: str, host: str) -> None:
        super().__init__(message)
        self.host = host


class RateLimited(UpstreamError):
    """The upstream asked us to slow down; the next cycle waits `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after_s = max(0.0, float(retry_after_s))
