"""Why a worker cannot do its job, in one stable line an operator can act on.

A blocked worker keeps reporting the same reason with every heartbeat until a cycle succeeds, so
Healdec's verdict (`degraded`) does not flip while the cause stands. The causes: not configured,
a spent budget, credentials refused, the upstream unreachable, and every item of a cycle failing.
"""

from __future__ import annotations

import re
from collections import Counter

from workers.errors import BudgetSpent, CredentialsRefused, NotConfigured, UpstreamUnreachable

# Connection failures by class name: httpx and its forks, openai's wrapper, the socket layer.
_UNREACHABLE = frozenset({"ConnectError", "ConnectTimeout", "APIConnectionError", "ConnectionRefusedError", "gaierror"})


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def unreachable_host(exc: BaseException) -> str | None:
    """The host a connection failed to, when `exc` (or what caused it) is a connection failure."""
    for link in _chain(exc):
        if isinstance(link, UpstreamUnreachable):
            return link.host
        if type(link).__name__ in _UNREACHABLE:
            try:
                host = link.request.url.host  # type: ignore[attr-defined]
            except Exception:  # no request attached (socket-level errors)
                host = None
            return str(host) if host else "the upstream"
    return None


def blocked_reason(exc: BaseException) -> str | None:
    """The reason a failure blocks the worker, or None for an ordinary (transient) failure."""
    if isinstance(exc, BudgetSpent):
        return f"budget spent: {exc}"
    if isinstance(exc, NotConfigured):
        return f"not configured: {exc}"
    if isinstance(exc, CredentialsRefused):
        return f"credentials refused: {exc}"
    host = unreachable_host(exc)
    if host is not None:
        return f"upstream unreachable: {host}"
    return None


_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+")


def error_kind(message: str) -> str:
    """An error message with its item-specific numbers and hashes blanked, for counting alike errors."""
    return _VARYING.sub("N", message)


def every_item_failing(errors: Counter[str]) -> str:
    """The reason for a cycle in which no item succeeded, naming the most common error."""
    common = errors.most_common(1)
    return f"every item failing; most common error: {common[0][0] if common else 'see the worker errors'}"
