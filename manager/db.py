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
MB = 1024 * 1024


def embedded_settings(total_memory: int) -> dict[str, str]:
    """The server settings the embedded Postgres runs with, sized for a host with `total_memory` bytes.

    Postgres's stock settings (128 MB of shared buffers, a checkpoint every 1 GB of WAL) suit a
    laptop, not an index of a million posts: the search tables outgrow the buffers, and backends
    evict dirty pages themselves and read them back (search edits at 1,000,000 posts: 3,100-3,700
    posts/s with 128 MB, 4,100-5,000 with 2 GB). The embedded server shares its host with the
    manager and the workers, so it takes an eighth of memory for buffers (between 128 MB and 2 GB),
    not the quarter a dedicated server would. WAL compression stays off: compressing the full-page
    images that follow each checkpoint cost more CPU than the smaller WAL saved (the same edits ran
    at 1,800 posts/s with it). Operators who tune their own server bring it with `DATABASE_URL`.
    """
    shared_buffers_mb = max(128, min(2048, total_memory // 8 // MB))
    return {
        "max_connections": str(EMBEDDED_MAX_CONNECTIONS),
        "shared_buffers": f"{shared_buffers_mb}MB",
        "max_wal_size": "4GB",  # checkpoints by time, not every 1 GB of a bulk load's WAL
        "checkpoint_timeout": "15min",
    }


def _pending_settings(conn: psycopg.Connection[Any], wanted: dict[str, str]) -> dict[str, str]:
    """Those of `wanted` the server does not run with yet: not in postgresql.auto.conf as written
    here, or written but waiting for a restart (`pg_file_settings.applied`)."""
    written = dict(
        conn.execute(
            "SELECT name, setting FROM pg_file_settings"
            " WHERE sourcefile LIKE '%%postgresql.auto.conf' AND applied AND error IS NULL"
        ).fetchall()
    )
    return {name: value for name, value in wanted.items() if written.get(name) != value}


def start_embedded(data_dir: Path, cleanup_mode: str = "stop") -> str:
    """Start (or join) the embedded Postgres under `data_dir` and return its URL.

    On first start it sizes the server for the host (`embedded_settings`: a fleet of fifty
    workers' connections, buffers and checkpoints for a large index) and restarts it through
    pgserver's own handle, once: later starts find the settings in place.
    """
    # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; harmless for pgserver's lock file.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver  # imported lazily: only the embedded mode needs it
    import psutil

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    url = str(server.get_uri("postgres"))
    with psycopg.connect(url, autocommit=True) as conn:
        pending = _pending_settings(conn, embedded_settings(psutil.virtual_memory().total))
        for name, value in pending.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    if pending:
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
