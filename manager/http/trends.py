"""/api/trends: per-minute cycles, failed cycles, items and item errors, for the console's charts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from manager.http.deps import NAME_PATTERN, StoreDep, View, Viewer

router = APIRouter(tags=["workers"])


@router.get("/api/trends")
async def trends(
    _: Viewer,
    view: View,
    store: StoreDep,
    minutes: int = Query(30, ge=2, le=360),
    worker: str | None = Query(None, pattern=NAME_PATTERN, max_length=63),
) -> dict[str, Any]:
    """Per-minute cycles, failed cycles, items and item errors of every worker (or of one), oldest first."""
    names = view.names()
    if worker is not None and worker not in names:
        raise HTTPException(404, f"no worker named {worker!r}")
    return await store.trends(names, minutes, worker)
