"""/healthz (the manager's own health) and /metrics (Prometheus), both open and answered from memory."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from manager.http.deps import View
from manager.metrics import render

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
    return Response(render(request.app.state.metrics), media_type="text/plain; version=0.0.4; charset=utf-8")
