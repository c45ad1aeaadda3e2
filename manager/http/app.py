"""The HTTP API (FastAPI), served by the manager process on uvicorn: one router per resource, plus
the console's pages.

`/api/workers/status`, `/healthz` and `/metrics` are open and answer from memory. Everything else
needs a token; everything that changes something needs the admin token.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from manager.http import alerts, audit, flags, health, profiles, search, settings, trending, trends, workers
from manager.http.console import add_lazy_console
from manager.http.deps import ERROR_RESPONSES, Services
from manager.http.guard import EdgeGuard, install_error_handlers
from manager.http.query_guard import reject_unknown_query


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Worker manager",
        version="0.1.0",
        description="Supervises data-sync workers. Mutations need `Authorization: Bearer <ADMIN_TOKEN>`.",
    )
    app.state.services = services
    app.state.auth = services.auth  # read by manager.auth's dependencies
    app.state.metrics = None  # built on the first /metrics request (manager.http.health)
    for module in (workers, flags, settings, audit, search, trends, alerts, trending, profiles):
        app.include_router(module.router, responses=ERROR_RESPONSES, dependencies=[Depends(reject_unknown_query)])
    app.include_router(health.router)
    install_error_handlers(app)

    def mount() -> None:
        from admin.routes import mount_console

        mount_console(app, services.view, services.store, services.auth)

    add_lazy_console(app, mount)  # the console's pages at /workers, loaded on their first request
    app.add_middleware(EdgeGuard)  # outermost: before routing, body parsing and the console
    return app
