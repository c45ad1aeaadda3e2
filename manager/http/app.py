"""The HTTP API (FastAPI), served by the manager process on uvicorn: one router per resource, plus
the console's pages.

`/api/workers/status`, `/healthz` and `/metrics` are open and answer from memory. Everything else
needs a token; everything that changes something needs the admin token.
"""

from __future__ import annotations

from fastapi import FastAPI

from admin.routes import mount_console
from manager.http import alerts, audit, flags, health, profiles, search, settings, trending, trends, workers
from manager.http.deps import Services
from manager.metrics import build_registry


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Worker manager",
        version="0.1.0",
        description="Supervises data-sync workers. Mutations need `Authorization: Bearer <ADMIN_TOKEN>`.",
    )
    app.state.services = services
    app.state.auth = services.auth  # read by manager.auth's dependencies
    app.state.metrics = build_registry(services.view.status)
    for module in (workers, flags, settings, audit, health, search, trends, alerts, trending, profiles):
        app.include_router(module.router)
    mount_console(app, services.view, services.store, services.auth)  # the console's pages at /workers
    return app
