"""Reading a test database directly: plain queries for assertions."""

from __future__ import annotations

from typing import Any

import psycopg


def rows(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement, params).fetchall()


def last_cycle(url: str) -> tuple[bool, str | None]:
    """(ok, error) of the newest recorded cycle."""
    ok, error = rows(url, "SELECT ok, error FROM cycle_runs ORDER BY id DESC LIMIT 1")[0]
    return ok, error
