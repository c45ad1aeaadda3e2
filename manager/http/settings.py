"""/api/settings: list the settings (viewer, secrets masked), set or delete one (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response

from manager.http.deps import Admin, ServicesDep, SettingKey, StoreDep, Viewer
from manager.worker_env import check_env_reference
from workers.redact import mask_secrets

router = APIRouter(prefix="/api/settings", tags=["settings"])

# Any JSON value but null (bare, or as `{"value": null}`): a setting is removed with DELETE.
NOT_NULL = {
    "not": {
        "anyOf": [
            {"type": "null"},
            {"type": "object", "required": ["value"], "properties": {"value": {"type": "null"}}, "maxProperties": 1},
        ]
    }
}


@router.get("")
async def list_settings(_: Viewer, store: StoreDep) -> list[dict[str, Any]]:
    return [{**r, "value": mask_secrets(r["value"], r["key"])} for r in await store.settings()]


@router.put("/{key}")
async def put_setting(
    key: SettingKey,
    who: Admin,
    store: StoreDep,
    services: ServicesDep,
    body: Annotated[Any, Body(json_schema_extra=NOT_NULL)],
) -> dict[str, Any]:
    """Set a setting to a JSON value: send `{"value": <json>}` (or the bare JSON value). A setting
    naming an environment variable (`*_env`) may only name one its worker is given."""
    if isinstance(body, dict) and set(body) == {"value"}:
        body = body["value"]
    if body is None:
        raise HTTPException(422, 'send the new value as JSON, e.g. {"value": 30000}')
    problem = check_env_reference(services.config.workers, key, body)
    if problem:
        raise HTTPException(422, problem)
    row = await store.set_setting(who.actor, key, body)
    return {**row, "value": mask_secrets(row["value"], key)}


@router.delete("/{key}", status_code=204)
async def delete_setting(key: SettingKey, who: Admin, store: StoreDep) -> Response:
    """Remove a setting: the worker falls back to its config value at its next cycle."""
    if not await store.delete_setting(who.actor, key):
        raise HTTPException(404, f"no setting named {key!r}")
    return Response(status_code=204)
