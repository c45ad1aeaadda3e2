"""One reconnecting LISTEN loop, shared by every part that waits on Postgres NOTIFY (the flag
listener, the lease keeper, Healdec's heartbeat wake-up).

Each part used to carry its own copy of the same loop: connect, LISTEN, wait for notices, and on
any error log, back off and connect again. `Listener` is that loop once. Its owner says what to do
on each notice and when connected (`on_notices(conn, notices)`: called with an empty list right
after every (re)connect, so the owner re-reads whatever it may have missed while the connection
was down, and again every `catch_up_s` when that is set), and reads `connected`, `down_since` and
`last_error` for `/healthz`.

Between notices the loop sleeps in the kernel (no timer unless `catch_up_s` is set): an idle
manager is not woken by it at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from manager.db import APPLICATION_NAME

log = logging.getLogger(__name__)

OnNotices = Callable[[psycopg.AsyncConnection[Any], list[psycopg.Notify]], Awaitable[None]]
MAX_BACKOFF_S = 10.0
AFTER_WAKE_S = 0.05  # once the socket is readable, the notice is read at once; this only bounds a non-notice


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


class Listener:
    """LISTEN on `channels` over one connection of its own, reconnecting with backoff.

    `what` names the listener in log lines ("flag listener"), `consequence` says what waits while
    it is down ("flag changes wait until it reconnects").
    """

    def __init__(
        self,
        url: str,
        channels: tuple[str, ...],
        on_notices: OnNotices,
        *,
        app_name: str,
        what: str,
        consequence: str,
        catch_up_s: float | None = None,
    ) -> None:
        self._url = url
        self._channels = channels
        self._on_notices = on_notices
        self._app_name = f"{APPLICATION_NAME}:{app_name}"
        self._what = what
        self._consequence = consequence
        self._catch_up_s = catch_up_s
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.notifications = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name=self._app_name)

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
                    self._url, autocommit=True, application_name=self._app_name
                ) as conn:
                    for channel in self._channels:
                        await conn.execute(f"LISTEN {channel}")
                    await self._on_notices(conn, [])
                    if not self.connected and self.down_since is not None:
                        log.warning("%s reconnected after %.1f s", self._what, time.time() - self.down_since)
                    self.connected, self.down_since, self.last_error, delay = True, None, None, 0.2
                    await self._serve(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected or self.down_since is None:
                    self.down_since = time.time()
                    log.warning("%s lost its database connection (%s); %s", self._what, exc, self._consequence)
                self.connected = False
                self.last_error = first_line(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        fd = conn.fileno()
        while True:
            # The backlog first: notices that arrived while the handler queried on this connection.
            notices = [n async for n in conn.notifies(timeout=0)]
            if not notices:
                woke = await _readable(fd, self._catch_up_s)
                if woke:  # whatever arrived is read at once; stop_after ends the wait right there
                    notices = [n async for n in conn.notifies(timeout=AFTER_WAKE_S, stop_after=1)]
                    if not notices:
                        continue  # a message that is not a notice (e.g. a parameter change)
            self.notifications += len(notices)
            await self._on_notices(conn, notices)


async def _readable(fd: int, timeout_s: float | None) -> bool:
    """Wait until `fd` is readable (True) or `timeout_s` passed (False), asleep in the kernel.

    psycopg's own wait (`notifies()` without a timeout) polls every 0.1 s to stay interruptible:
    ten wake-ups a second per listener, which was most of an idle manager's CPU."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        # asyncio.timeout, not wait_for, here and in every loop that is stopped by cancelling it: on
        # Python 3.11, wait_for returns normally when its awaitable completes in the same loop turn
        # as the cancel, so the cancel is lost and the loop (and whoever awaits it) runs on forever.
        async with asyncio.timeout(timeout_s):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
