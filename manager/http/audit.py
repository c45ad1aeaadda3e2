"""/api/audit: who changed which flag or setting, and when (secrets masked)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from manager.http.deps import KEY_PATTERN, StoreDep, Viewer
from workers.redact import mask_secrets

router = APIRouter(tags=["flags", "settings"])


@router.get("/api/audit")
async def audit(
    _: Viewer,
    store: StoreDep,
    key: str | None = Query(None, pattern=KEY_PATTERN, max_length=128),
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Changes to flags and settings, newest first, however they were made."""
    return [
        {**r, "old_value": mask_secrets(r["old_value"], r["key"]), "new_value": mask_secrets(r["new_value"], r["key"])}
        for r in await store.audit(key, limit)
    ]
