"""The HTTP API (FastAPI), served by the manager process on uvicorn.

`/api/workers/status`, `/healthz` and `/metrics` are open and answer from memory. Everything else
needs a token; everything that changes something needs the admin token.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from admin.routes import mount_console
from manager.auth import Principal, require_admin, require_viewer
from manager.errors import UnknownWorker
from manager.logs import iso
from manager.metrics import build_registry, render
from manager.redact import mask_secrets
from manager.runner import WorkerRunner
from manager.search_api import mount_search
from sql import query

if TYPE_CHECKING:
    from manager.app import Manager

Viewer = Annotated[Principal, Depends(require_viewer)]
Admin = Annotated[Principal, Depends(require_admin)]


class FlagUpdate(BaseModel):
    enabled: bool


def _manager(request: Request) -> Manager:
    return request.app.state.manager  # type: ignore[no-any-return]


def _runner(request: Request, name: str) -> WorkerRunner:
    try:
        return _manager(request).supervisor.get(name)
    except UnknownWorker as exc:
        raise HTTPException(404, str(exc)) from None


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        out[key] = iso(value.timestamp()) if hasattr(value, "timestamp") else value
    return out


def create_app(manager: Manager) -> FastAPI:
    app = FastAPI(
        title="Worker manager",
        version="0.1.0",
        description="Supervises data-sync workers. Mutations need `Authorization: Bearer <ADMIN_TOKEN>`.",
    )
    app.state.manager = manager
    app.state.auth = manager.auth
    registry = build_registry(manager.engine.status)

    @app.get("/api/workers/status", tags=["workers"], response_class=Response,
             responses={200: {"content": {"application/json": {}}, "description": "one object per worker"}})
    async def workers_status() -> Response:
        """Every configured worker, answered from memory (never waits on the database or a worker)."""
        return Response(manager.engine.status_json(), media_type="application/json")

    @app.get("/api/workers/{name}", tags=["workers"])
    async def worker_detail(name: str, request: Request, _: Viewer, lines: int = Query(100, le=300)) -> dict[str, Any]:
        """The status object plus recent output, errors, supervision events and effective config."""
        runner = _runner(request, name)
        detail = manager.engine.worker_status(runner)
        detail["logs"] = [line.as_json() for line in reversed(runner.log.recent(lines))]
        detail["config"] = mask_secrets(runner.spec.model_dump(mode="json"))
        detail["errors"], detail["events"], detail["settings"] = [], [], {}
        try:
            async with manager.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query("recent_worker_errors"), (name, 50))
                detail["errors"] = [
                    {**_row_json(r), "message": runner.scrub(r["message"])} for r in await cur.fetchall()
                ]
                await cur.execute(query("recent_supervision_events"), (name, 100))
                detail["events"] = [_row_json(r) for r in await cur.fetchall()]
                await cur.execute(query("worker_settings"), {"prefix": f"{name}_"})
                detail["settings"] = mask_secrets({r["setting"]: r["value"] for r in await cur.fetchall()})
        except Exception as exc:  # the database being down must not hide what memory knows
            detail["events"] = [e.as_json() for e in reversed(manager.events.recent(name, 100))]
            detail["databaseError"] = str(exc).splitlines()[0] if str(exc) else repr(exc)
        hb_detail = (manager.engine.heartbeat_detail(name) or {}).get("config")
        detail["effectiveConfig"] = mask_secrets(hb_detail) if hb_detail else detail["config"]
        return detail

    def _act(name: str, request: Request, action: str) -> JSONResponse:
        runner = _runner(request, name)
        if action == "start" and not runner.flag_enabled:
            raise HTTPException(409, f"{runner.flag_name} is false; enable the flag to start {name}")
        if not runner.spec.enabled:
            raise HTTPException(409, f"{name} has enabled: false in the config; the manager does not run it")
        {"start": runner.request_start, "stop": runner.request_stop, "restart": runner.request_restart}[action]()
        return JSONResponse({"accepted": action, "worker": manager.engine.worker_status(runner)}, status_code=202)

    @app.post("/api/workers/{name}/restart", tags=["workers"], status_code=202)
    async def restart_worker(name: str, request: Request, _: Admin) -> JSONResponse:
        """Stop (if running) and start again; also clears `failed` and resets the restart budget."""
        return _act(name, request, "restart")

    @app.post("/api/workers/{name}/stop", tags=["workers"], status_code=202)
    async def stop_worker(name: str, request: Request, _: Admin) -> JSONResponse:
        """Stop gracefully; it stays `stopped` until started."""
        return _act(name, request, "stop")

    @app.post("/api/workers/{name}/start", tags=["workers"], status_code=202)
    async def start_worker(name: str, request: Request, _: Admin) -> JSONResponse:
        """Start a stopped or failed worker (resets its restart budget)."""
        return _act(name, request, "start")

    @app.get("/api/flags", tags=["flags"])
    async def list_flags(_: Viewer) -> list[dict[str, Any]]:
        async with manager.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("list_flags"))
            return [_row_json(r) for r in await cur.fetchall()]

    @app.put("/api/flags/{flag_name}", tags=["flags"])
    async def put_flag(flag_name: str, update: FlagUpdate, who: Admin) -> dict[str, Any]:
        """Set a flag; `<worker>_enabled` pauses or resumes that worker within a second."""
        async with manager.pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("set_actor"), (who.actor,))
            await cur.execute(query("set_flag"), (flag_name, update.enabled))
            row = await cur.fetchone()
        assert row is not None
        return _row_json(row)

    @app.get("/api/settings", tags=["settings"])
    async def list_settings(_: Viewer) -> list[dict[str, Any]]:
        async with manager.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("list_settings"))
            rows = [_row_json(r) for r in await cur.fetchall()]
        return [{**r, "value": mask_secrets(r["value"], r["key"])} for r in rows]

    @app.put("/api/settings/{key}", tags=["settings"])
    async def put_setting(key: str, who: Admin, body: Annotated[Any, Body()] = None) -> dict[str, Any]:
        """Set a setting to a JSON value: send `{"value": <json>}` (or the bare JSON value)."""
        if isinstance(body, dict) and set(body) == {"value"}:
            body = body["value"]
        if body is None:
            raise HTTPException(422, 'send the new value as JSON, e.g. {"value": 30000}')
        async with manager.pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("set_actor"), (who.actor,))
            await cur.execute(query("set_setting"), (key, Jsonb(body)))
            row = await cur.fetchone()
        assert row is not None
        return {**_row_json(row), "value": mask_secrets(row["value"], key)}

    @app.delete("/api/settings/{key}", tags=["settings"], status_code=204)
    async def delete_setting(key: str, who: Admin) -> Response:
        """Remove a setting: the worker falls back to its config value at its next cycle."""
        async with manager.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(query("set_actor"), (who.actor,))
            await cur.execute(query("delete_setting"), (key,))
            if cur.rowcount == 0:
                raise HTTPException(404, f"no setting named {key!r}")
        return Response(status_code=204)

    @app.get("/api/audit", tags=["flags", "settings"])
    async def audit(_: Viewer, key: str | None = None, limit: int = Query(100, le=1000)) -> list[dict[str, Any]]:
        """Changes to flags and settings, newest first, however they were made."""
        async with manager.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("config_audit"), {"key": key, "limit": limit})
            rows = [_row_json(r) for r in await cur.fetchall()]
        return [
            {**r, "old_value": mask_secrets(r["old_value"], r["key"]), "new_value": mask_secrets(r["new_value"], r["key"])}
            for r in rows
        ]

    @app.get("/healthz", tags=["manager"])
    async def healthz() -> dict[str, Any]:
        """The manager's own health: is its view of the database current?"""
        listener = manager.listener
        problems = []
        if not listener.connected:
            problems.append(f"flag listener disconnected: {listener.last_error or 'connecting'}")
        if manager.engine.last_sweep_error:
            problems.append(f"heartbeat sweep failing: {manager.engine.last_sweep_error}")
        return {
            "status": "ok" if not problems else "degraded",
            "problems": problems,
            "uptimeSeconds": round(time.monotonic() - manager.started_monotonic, 3),
            "workers": len(manager.supervisor.runners),
            "running": manager.engine.running_count(),
            "flagListener": {
                "connected": listener.connected,
                "downSince": iso(listener.down_since),
                "notifications": listener.notifications,
            },
        }

    @app.get("/metrics", tags=["manager"])
    async def metrics() -> Response:
        return Response(render(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    mount_search(app, manager)  # GET /api/search over the search worker's indexes
    mount_console(app, manager)  # the admin console at /workers, built on this API
    return app
