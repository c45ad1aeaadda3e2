"""/api/flags: list the feature flags (viewer) and set one (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from manager.http.deps import Admin, FlagName, StoreDep, Viewer

router = APIRouter(prefix="/api/flags", tags=["flags"])


class FlagUpdate(BaseModel):
    enabled: bool = Field(strict=True)  # `0` or `"yes"` is a mistake to report, not to guess at


@router.get("")
async def list_flags(_: Viewer, store: StoreDep) -> list[dict[str, Any]]:
    return await store.flags()


@router.put("/{flag_name}")
async def put_flag(flag_name: FlagName, update: FlagUpdate, who: Admin, store: StoreDep) -> dict[str, Any]:
    """Set a flag; `<worker>_enabled` pauses or resumes that worker within a second."""
    return await store.set_flag(who.actor, flag_name, update.enabled)
