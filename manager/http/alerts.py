"""/api/alerts/deliveries: every attempt to deliver an alert to a webhook (URLs masked)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from manager.http.deps import StoreDep, Viewer

router = APIRouter(tags=["alerts"])


@router.get("/api/alerts/deliveries")
async def alert_deliveries(
    _: Viewer, store: StoreDep, worker: str | None = None, limit: int = Query(50, ge=1, le=1000)
) -> list[dict[str, Any]]:
    """Delivery attempts, newest first: worker, event, masked URL, attempt, HTTP status, error."""
    return await store.alert_deliveries(worker, limit)
