"""The flag listener: turns `feature_flags` changes into pause/resume within milliseconds.

A trigger announces every change on the `config_changed` channel (sql/migrations/0001_core.sql);
the listener re-reads the flags on each announcement. A slow periodic re-read covers
announcements lost while the listening connection was down, and a dropped connection is
reported (log, `/healthz`) and re-established with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import psycopg

from manager.db import APPLICATION_NAME
from sql import query

log = logging.getLogger(__name__)

FlagSink = Callable[[dict[str, bool]], None]


async def read_flags(conn: psycopg.AsyncConnection) -> dict[str, bool]:
    cur = await conn.execute(query("flag_states"))
    return {name: enabled for name, enabled in await cur.fetchall()}


class FlagListener:
    def __init__(self, database_url: str, apply: FlagSink, reread_s: float) -> None:
        self._url = database_url
        self._apply = apply
        self._reread_s = reread_s
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.notifications = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="flag-listener")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name=f"{APPLICATION_NAME}:flags"
                ) as conn:
                    await conn.execute("LISTEN config_changed")
                    self._apply(await read_flags(conn))
                    if not self.connected and self.down_since is not None:
                        log.warning("flag listener reconnected after %.1f s", time.time() - self.down_since)
                    self.connected, self.down_since, self.last_error, delay = True, None, None, 0.2
                    await self._serve(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected or self.down_since is None:
                    self.down_since = time.time()
                    log.warning(
                        "flag listener lost its database connection (%s); flag changes wait until it reconnects",
                        exc,
                    )
                self.connected = False
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _serve(self, conn: psycopg.AsyncConnection) -> None:
        while True:
            # Returns after one announcement or when the periodic re-read is due; either way
            # one query reads every flag, so a lost announcement is repaired by the next read.
            async for _notice in conn.notifies(timeout=self._reread_s, stop_after=1):
                self.notifications += 1
            self._apply(await read_flags(conn))
