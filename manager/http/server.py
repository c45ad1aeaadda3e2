"""The HTTP server as one of the manager's parts: binds the port at start, drains at stop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate

import uvicorn
from fastapi import FastAPI
from uvicorn.server import ServerState

from manager.errors import ManagerError

DRAIN_S = 3.0  # how long open requests may take to finish at shutdown


class _DatedHeaders(ServerState):
    """uvicorn's per-server state, with the Date header made when a response asks for it (at most
    once a second) instead of by a tick that wakes the server every second to rewrite it."""

    def __init__(self, extra_headers: list[tuple[bytes, bytes]]) -> None:
        self._extra = extra_headers
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []
        super().__init__()

    @property  # type: ignore[override]
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._headers = [(b"date", formatdate(now, usegmt=True).encode()), *self._extra]
        return self._headers

    @default_headers.setter
    def default_headers(self, _value: list[tuple[bytes, bytes]]) -> None:
        """uvicorn's own writes (at start and in `on_tick`): the getter is always fresher."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling (the manager owns SIGTERM/SIGINT) and without its
    10-per-second tick: at rest it sleeps until `exit()` (the Date header is made per response)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.server_state = _DatedHeaders(self.config.encoded_headers)  # loaded by now: its headers
        await super().startup(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        if not self.should_exit:
            await self._exit_requested.wait()

    def exit(self) -> None:
        self.should_exit = True
        self._exit_requested.set()


def bind_api_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets that say so, and
    # without it keep-alive clients wait out delayed ACKs (~40 ms per response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ManagerError(
            f"cannot listen on {host}:{port}: {exc.strerror}; is another manager running? "
            "(change api.port in the config)"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._app = app
        self._host, self._port = host, port
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        sock = bind_api_socket(self._host, self._port)
        self.address = sock.getsockname()[:2]
        self._server = _EmbeddedServer(
            uvicorn.Config(
                self._app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                ws="none",  # no WebSocket routes: the websockets package is not even imported
                timeout_graceful_shutdown=int(DRAIN_S),
            )
        )
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http")

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.exit()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(DRAIN_S + 1):
                await self._task
