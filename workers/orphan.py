"""A worker whose manager died stops within a bounded time, however long its current item is.

The manager's own SIGTERM asks for a graceful stop (finish the current item, then exit), and the
manager waits `stop_timeout_s` for it. When the manager is gone nobody waits and nobody would
escalate if its guardian went too, so an orphan stops on its own: it asks for the same graceful stop,
and if that has not finished after `ORPHAN_GRACE_S` it leaves at once with `os._exit`. Nothing is lost:
the cursor is committed in the same transaction as the rows, so an interrupted batch is redone by
the next worker.

The parent is watched with a pidfd (Linux ≥ 5.3) in a daemon thread: no polling, no signal needed,
and it works while the main thread is stuck inside a C call that would delay a Python signal handler.
Where pidfd is missing, the thread polls `getppid()` every 0.2 s.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

ORPHAN_GRACE_S = 1.0
ORPHAN_EXIT_CODE = 70  # nobody reads it: the parent is gone


def _wait_for_parent_exit(ppid: int) -> None:
    try:
        pidfd = os.pidfd_open(ppid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        if os.getppid() == ppid:  # opened the right process, not a recycled pid
            select.select([pidfd], [], [])
        os.close(pidfd)
        return
    while os.getppid() == ppid:
        time.sleep(0.2)


def watch_parent(request_stop: Callable[[], None], grace_s: float = ORPHAN_GRACE_S) -> threading.Thread | None:
    """Start a daemon thread that stops this process within `grace_s` of its parent's death."""
    ppid = os.getppid()
    if ppid <= 1:
        return None  # started by init or a container runtime: there is no parent to outlive

    def guard() -> None:
        _wait_for_parent_exit(ppid)
        request_stop()
        time.sleep(grace_s)
        os._exit(ORPHAN_EXIT_CODE)

    thread = threading.Thread(target=guard, name="orphan-watch", daemon=True)
    thread.start()
    return thread
