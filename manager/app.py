"""The manager process: starts its parts in order, runs until SIGTERM/SIGINT, stops them in reverse.

Order: database (embedded if needed) → migrations → flag seeding, then the long-running parts:
connection pool → orphan guardian → event recorder → worker template → supervisor (workers) → memory limits →
flag listener → Healdec engine → alerts → HTTP. One owner (`manager.lifecycle.Lifecycle`) stops
every part that started, in reverse, on every way out, so workers are stopped gracefully while the
database is still there to record it, even when a later part fails to start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from healdec.engine import HealthEngine
from manager.alerts import Alerts
from manager.config import Config
from manager.db import connect_with_retry, resolve_database_url
from manager.errors import ManagerError
from manager.events import EventRecorder
from manager.flags import FlagListener, read_flags
from manager.fleetview import ClusterFleet
from manager.instances import InstanceAudit
from manager.leases import Identity, LeaseKeeper
from manager.lifecycle import Lifecycle
from manager.limits import MemoryLimits
from manager.logs import LogLine, OutputEcho
from manager.process import GuardianLink
from manager.runner import RunnerContext
from manager.store import Store
from manager.supervisor import Supervisor
from manager.template import TemplateSpawner
from manager.worker_roles import worker_database_urls
from sql import MigrationChanged, apply_migrations, query
from workers.features import declared_features, feature_flag
from workers.redact import redact_url

log = logging.getLogger("manager")


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
        try:
            applied = apply_migrations(conn)
        except MigrationChanged as exc:
            raise ManagerError(str(exc)) from None
        if applied:
            say(f"applied migrations: {', '.join(applied)}")
        with conn.transaction():
            conn.execute(query("set_actor"), ("config",))
            for name, worker in config.workers.items():
                if worker.replica_of:  # a replica follows its worker's flags
                    continue
                conn.execute(
                    query("seed_flag"),
                    (f"{name}_enabled", True, worker.description or f"Run the {name} worker"),
                )
                for feature, about in declared_features(worker.module or "").items():
                    conn.execute(query("seed_flag"), (feature_flag(name, feature), True, about))
    return url


class Manager:
    """The running system: owns the parts' lifecycle; the API sees it through `manager.fleet`."""

    def __init__(
        self, config: Config, database_url: str, *, log_format: str = "text", extra_env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.database_url = database_url
        self.echo = OutputEcho(log_format)
        self.extra_env = extra_env or {}
        self.worker_database_urls: dict[str, str] = {}  # set at boot by manager.worker_roles
        self.started_monotonic = time.monotonic()
        self._stopping = asyncio.Event()
        self.template: TemplateSpawner | None = None  # given when prestarted (run_manager)

    def say(self, text: str) -> None:
        self.echo.write("manager", _manager_line(text))

    def request_shutdown(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)
        config = self.config
        async with Lifecycle(self.say) as parts:
            store = Store(self.database_url)
            await parts.start("database pool", store)
            async with store.connection() as conn:
                flags = await read_flags(conn)
            guardian = GuardianLink()
            await parts.start("orphan guardian", guardian)
            events = EventRecorder(store.pool)
            await parts.start("event recorder", events)
            template = self._template()
            if template is not None:
                await parts.start("worker template", template)
                loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(template.reload()))
            ctx = RunnerContext(
                config,
                self.database_url,
                events,
                self.echo,
                guardian,
                self.extra_env,
                template,
                leasing=True,
                worker_database_urls=self.worker_database_urls,
            )
            supervisor = Supervisor(ctx, flags)
            await parts.start("workers", supervisor)
            await parts.start("memory limits", MemoryLimits(supervisor, config.healdec.sweep_interval_ms / 1000))
            listener = FlagListener(self.database_url, supervisor.apply_flags, config.healdec.flag_reread_s)
            await parts.start("flag listener", listener)
            engine = HealthEngine(config, supervisor, store.pool)
            await parts.start("healdec", engine)
            alerts = Alerts(
                config.alerts,
                supervisor,
                engine,
                store.pool,
                config.healdec.sweep_interval_ms / 1000,
                retention_s=config.healdec.events_retention_days * 86400,
            )
            await parts.start("alerts", alerts)
            identity = Identity.for_this_process(config)
            audit = InstanceAudit(store.pool, supervisor, identity.id, identity.host)
            await parts.start("instance audit", audit)  # stops after the leases: it records their workers' ends
            keeper = LeaseKeeper(self.database_url, config, supervisor, identity, pool=store.pool)
            fleet = ClusterFleet(supervisor, engine, events, listener, self.started_monotonic, keeper=keeper)
            await parts.start("leases", keeper)
            me = keeper.identity
            self.say(f"manager {me.id} on {me.host} holds {len(keeper.held)} of {len(config.workers)} worker leases")
            # The workers are placed and spawned: now the HTTP stack (see _import_http).
            await asyncio.to_thread(_import_http, bool(config.alerts.webhooks))
            from manager.auth import Auth  # FastAPI: not before the import thread is done (its import lock)
            from manager.http import Services, create_app
            from manager.http.server import HttpServer

            auth, token_generated = Auth.from_environment()
            app = create_app(Services(fleet, fleet, store, auth, config, self.extra_env))
            http = HttpServer(app, config.api.host, config.api.port)
            await parts.start("http", http)
            assert http.address is not None
            host, port = http.address
            keeper.api_url = f"http://{host}:{port}"
            self.say(f"API listening on http://{host}:{port} (status: /api/workers/status, console: /workers)")
            if token_generated:
                self.say(f"ADMIN_TOKEN was not set; this run's admin token is: {auth.admin_token}")
            await self._stopping.wait()
            self.say("shutting down")
        self.say("stopped")

    def _template(self) -> TemplateSpawner | None:
        if self.template is None:
            self.template = worker_template(self.config)
        return self.template


def worker_template(config: Config) -> TemplateSpawner | None:
    """The worker template for `module:` workers, when `healdec.template_fork` is on."""
    modules = [w.module for w in config.workers.values() if w.module and w.command is None and w.enabled]
    if not config.healdec.template_fork or not modules or not hasattr(os, "pidfd_open"):
        return None
    return TemplateSpawner(modules)


def _import_http(alerts: bool) -> None:
    """FastAPI, uvicorn and the routes (and httpx for alert webhooks) are about half of the boot's
    imports. They are imported once the workers are spawned, in a thread (the event loop keeps
    supervising meanwhile). Not earlier, overlapping the database check and the parts' start: that
    looked free (I/O, another process) but is not. The importing thread holds the GIL for up to
    the switch interval (5 ms) each time the main thread wakes from a database round trip, and the
    boot makes a few dozen of them; on a 2-core machine the first spawn came ~0.25 s later that
    way (launch to 7 quiet children running, pre-migrated database, alternating runs at load 2: about
    1.3 s against about 1.0 s)."""
    import manager.auth
    import manager.http
    import manager.http.server  # noqa: F401

    if alerts:
        import httpx  # noqa: F401


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
    template = worker_template(config)
    if template is not None:
        template.prestart()
    try:
        url = prepare_database(config, say)
        say(f"database: {redact_url(url)}")
        manager = Manager(config, url, log_format=log_format, extra_env=extra_env)
        manager.template = template
        manager.worker_database_urls = worker_database_urls(config, url, say)
        asyncio.run(manager.run())
    finally:
        if stack is not None:
            stack.stop()
    return 0
