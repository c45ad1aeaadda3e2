"""/healthz (the manager's own health) and /metrics (Prometheus), both open and answered from memory."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from fastapi import APIRouter, Request, Response

from manager.http.deps import View

router = APIRouter(tags=["manager"])


@router.get("/healthz")
async def healthz(view: View) -> dict[str, Any]:
    """The manager's own health: is its view of the database current?"""
    return view.health_report()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
async def metrics(request: Request) -> Response:
    """prometheus_client (about 1.3 MiB) is imported on the first scrape, not at boot."""
    state = request.app.state
    if state.metrics is None:
        metrics = await asyncio.to_thread(importlib.import_module, "manager.metrics")
        state.metrics = state.metrics or metrics.build_registry(state.services.view.status)
    from manager.metrics import render

    return Response(render(state.metrics), media_type="text/plain; version=0.0.4; charset=utf-8")
