"""The manager's own reads and writes of flags, settings, the audit trail, per-worker history and
trends: one object holding the connection pool and the named queries (`sql/queries.sql`), so the
HTTP routes never touch a pool or SQL text.

Every change sets the actor first (`set_actor`) in the same transaction, so the audit trigger
records who made it. Timestamps come back as ISO-8601 strings.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from manager.logs import iso
from sql import queries_from, query

SERIES = ("cycles", "failed", "items", "itemErrors")


SEARCH_TIMEOUT_S = 5.0
SEARCH_CONNECTIONS = 2


async def warm_search(conn: AsyncConnection[Any]) -> None:
    """Compile the search functions on a new search connection before any viewer gets it: the first
    search on a connection would otherwise pay 30-60 ms of PL/pgSQL compiling and planning."""
    await conn.execute(queries_from("search.sql")["warm_search"])


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its timestamps as ISO-8601 strings."""
    return {k: iso(v.timestamp()) if hasattr(v, "timestamp") else v for k, v in row.items()}


class Store:
    """The connection pool (opened at start, closed at stop) and the queries the API needs."""

    def __init__(self, database_url: str) -> None:
        self.pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"autocommit": True, "application_name": "worker-manager:api"},
        )
        # Search runs viewer-chosen queries: on its own two connections with a statement timeout,
        # so a slow search waits for a search connection and never holds the pool health uses.
        # Both are opened (and warmed) by the pool in the background, at start and when one is
        # replaced, so no search waits for a connection to be made or its functions compiled.
        self.search_pool = AsyncConnectionPool(
            database_url,
            min_size=SEARCH_CONNECTIONS,
            max_size=SEARCH_CONNECTIONS,
            open=False,
            timeout=SEARCH_TIMEOUT_S,
            configure=warm_search,
            kwargs={
                "autocommit": True,
                "application_name": "worker-manager:search",
                "options": f"-c statement_timeout={int(SEARCH_TIMEOUT_S * 1000)}",
            },
        )

    async def start(self) -> None:
        await self.pool.open()
        await self.search_pool.open()

    async def stop(self) -> None:
        await self.search_pool.close()
        await self.pool.close()

    def search_connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A connection of the search pool (autocommit, statement timeout SEARCH_TIMEOUT_S)."""
        return self.search_pool.connection()

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A pooled connection (autocommit), for readers with their own queries such as search."""
        return self.pool.connection()

    async def _rows(self, name: str, params: Any = None) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query(name), params)
            return [row_json(r) for r in await cur.fetchall()]

    async def _change(self, actor: str, name: str, params: Any) -> tuple[dict[str, Any] | None, int]:
        """Run one changing statement as `actor`: the row it returns (if any) and the rows it touched."""
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("set_actor"), (actor,))
            await cur.execute(query(name), params)
            row = await cur.fetchone() if cur.description else None
            return (row_json(row) if row is not None else None), cur.rowcount

    # ---- flags and settings ---------------------------------------------------------------

    async def flags(self) -> list[dict[str, Any]]:
        return await self._rows("list_flags")

    async def set_flag(self, actor: str, flag: str, enabled: bool) -> dict[str, Any]:
        row, _ = await self._change(actor, "set_flag", (flag, enabled))
        assert row is not None
        return row

    async def settings(self) -> list[dict[str, Any]]:
        return await self._rows("list_settings")

    async def set_setting(self, actor: str, key: str, value: Any) -> dict[str, Any]:
        row, _ = await self._change(actor, "set_setting", (key, Jsonb(value)))
        assert row is not None
        return row

    async def delete_setting(self, actor: str, key: str) -> bool:
        """True when the setting existed."""
        _, touched = await self._change(actor, "delete_setting", (key,))
        return touched > 0

    async def audit(self, key: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._rows("config_audit", {"key": key, "limit": limit})

    # ---- one worker's history -------------------------------------------------------------

    async def run_now(self, name: str) -> None:
        """Ask worker `name` to start a cycle at once: a NOTIFY its listener hears (workers/listen.py)."""
        async with self.pool.connection() as conn:
            await conn.execute(query("run_now"), (name,))

    async def worker_history(self, name: str, errors: int = 50, events: int = 100) -> dict[str, Any]:
        """Recent recorded errors and supervision events, and the worker's settings rows."""
        return {
            "errors": await self._rows("recent_worker_errors", (name, errors)),
            "events": await self._rows("recent_supervision_events", (name, events)),
            "settings": {r["setting"]: r["value"] for r in await self._rows("worker_settings", {"prefix": f"{name}_"})},
        }

    async def alert_deliveries(self, worker: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest alert delivery attempts (URLs are stored masked)."""
        return await self._rows("recent_alert_deliveries", {"worker": worker, "limit": limit})

    # ---- trends ---------------------------------------------------------------------------

    async def trends(self, workers: list[str], minutes: int, worker: str | None = None) -> dict[str, Any]:
        """Per-minute series for the last `minutes` minutes (of the database's clock), for every
        worker or for one, oldest first."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("database_now"))
            now_row = await cur.fetchone()
            assert now_row is not None
            axis = minute_axis(float(next(iter(now_row.values()))), minutes)
            await cur.execute(query("cycle_trends"), {"since": axis[0], "worker": worker})
            rows = await cur.fetchall()
        names = [worker] if worker else workers
        return {"minutes": [iso(m) for m in axis], "workers": fill_minutes(rows, axis, names)}


def minute_axis(now: float, minutes: int) -> list[float]:
    """The starts of the last `minutes` whole minutes, oldest first, the current one last."""
    current = now - now % 60
    return [current - 60 * i for i in range(minutes - 1, -1, -1)]


def fill_minutes(rows: list[dict[str, Any]], axis: list[float], workers: list[str]) -> dict[str, dict[str, list[int]]]:
    """Rows of (worker_name, minute, counts...) as one zero-filled series per worker and measure."""
    index = {minute: i for i, minute in enumerate(axis)}
    out = {name: {series: [0] * len(axis) for series in SERIES} for name in workers}
    for row in rows:
        i = index.get(row["minute"])
        if i is None:
            continue
        series = out.setdefault(row["worker_name"], {s: [0] * len(axis) for s in SERIES})
        series["cycles"][i] = int(row["cycles"])
        series["failed"][i] = int(row["failed"])
        series["items"][i] = int(row["items"])
        series["itemErrors"][i] = int(row["item_errors"])
    return out
