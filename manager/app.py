"""The manager process: boots the parts in order, runs until SIGTERM/SIGINT, stops them in reverse.

Order: database (embedded if needed) → migrations → flag seeding → orphan guardian → event writer
→ supervisor (workers) → flag listener → Healdec sweep → HTTP. Shutdown reverses it, so workers
are stopped gracefully while the database is still there to record it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import uvicorn
from psycopg_pool import AsyncConnectionPool

from healdec.engine import HealthEngine
from manager.api import create_app
from manager.auth import Auth
from manager.config import Config
from manager.db import connect_with_retry, resolve_database_url
from manager.errors import ManagerError
from manager.events import EventRecorder
from manager.flags import FlagListener, read_flags
from manager.logs import LogLine, OutputEcho
from manager.process import GuardianLink
from manager.redact import redact_url
from manager.runner import RunnerContext
from manager.supervisor import Supervisor
from sql import apply_migrations, query

log = logging.getLogger("manager")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the manager owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def,override]
        yield


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


def prepare_database(config: Config, say: Any = print) -> str:
    """Resolve the URL (starting the embedded Postgres if needed), migrate, seed the flags."""
    url = resolve_database_url(config.database)
    if not (config.database.url or os.environ.get("DATABASE_URL")):
        say(f"embedded Postgres: {url}")
    conn = connect_with_retry(
        url,
        timeout_s=config.database.connect_timeout_s,
        on_retry=lambda reason, delay: say(f"database not reachable ({reason}); retrying in {delay:.1f} s"),
    )
    with conn:
        applied = apply_migrations(conn)
        if applied:
            say(f"applied migrations: {', '.join(applied)}")
        with conn.transaction():
            conn.execute(query("set_actor"), ("config",))
            for name, worker in config.workers.items():
                conn.execute(
                    query("seed_flag"),
                    (f"{name}_enabled", True, worker.description or f"Run the {name} worker"),
                )
    return url


class Manager:
    """The running system; the API reads its parts."""

    def __init__(self, config: Config, database_url: str, *, log_format: str = "text",
                 extra_env: dict[str, str] | None = None) -> None:
        self.config = config
        self.database_url = database_url
        self.auth, self.token_generated = Auth.from_environment()
        self.echo = OutputEcho(log_format)
        self.pool = AsyncConnectionPool(
            database_url, min_size=1, max_size=4, open=False,
            kwargs={"autocommit": True, "application_name": "worker-manager:api"},
        )
        self.events = EventRecorder(self.pool)
        self.guardian = GuardianLink()
        self.extra_env = extra_env or {}
        self.started_monotonic = time.monotonic()
        self._stopping = asyncio.Event()

    def say(self, text: str) -> None:
        self.echo.write("manager", _manager_line(text))

    def request_shutdown(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)
        sock = bind_api_socket(self.config.api.host, self.config.api.port)
        await self.pool.open()
        flags = await self._read_flags()
        self.guardian.start()
        await self.events.start()
        ctx = RunnerContext(self.config, self.database_url, self.events, self.echo, self.guardian, self.extra_env)
        self.supervisor = Supervisor(ctx, flags)
        self.listener = FlagListener(self.database_url, self.supervisor.apply_flags, self.config.healdec.flag_reread_s)
        self.engine = HealthEngine(self.config, self.supervisor, self.pool)
        self.supervisor.start()
        await self.listener.start()
        await self.engine.start()
        server = _EmbeddedServer(
            uvicorn.Config(create_app(self), log_level="warning", access_log=False, lifespan="off")
        )
        api = asyncio.create_task(server.serve(sockets=[sock]), name="http")
        host, port = sock.getsockname()[:2]
        self.say(f"API listening on http://{host}:{port} (status: /api/workers/status, console: /workers)")
        if self.token_generated:
            self.say(f"ADMIN_TOKEN was not set; this run's admin token is: {self.auth.admin_token}")
        try:
            await self._stopping.wait()
        finally:
            self.say("shutting down: stopping workers")
            server.should_exit = True
            await self.supervisor.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(api, timeout=3)
            await self.listener.stop()
            await self.engine.stop()
            await self.events.stop()
            self.guardian.stop()
            await self.pool.close()
            self.say("stopped")

    async def _read_flags(self) -> dict[str, bool]:
        async with self.pool.connection() as conn:
            return await read_flags(conn)


def _manager_line(text: str) -> LogLine:
    return LogLine(time.time(), "manager", text)


def run_manager(config: Config, *, devnet: bool = False, log_format: str = "text") -> int:
    """Boot and run until SIGTERM/SIGINT. Returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="[manager] %(levelname)s %(message)s", stream=sys.stdout)
    echo = OutputEcho(log_format)

    def say(text: str) -> None:
        echo.write("manager", _manager_line(text))

    extra_env: dict[str, str] = {}
    stack = None
    if devnet:
        from devnet.stack import start_devnet

        stack = start_devnet(say)
        config = stack.apply(config)
        extra_env = stack.env
    try:
        url = prepare_database(config, say)
        say(f"database: {redact_url(url)}")
        manager = Manager(config, url, log_format=log_format, extra_env=extra_env)
        asyncio.run(manager.run())
    finally:
        if stack is not None:
            stack.stop()
    return 0
