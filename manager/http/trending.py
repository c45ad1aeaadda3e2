"""GET /api/trending: the tags, cashtags, mentions or domains used by the most posts in the last
hour, day or week, with the count of the window before (velocity), from the search worker's
`post_tags` (a removed post's tags are cleared in the search worker's next cycle)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from psycopg.rows import dict_row

from manager.http.deps import StoreDep, Viewer
from manager.store import Store
from sql import query

router = APIRouter(tags=["social"])

WINDOWS = {"1h": "1 hour", "24h": "24 hours", "7d": "7 days"}
KINDS = {"tags": "hashtag", "cashtags": "cashtag", "mentions": "mention", "domains": "domain"}


def velocity(posts: int, previous: int) -> float | None:
    """Growth over the previous window: 1.0 = doubled, 0 = flat, -0.5 = halved; None when the tag
    was not used at all in the previous window (new)."""
    return round((posts - previous) / previous, 3) if previous else None


@router.get("/api/trending")
async def trending(
    _: Viewer,
    store: StoreDep,
    window: Literal["1h", "24h", "7d"] = "24h",
    kind: Literal["tags", "cashtags", "mentions", "domains"] = "tags",
    limit: int = Query(20, ge=1, le=100),
) -> dict[str, Any]:
    """Top items by posts in the window, each with `posts`, `previous` (the window before) and `velocity`."""
    return {"window": window, "kind": kind, "items": await top_items(store, window, kind, limit)}


async def top_items(store: Store, window: str, kind: str, limit: int) -> list[dict[str, Any]]:
    """The ranked items (shared with the console's trending page)."""
    params = {"window": WINDOWS[window], "kind": KINDS[kind], "limit": limit}
    async with store.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("trending", "insights.sql"), params)
        rows = await cur.fetchall()
    return [
        {
            "tag": r["tag"],
            "posts": r["posts"],
            "previous": r["previous"],
            "velocity": velocity(r["posts"], r["previous"]),
        }
        for r in rows
    ]
