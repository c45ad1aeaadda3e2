"""Exactly-once placement across managers that share one database, through a lease table.

Each worker runs under a row in `worker_leases` (owner, epoch, expiry). Every `lease_ttl_s / 3`
this manager renews all its leases and its own `managers` row, takes its commands and reads the
other managers and leases, all in one statement (one round trip at rest), and follows `manager.placement.plan`: acquire the free workers assigned to
it (the epoch goes up), hand over the ones another live manager should run (graceful stop, then
release), and SIGKILL at once any worker whose lease it lost. When it cannot renew in time (the
database or the manager itself stalled) it kills its workers at its own deadline, which falls
before the database's expiry. Workers fence their writes with the epoch (workers/lease.py), so a
worker that outlives its lease commits nothing.

Why a lease table rather than advisory locks: the owner, host, pid and epoch are rows every
manager can read (the fleet view, `run-worker`'s refusal), the epoch fences writes inside the
worker's own transactions, and nothing depends on one session staying on one server connection
(a pooler or a reconnect does not silently drop a lock). A dead manager is noticed without
waiting out the TTL when the session that renews for it is gone from `pg_stat_activity` (a
killed process closes its socket); a frozen host or a partition falls back to the TTL.

Releases, joins, departures and commands are announced with NOTIFY, so a rolling deploy hands a
worker over as soon as the old manager's copy has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from manager.config import Config
from manager.db import APPLICATION_NAME
from manager.listen import Listener
from manager.placement import LeaseRow, Peer, plan
from manager.supervisor import Supervisor
from sql import query

log = logging.getLogger(__name__)

SQL = "leases.sql"
LOCK_TIMEOUT = "1s"  # acquiring waits on a stale worker's fence lock at most this long per tick
Publish = Callable[[], dict[str, Any]]  # the statuses of the workers this manager runs
CommandSink = Callable[[str, str], None]  # (worker, action) from another manager's operator


@dataclass(frozen=True)
class Identity:
    id: str
    host: str
    pid: int
    labels: tuple[str, ...]

    @classmethod
    def for_this_process(cls, config: Config) -> Identity:
        env_labels = [x.strip() for x in os.environ.get("MANAGER_LABELS", "").split(",") if x.strip()]
        return cls(
            id=uuid.uuid4().hex[:12],
            host=config.manager.host or socket.gethostname(),
            pid=os.getpid(),
            labels=tuple(dict.fromkeys([*config.manager.labels, *env_labels])),
        )

    def as_owner(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "managerId": self.id}


@dataclass(frozen=True)
class RemoteLease:
    owner: str
    host: str
    pid: int
    epoch: int
    expires_in_s: float


class LeaseKeeper:
    """A lifecycle part: holds this manager's leases and keeps the fleet picture in memory."""

    def __init__(
        self,
        url: str,
        config: Config,
        supervisor: Supervisor,
        identity: Identity,
        pool: AsyncConnectionPool | None = None,  # for commands (else a connection each)
    ) -> None:
        self._url = url
        self._pool = pool
        self._config = config
        self._supervisor = supervisor
        self.identity = identity
        self.ttl_s = config.healdec.lease_ttl_s
        self.api_url = ""
        self.publish: Publish = dict
        self.on_command: CommandSink = lambda _name, _action: None
        self.held: dict[str, int] = {}  # worker -> epoch
        self.leases: dict[str, RemoteLease] = {}
        self.peers: dict[str, dict[str, Any]] = {}  # live managers' rows, by id
        self._valid_until = 0.0  # monotonic: past it, our leases may be someone else's
        self._handing_over: set[str] = set()
        self._to_release: set[str] = set()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._handovers: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._dead: list[str] = []  # managers whose renewing session is gone
        self.last_error: str | None = None
        self._listener = Listener(
            url,
            ("worker_leases", "worker_commands"),
            self._on_notices,
            app_name="leases-listen",
            what="lease listener",
            consequence="placement waits for the next renewal",
        )

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._tick()
        conn = await self._connection()
        await conn.execute(query("announce_manager", SQL), {"id": self.identity.id})
        self._tasks = [asyncio.create_task(self._loop(), name="lease-keeper")]
        await self._listener.start()

    async def stop(self) -> None:
        """Stop every worker this manager runs, each lease released the moment its copy exited."""
        self._stopping = True
        await self._listener.stop()
        for task in [*self._tasks, *self._handovers]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(self._shut_down(name) for name in list(self.held)), return_exceptions=True)
        with contextlib.suppress(psycopg.Error):
            conn = await self._connection()
            await conn.execute(query("forget_manager", SQL), {"id": self.identity.id})
            await conn.close()

    # ---- the loop ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            timeout = min(self.ttl_s / 3, max(0.0, self._valid_until - time.monotonic()))
            timeout = min(timeout, self._next_expiry_s())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, 0.01)):  # not wait_for: see manager/listen.py
                    await self._wake.wait()
            self._wake.clear()
            if self.held and time.monotonic() >= self._valid_until:
                self._lose(list(self.held), "not renewed within lease_ttl_s")
            try:
                await self._tick()
                self.last_error = None
            except (psycopg.Error, OSError) as exc:
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                log.warning("lease renewal failed: %s", self.last_error)
                await self._drop_connection()
                await asyncio.sleep(min(0.5, self.ttl_s / 10))

    def _next_expiry_s(self) -> float:
        """Seconds until the soonest foreign lease runs out (wake then to take it if it is ours)."""
        pending = [lease.expires_in_s for name, lease in self.leases.items() if name not in self.held]
        future = [s for s in pending if s > 0]
        return min(future) + 0.02 if future else self.ttl_s

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, application_name=f"{APPLICATION_NAME}:leases:{self.identity.id}"
            )
            await self._conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None

    async def _tick(self) -> None:
        conn = await self._connection()
        me = self.identity
        if self._to_release:
            names, self._to_release = sorted(self._to_release), set()
            await conn.execute(query("release_leases", SQL), {"id": me.id, "names": names})
        sent = time.monotonic()
        held = dict(self.held)
        cur = await conn.execute(
            query("lease_tick", SQL),
            {
                "id": me.id,
                "host": me.host,
                "pid": me.pid,
                "labels": list(me.labels),
                "api_url": self.api_url,
                "workers": self.runnable(),
                # Only another manager reads them: alone, this manager builds no statuses at rest.
                "statuses": Jsonb(self.publish() if len(self.peers) > 1 else {}),
                "ttl": self.ttl_s,
                "names": list(held),
                "epochs": list(held.values()),
            },
        )
        row = await cur.fetchone()
        assert row is not None  # a SELECT without FROM: always one row
        renewed, managers, leases, commands = row  # JSON: names, manager rows, lease rows, [name, action]
        self._valid_until = sent + self.ttl_s
        renewed_names = set(renewed)
        lost = [name for name in held if name not in renewed_names and self.held.get(name) == held[name]]
        if lost:
            self._lose(lost, "another manager holds it now")
        self._refresh(managers, leases)
        await self._follow_plan(conn)
        self._take_commands(commands)

    def _refresh(self, managers: list[dict[str, Any]], leases: list[dict[str, Any]]) -> None:
        self.peers = {m["id"]: m for m in managers if (m["fresh"] and m["connected"]) or m["id"] == self.identity.id}
        self._dead = [m["id"] for m in managers if not m["connected"] and m["id"] != self.identity.id]
        self.leases = {
            r["worker_name"]: RemoteLease(r["owner"], r["host"], r["pid"], r["epoch"], r["expires_in_s"])
            for r in leases
        }

    def runnable(self) -> list[str]:
        """The workers this manager's config would run (enabled in the file)."""
        return [name for name, spec in self._config.workers.items() if spec.enabled]

    async def _follow_plan(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._stopping:
            return
        pins = {name: self._config.workers[name].hosts for name in self.runnable()}
        peers = [
            Peer(m["id"], m["host"], frozenset(m["labels"] or ()), frozenset(m["workers"] or ()))
            for m in self.peers.values()
        ]
        dead = set(self._dead)
        not_holding = dead | {self.identity.id}  # a row of ours we no longer hold (lost) is free to us
        rows = {
            name: LeaseRow(lease.owner, lease.expires_in_s > 0 and lease.owner not in not_holding)
            for name, lease in self.leases.items()
        }
        decided = plan(self.identity.id, pins, peers, rows, frozenset(self.held))
        for name in decided.hand_over - self._handing_over:
            self._handing_over.add(name)
            task = asyncio.create_task(self._hand_over(name), name=f"hand-over-{name}")
            self._handovers.add(task)
            task.add_done_callback(self._handovers.discard)
        wanted = sorted(name for name in decided.acquire if self._supervisor.runners[name].idle)
        if not wanted:
            return
        me = self.identity
        cur = await conn.execute(
            query("acquire_leases", SQL),
            {"id": me.id, "host": me.host, "pid": me.pid, "ttl": self.ttl_s, "names": wanted, "dead": sorted(dead)},
        )
        got = await cur.fetchall()
        cur = await conn.execute(query("stopped_by_operator", SQL), {"names": [name for name, _ in got]})
        stopped = {row[0] for row in await cur.fetchall()}
        for name, epoch in got:
            self.held[name] = epoch
            runner = self._supervisor.runners[name]
            runner.follow_operator(stopped=name in stopped)  # an operator's stop outlives its manager
            runner.grant_lease(epoch)

    async def _hand_over(self, name: str) -> None:
        """Stop our copy gracefully, then release the lease so the next owner starts at once."""
        runner = self._supervisor.runners[name]
        runner.hand_over()
        while not runner.idle or runner.state.value in ("starting", "stopping"):
            await asyncio.sleep(0.02)
        if self.held.pop(name, None) is not None:
            self._to_release.add(name)
            self._wake.set()
        self._handing_over.discard(name)

    async def _shut_down(self, name: str) -> None:
        """The manager is stopping: stop the worker for good, then release its lease at once."""
        await self._supervisor.runners[name].stop()
        if self.held.pop(name, None) is not None:
            with contextlib.suppress(psycopg.Error):
                conn = await self._connection()
                await conn.execute(query("release_leases", SQL), {"id": self.identity.id, "names": [name]})

    def _lose(self, names: list[str], reason: str) -> None:
        for name in names:
            self.held.pop(name, None)
            self._supervisor.runners[name].lose_lease(reason)

    # ---- commands and announcements ---------------------------------------------------------

    def _take_commands(self, commands: list[list[str]]) -> None:
        """Carry out the commands the tick took (marked done in the same statement)."""
        for name, action in commands:
            if name in self._supervisor.runners:
                try:
                    self.on_command(name, action)
                except Exception as exc:  # an action the owner refuses (flag off, disabled)
                    log.warning("command %s %s from another manager refused: %s", action, name, exc)

    async def send_command(self, name: str, action: str, target: str) -> None:
        """Queue an operator action for the manager that runs `name` (it is woken by NOTIFY)."""
        await self._execute(query("send_worker_command", SQL), {"name": name, "action": action, "target": target})

    async def command_elsewhere(self, name: str, action: str, target: str) -> None:
        """An operator action on a worker another manager runs: kept, then sent to that manager."""
        await self.record_desired(name, action)
        await self.send_command(name, action, target)

    async def record_desired(self, name: str, action: str) -> None:
        """Keep an operator's stop (or start/restart) for whichever manager takes `name` next."""
        await self._execute(query("set_desired_state", SQL), {"name": name, "stopped": action == "stop"})

    async def _execute(self, statement: str, params: dict[str, Any]) -> None:
        if self._pool is not None:
            async with self._pool.connection() as pooled:
                await pooled.execute(statement, params)
            return
        async with await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, application_name=f"{APPLICATION_NAME}:command"
        ) as conn:
            await conn.execute(statement, params)

    async def _on_notices(self, _conn: psycopg.AsyncConnection[Any], notices: list[psycopg.Notify]) -> None:
        """Wake the loop on any release, join, departure or command addressed to us (and after a
        reconnect, when an announcement may have been missed)."""
        if not notices or any(n.channel == "worker_leases" or n.payload == self.identity.id for n in notices):
            self._wake.set()

    # ---- the fleet picture, from memory -----------------------------------------------------

    def holds(self, name: str) -> bool:
        return name in self.held

    def owner_of(self, name: str) -> dict[str, Any] | None:
        """Who runs `name`: {host, pid, managerId}, or None when no live lease exists."""
        if name in self.held:
            return self.identity.as_owner()
        lease = self.leases.get(name)
        if lease is None or lease.expires_in_s <= 0 or lease.owner in self._dead:
            return None
        return {"host": lease.host, "pid": lease.pid, "managerId": lease.owner}

    def reported_status(self, name: str) -> dict[str, Any] | None:
        """What the owning manager last published about `name` (None if it published nothing)."""
        owner = self.owner_of(name)
        if owner is None:
            return None
        peer = self.peers.get(owner["managerId"])
        status = (peer or {}).get("statuses", {}).get(name) if peer else None
        return dict(status) if status else None
