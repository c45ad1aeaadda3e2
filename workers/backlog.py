"""Rows a derived-data worker (ai, search) has yet to process: its lag, in rows.

Both follow `external_posts` and `profiles` with one `(updated_at, id)` cursor each, named
`posts` and `profiles`; what lies after those cursors is waiting.
"""

from __future__ import annotations

from typing import Any

from sql import query

START = {"updated_at": "-infinity", "id": 0}


def rows_waiting(worker: Any) -> int:
    """Posts and profiles changed after the worker's `posts` and `profiles` cursors."""
    return rows_after(worker.db, worker.load_cursor("posts") or START, worker.load_cursor("profiles") or START)


def rows_after(db: Any, posts: dict[str, Any], profiles: dict[str, Any]) -> int:
    """Posts and profiles changed after the given `(updated_at, id)` cursor values."""
    row = db.execute(
        query("rows_after_cursors"),
        {
            "posts_at": posts["updated_at"],
            "posts_id": posts["id"],
            "profiles_at": profiles["updated_at"],
            "profiles_id": profiles["id"],
        },
    ).fetchone()
    return int(row[0]) if row else 0
