"""The orphan guardian: a tiny process that outlives a SIGKILLed manager and cleans up after it.

Each worker already gets a parent-death signal (prctl PR_SET_PDEATHSIG), but that reaches only
the worker's own process, not programs it started. The manager therefore starts this guardian
with a pipe on its stdin and tells it every worker's process group (`+PGID` / `-PGID` lines).
When the pipe closes without a `bye` — the manager died — the guardian sends SIGTERM to every
group it still knows, waits briefly, then SIGKILLs what is left, so no worker outlives the manager
by more than about 1.5 s.

Run as `python -I -S manager/guardian.py` (standard library only, so no site-packages); it ignores SIGINT (a terminal's Ctrl-C is the manager's to handle).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

GRACE_S = 1.2


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _signal_all(groups: set[int], sig: int) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def reap_groups(groups: set[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM every group, then SIGKILL whatever is still alive after `grace_s`."""
    _signal_all(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        groups = {g for g in groups if _alive(g)}
        if not groups:
            return
        time.sleep(0.05)
    _signal_all(groups, signal.SIGKILL)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for raw in sys.stdin:
        line = raw.strip()
        if line == "bye":
            return  # the manager stopped its workers itself
        if line[:1] in "+-" and line[1:].isdigit():
            pgid = int(line[1:])
            if line[0] == "+":
                groups.add(pgid)
            else:
                groups.discard(pgid)
    reap_groups(groups)


if __name__ == "__main__":
    main()
