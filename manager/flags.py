"""The flag listener: turns `feature_flags` changes into pause/resume within milliseconds.

A trigger announces every change on the `config_changed` channel (sql/migrations/0001_core.sql);
the listener re-reads the flags on each announcement. A slow periodic re-read covers
announcements lost while the listening connection was down, and a dropped connection is
reported (log, `/healthz`) and re-established with backoff (the loop is `manager.listen`'s).
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from manager.listen import Listener
from sql import query

FlagSink = Callable[[dict[str, bool]], None]


async def read_flags(conn: psycopg.AsyncConnection) -> dict[str, bool]:
    cur = await conn.execute(query("flag_states"))
    return {name: enabled for name, enabled in await cur.fetchall()}


class FlagListener:
    """Re-reads every flag on each announcement, on each (re)connect and every `reread_s`."""

    def __init__(self, database_url: str, apply: FlagSink, reread_s: float) -> None:
        self._apply = apply
        self._listener = Listener(
            database_url,
            ("config_changed",),
            self._reread,
            app_name="flags",
            what="flag listener",
            consequence="flag changes wait until it reconnects",
            catch_up_s=reread_s,
        )

    async def _reread(self, conn: psycopg.AsyncConnection, _notices: list[psycopg.Notify]) -> None:
        # One query reads every flag, so a lost announcement is repaired by the next read.
        self._apply(await read_flags(conn))

    async def start(self) -> None:
        await self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    @property
    def connected(self) -> bool:
        return self._listener.connected

    @property
    def down_since(self) -> float | None:
        return self._listener.down_since

    @property
    def last_error(self) -> str | None:
        return self._listener.last_error

    @property
    def notifications(self) -> int:
        return self._listener.notifications
