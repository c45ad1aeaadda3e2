"""The console (admin/: Jinja2 pages, static files, the login form) is added to the app on its first
request, not at boot: few runs ever open it, and its imports (Jinja2, MarkupSafe, python-multipart,
the page code) are about 2 MiB of the manager's memory that a headless fleet never needs.

`LazyConsole` is an ASGI middleware inside `EdgeGuard`: on the first request for `/workers` or a
path below it, it imports `admin` (in a thread: the event loop keeps supervising) and mounts the
console's routes on the app; from then on it only passes requests through. Routes are matched per
request, so routes added to a running app serve at once.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

CONSOLE_PREFIX = "/workers"


def is_console_path(path: str) -> bool:
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


class LazyConsole:
    def __init__(self, app: ASGIApp, mount: Callable[[], None]) -> None:
        self.app = app
        self._mount = mount
        self._mounted = False
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._mounted and scope["type"] == "http" and is_console_path(scope["path"]):
            async with self._lock:  # two first requests at once mount it once
                if not self._mounted:
                    await asyncio.to_thread(importlib.import_module, "admin.routes")
                    self._mount()
                    self._mounted = True
        await self.app(scope, receive, send)


def add_lazy_console(app: FastAPI, mount: Callable[[], None]) -> None:
    """`mount()` adds the console to `app` (admin.routes.mount_console); called once, on first use."""
    app.add_middleware(LazyConsole, mount=mount)
