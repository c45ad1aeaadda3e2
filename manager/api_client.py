"""Talking to the running manager's HTTP API from the command line.

The operator commands (`restart|stop|start NAME`, `logs NAME`, `run-now NAME`) act through the
manager that runs the workers, not through the database, so they take effect at once and leave
the same trail as the console. The admin token comes from `ADMIN_TOKEN`; a missing or refused
token is a clear message and exit status 4, never a traceback.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from manager.config import Config
from manager.errors import ManagerError, ManagerNotRunning, UnknownWorker, WorkerConflict

TOKEN_HELP = "export ADMIN_TOKEN=<the token the manager printed at boot, or the ADMIN_TOKEN it runs with>"


class NotAuthorized(ManagerError):
    """ADMIN_TOKEN is missing, or the running manager refused it."""

    exit_code = 4


def api_base(config: Config) -> str:
    """The manager's base URL; a wildcard listen address is reached on loopback."""
    host = config.api.host if config.api.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.api.port}"


def admin_token() -> str:
    token = os.environ.get("ADMIN_TOKEN", "").strip()
    if not token:
        raise NotAuthorized(f"ADMIN_TOKEN is not set: {TOKEN_HELP}")
    return token


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else str(detail or body)


def call_manager(config: Config, method: str, path: str, timeout: float = 10, **kwargs: Any) -> httpx.Response:
    """One authenticated request to the running manager; API refusals become ManagerErrors.

    401/403 → NotAuthorized (exit 4), 404 → UnknownWorker (2), 409 → WorkerConflict (1),
    no answer → ManagerNotRunning (3). The token never appears in a message.
    """
    url = api_base(config) + path
    headers = {"Authorization": f"Bearer {admin_token()}"}
    try:
        response = httpx.request(method, url, headers=headers, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise ManagerNotRunning(f"cannot reach the manager at {url}: {exc} (is `python -m manager` running?)") from None
    if response.status_code in (401, 403):
        raise NotAuthorized(
            f"the manager at {api_base(config)} refused ADMIN_TOKEN (HTTP {response.status_code}: "
            f"{_detail(response)}); {TOKEN_HELP}"
        )
    if response.status_code == 404:
        raise UnknownWorker(_detail(response))
    if response.status_code == 409:
        raise WorkerConflict(_detail(response))
    if response.status_code >= 400:
        raise ManagerError(f"the manager answered HTTP {response.status_code}: {_detail(response)}")
    return response
