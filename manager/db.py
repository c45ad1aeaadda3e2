"""Finding and connecting to Postgres: the configured server, or the embedded one.

With no URL configured the manager runs an embedded Postgres (pgserver: PG 16 + pgvector) under
`database.data_dir`. Connections at boot are retried with backoff, so a database that is still
starting is waited for and reported, not a traceback.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from manager.config import DatabaseConfig
from manager.errors import DatabaseUnavailable
from workers.redact import redact_url

log = logging.getLogger(__name__)

APPLICATION_NAME = "worker-manager"


def resolve_database_url(config: DatabaseConfig) -> str:
    """The URL to use: `database.url`, else `DATABASE_URL`, else the embedded server's."""
    url = config.url or os.environ.get("DATABASE_URL", "")
    if url:
        return url
    return start_embedded(Path(config.data_dir))


EMBEDDED_MAX_CONNECTIONS = 400  # each worker holds two connections; Postgres's default of 100 fits ~45


def start_embedded(data_dir: Path, cleanup_mode: str = "stop") -> str:
    """Start (or join) the embedded Postgres under `data_dir` and return its URL.

    On first start it raises max_connections (a restart through pgserver's own handle), so a
    fleet of fifty workers fits.
    """
    # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; harmless for pgserver's lock file.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver  # imported lazily: only the embedded mode needs it

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    url = str(server.get_uri("postgres"))
    with psycopg.connect(url, autocommit=True) as conn:
        current = int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
        if current < EMBEDDED_MAX_CONNECTIONS:
            conn.execute(f"ALTER SYSTEM SET max_connections = {EMBEDDED_MAX_CONNECTIONS}")
    if current < EMBEDDED_MAX_CONNECTIONS:
        server.cleanup()  # the last handle stops the server; the next get_server starts it anew
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
        url = str(server.get_uri("postgres"))
    server.cleanup_mode = cleanup_mode  # what happens when this process lets go of it
    return url


def connect_with_retry(
    url: str,
    *,
    timeout_s: float,
    autocommit: bool = True,
    on_retry: Callable[[str, float], None] | None = None,
) -> psycopg.Connection[Any]:
    """Connect, retrying with exponential backoff until `timeout_s`; then DatabaseUnavailable."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            return psycopg.connect(url, autocommit=autocommit, application_name=APPLICATION_NAME, connect_timeout=5)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(
                    f"cannot reach Postgres at {redact_url(url)}: {reason} "
                    f"(gave up after {timeout_s:g} s; check database.url / DATABASE_URL)"
                ) from None
            if on_retry:
                on_retry(reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
