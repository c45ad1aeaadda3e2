"""Stopping a part cancels its task; the cancel must not be lost.

On Python 3.11, `asyncio.wait_for` returns normally when the awaitable it waits on completes in the
same loop turn as the cancel, so a loop stopped that way runs on and its `stop()` never returns (a
SIGTERMed manager hung in "stopping healdec" this way, when a heartbeat announcement arrived as it
stopped). The project waits with `asyncio.timeout` instead; these tests show why and keep it so."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def _loop_until_cancelled(wake: asyncio.Event, wait: str, rounds: list[int]) -> None:
    while True:
        rounds.append(1)
        with contextlib.suppress(TimeoutError):
            if wait == "timeout":
                async with asyncio.timeout(10):
                    await wake.wait()
            else:
                await asyncio.wait_for(wake.wait(), 10)
        wake.clear()


async def _stop_while_woken(wait: str) -> bool:
    """Whether the loop ended when cancelled in the same turn its event was set."""
    wake, rounds = asyncio.Event(), []
    task = asyncio.create_task(_loop_until_cancelled(wake, wait, rounds))
    await asyncio.sleep(0.01)  # waiting now
    wake.set()
    task.cancel()  # the same turn
    done, _ = await asyncio.wait([task], timeout=0.5)
    if not done:
        task.cancel()  # the lost cancel, again, now that the wake-up is past
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return bool(done)


def test_a_loop_that_waits_with_asyncio_timeout_stops_even_when_woken_as_it_is_cancelled():
    assert asyncio.run(_stop_while_woken("timeout"))


def test_wait_for_loses_that_cancel_before_python_3_12():
    # 3.12 rebuilt wait_for on asyncio.timeout; this project runs on 3.11
    assert asyncio.run(_stop_while_woken("wait_for")) is (sys.version_info >= (3, 12))


def test_no_part_waits_with_wait_for():
    users = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("manager", "healdec", "workers")
        for path in sorted((ROOT / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\basyncio\.wait_for\(", line)
    ]
    assert not users, f"asyncio.wait_for can lose a cancel on Python 3.11; use asyncio.timeout: {users}"
