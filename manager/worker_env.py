"""What environment a worker process gets: a small base set plus the secrets it declares, never
the manager's whole environment (which holds every other worker's keys and ADMIN_TOKEN).

A worker declares its secrets in the config (`secrets: [OPENAI_API_KEY]`); known modules have a
default declaration here, so a stock config needs none. Anything a worker was not given cannot be
reached by a settings row either (`ai_api_key_env: ADMIN_TOKEN` finds nothing in the worker).
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from manager.config import WorkerConfig

# What every process needs to run Python, find certificates and format times; never a secret.
BASE_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "PYTHON*",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "WORKER_*",
)

# The environment variables each stock worker module reads (its secrets and endpoint overrides).
MODULE_SECRETS: dict[str, tuple[str, ...]] = {
    "workers.ai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "workers.social.farcaster": ("FARCASTER_HUB_API_KEY",),
    "workers.social.reddit": (
        "REDDIT_CLIENT_ID",
        "REDDIT_CLIENT_SECRET",
        "REDDIT_USERNAME",
        "REDDIT_PASSWORD",
        "PRAW_ALLOW_ENDPOINT_OVERRIDE",
    ),
}


def declared_secrets(spec: WorkerConfig) -> tuple[str, ...]:
    """The variables this worker may read: its `secrets:` list, else its module's default."""
    if spec.secrets is not None:
        return tuple(spec.secrets)
    return MODULE_SECRETS.get(spec.module or "", ())


def check_env_reference(workers: Mapping[str, WorkerConfig], key: str, value: object) -> str | None:
    """Why a setting that names an environment variable (`<worker>_..._env`) is refused, or None.

    Such a setting may only name a variable its worker is given: otherwise a settings row could
    point the worker (or the search API acting for it) at another worker's key or ADMIN_TOKEN."""
    if not key.lower().endswith("_env"):
        return None
    owners = [name for name in workers if key.startswith(f"{name}_")]
    if not owners:
        return None
    worker = max(owners, key=len)
    declared = declared_secrets(workers[worker])
    if not isinstance(value, str) or value not in declared:
        allowed = ", ".join(declared) or "none"
        return f"{key} must name an environment variable {worker} is given ({allowed}); add it to its `secrets:`"
    return None


def _allowed(name: str, declared: tuple[str, ...]) -> bool:
    return name in declared or any(fnmatch.fnmatchcase(name, pattern) for pattern in BASE_ENV)


def base_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Only the base set: what the worker template runs with. A forked worker's /proc/<pid>/environ
    shows the template's environment at exec, so it must hold no secret of any worker."""
    source = os.environ if environ is None else environ
    return {key: value for key, value in source.items() if _allowed(key, ())}


def worker_environment(
    name: str,
    spec: WorkerConfig,
    database_url: str,
    extra_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The base set and declared secrets (from the manager's environment and the devnet's), the
    worker's own `env:` block, and WORKER_NAME, DATABASE_URL and WORKER_CONFIG (JSON)."""
    declared = declared_secrets(spec)
    source = {**(os.environ if environ is None else environ), **(extra_env or {})}
    env = {key: value for key, value in source.items() if _allowed(key, declared)}
    env.update(spec.env)
    env.update(
        {
            "WORKER_NAME": name,
            "DATABASE_URL": database_url,
            "WORKER_CONFIG": json.dumps(spec.model_dump(mode="json", exclude={"env", "secrets"})),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manager_secrets_environment(database_url: str, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Everything the manager knows that may hold a secret, for the output scrubber."""
    return {**os.environ, **(extra_env or {}), "DATABASE_URL": database_url}
