"""Fixtures: a real Postgres for the session, a fresh database per test, managers to boot."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.manager import ManagerHandle
from tests.support.postgres import fresh_database, postgres_server


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    # Not under pytest's tmp_path: a concurrent pytest run prunes old tmp dirs, and deleting a
    # live server's data directory would crash it.
    workdir = Path(tempfile.mkdtemp(prefix="wm-pg-"))
    try:
        with postgres_server(workdir / "data") as url:
            yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    with fresh_database(pg_admin_url) as url:
        yield url


@pytest.fixture
def migrated_url(database_url: str) -> str:
    import psycopg

    from sql import apply_migrations

    with psycopg.connect(database_url) as conn:
        apply_migrations(conn)
    return database_url


@pytest.fixture
def boot_manager(tmp_path: Path, database_url: str) -> Iterator[Callable[..., ManagerHandle]]:
    """Call with `workers=...` (and optionally `healdec=`, `env=`, `args=`); returns a started handle."""
    handles: list[ManagerHandle] = []

    def boot(workers: dict[str, Any], start: bool = True, **kwargs: Any) -> ManagerHandle:
        workdir = tmp_path / f"manager{len(handles)}"
        workdir.mkdir()
        handle = ManagerHandle(workdir, database_url, workers, **kwargs)
        handles.append(handle)
        return handle.start() if start else handle

    yield boot
    for handle in handles:
        handle.close()
