"""/api/workers: every worker's status (open, from memory), one worker's detail, and the
admin-only start/stop/restart commands."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse

from manager.errors import UnknownWorker, WorkerConflict
from manager.fleet import Action
from manager.http.deps import Admin, Commands, ErrorBody, StoreDep, View, Viewer, WorkerName, not_found
from workers.redact import mask_secrets

router = APIRouter(prefix="/api/workers", tags=["workers"])
HISTORY_TIMEOUT_S = 2.0  # how long a worker's detail waits for its stored history before answering from memory


@router.get(
    "/status",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "one object per worker"}},
)
async def workers_status(view: View) -> Response:
    """Every configured worker, answered from memory (never waits on the database or a worker)."""
    return Response(view.status_json(), media_type="application/json")


@router.get("/{name}")
async def worker_detail(
    name: WorkerName, _: Viewer, view: View, store: StoreDep, lines: int = Query(100, ge=0, le=300)
) -> dict[str, Any]:
    """The status object plus recent output, errors, supervision events and effective config."""
    try:
        detail = view.worker(name)
    except UnknownWorker as exc:
        raise not_found(exc) from None
    detail["logs"] = view.logs(name, lines)
    detail["config"] = view.config(name)
    detail["errors"], detail["events"], detail["settings"] = [], [], {}
    try:
        # from memory when the database is slow or away: a detail page must not hang on it
        async with asyncio.timeout(HISTORY_TIMEOUT_S):
            history = await store.worker_history(name)
        detail["errors"] = [{**row, "message": view.scrub(name, row["message"])} for row in history["errors"]]
        detail["events"] = history["events"]
        detail["settings"] = mask_secrets(history["settings"])
    except Exception as exc:  # the database being down must not hide what memory knows
        detail["events"] = view.recent_events(name, 100)
        detail["databaseError"] = f"database unavailable ({type(exc).__name__})"  # never its raw text
    reported = (view.heartbeat_detail(name) or {}).get("config")
    detail["effectiveConfig"] = mask_secrets(reported) if reported else detail["config"]
    return detail


def _act(commands: Commands, name: str, action: Action) -> JSONResponse:
    try:
        status = commands.command(name, action)
    except UnknownWorker as exc:
        raise not_found(exc) from None
    except WorkerConflict as exc:
        raise HTTPException(409, str(exc)) from None
    return JSONResponse({"accepted": action, "worker": status}, status_code=202)


RUNNABLE_STATES = ("running", "starting")


@router.post(
    "/{name}/run",
    status_code=202,
    responses={409: {"model": ErrorBody, "description": "the worker is not running, or has no heartbeat loop"}},
)
async def run_worker_now(name: WorkerName, _: Admin, view: View, store: StoreDep) -> JSONResponse:
    """Start a cycle at once, without a restart: the request travels through Postgres (NOTIFY
    `worker_run_now`) and ends the worker's wait between cycles; a worker in the middle of a cycle
    starts another one right after it."""
    try:
        status = view.worker(name)
    except UnknownWorker as exc:
        raise not_found(exc) from None
    if status["state"] not in RUNNABLE_STATES:
        raise HTTPException(409, f"worker {name!r} is {status['state']}, not running: start it first")
    if not status.get("heartbeat", True):
        raise HTTPException(409, f"worker {name!r} has no heartbeat loop (a plain command): it cannot run on demand")
    await store.run_now(name)
    return JSONResponse({"accepted": "run", "worker": name}, status_code=202)


CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "not possible in the worker's state (flag off, disabled in config)"}
}


@router.post("/{name}/restart", status_code=202, responses=CONFLICT)
async def restart_worker(name: WorkerName, _: Admin, commands: Commands) -> JSONResponse:
    """Stop (if running) and start again; also clears `failed` and resets the restart budget."""
    return _act(commands, name, "restart")


@router.post("/{name}/stop", status_code=202, responses=CONFLICT)
async def stop_worker(name: WorkerName, _: Admin, commands: Commands) -> JSONResponse:
    """Stop gracefully; it stays `stopped` until started."""
    return _act(commands, name, "stop")


@router.post("/{name}/start", status_code=202, responses=CONFLICT)
async def start_worker(name: WorkerName, _: Admin, commands: Commands) -> JSONResponse:
    """Start a stopped or failed worker (resets its restart budget)."""
    return _act(commands, name, "start")
