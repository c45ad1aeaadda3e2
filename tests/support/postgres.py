"""A real Postgres for tests: `DATABASE_URL`'s server when set, else an embedded pgserver.

Each test gets a fresh database on that server, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo


@contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """Yields an admin URL of a running server."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from manager.db import start_embedded

    url = start_embedded(workdir, cleanup_mode="delete")
    import pgserver

    try:
        yield url
    finally:
        pgserver.get_server(workdir).cleanup()


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(admin_url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
