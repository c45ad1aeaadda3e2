"""One owner for the manager's long-running parts: each is started in order and, once started,
stopped in reverse on every way out (a signal, an error, or a failure halfway through startup).

Every part has the same shape (`async start()`, `async stop()`); `Lifecycle.start` registers its
stop on an `AsyncExitStack` only after it started, so a part that failed to start is not stopped,
and every part started before it is. A failing stop is logged and the rest still stop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

log = logging.getLogger("manager")


class Part(Protocol):
    """A long-running part of the manager."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Lifecycle:
    """Use as `async with Lifecycle(say) as parts: await parts.start("name", part)`."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Lifecycle:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)

    async def start(self, name: str, part: Part) -> None:
        await part.start()
        self._stack.push_async_callback(self._stop, name, part)

    async def _stop(self, name: str, part: Part) -> None:
        self._say(f"stopping {name}")
        try:
            await part.stop()
        except Exception as exc:  # the parts started before it must still stop
            log.error("stopping %s failed: %r", name, exc)
