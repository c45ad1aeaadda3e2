"""Per-minute trends of each worker's cycles (items, failed cycles, item errors) for the console's
charts, read from `cycle_runs` and filled with zeros where a minute saw no cycle.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from manager.logs import iso
from sql import query

SERIES = ("cycles", "failed", "items", "itemErrors")


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


async def load_trends(pool: AsyncConnectionPool, workers: list[str], minutes: int,
                      worker: str | None = None) -> dict[str, Any]:
    """Per-minute series for the last `minutes` minutes, for every worker or for one."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("database_now"))
        now_row = await cur.fetchone()
        assert now_row is not None
        axis = minute_axis(float(next(iter(now_row.values()))), minutes)
        await cur.execute(query("cycle_trends"), {"since": axis[0], "worker": worker})
        rows = await cur.fetchall()
    names = [worker] if worker else workers
    return {"minutes": [iso(m) for m in axis], "workers": fill_minutes(rows, axis, names)}
