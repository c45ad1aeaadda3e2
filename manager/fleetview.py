"""The whole fleet as seen from any manager: `Fleet` with placement across managers.

Workers this manager runs are reported from its own supervisor and Healdec, as before, plus
`owner`. Workers another manager runs are reported as that manager last published them (its
`managers.statuses` row, refreshed by the lease keeper every `lease_ttl_s / 3`), so every answer
still comes from memory. Operator actions on a worker owned elsewhere are queued in
`worker_commands` and NOTIFY wakes the owner; no manager calls another directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from manager.fleet import Action, Fleet
from manager.leases import LeaseKeeper

if TYPE_CHECKING:
    from manager.runner import WorkerRunner

log = logging.getLogger(__name__)

STATUS_MAX_AGE_S = 0.1


class ClusterFleet(Fleet):
    def __init__(self, *args: Any, keeper: LeaseKeeper, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keeper = keeper
        self._json: bytes = b""
        self._json_at = float("-inf")
        self._sends: set[asyncio.Task[None]] = set()
        keeper.publish = self.published
        keeper.on_command = self._local_command
        for runner in self._supervisor.runners.values():  # a state change is visible at once, not
            runner.on_change.append(self._forget_status)  # after the cache's 0.1 s

    def _forget_status(self, _runner: WorkerRunner | None = None) -> None:
        self._json_at = float("-inf")

    def published(self) -> dict[str, Any]:
        """The statuses of the workers this manager holds, for the other managers to show."""
        return {name: self._local(self._runner(name), sample=False) for name in list(self._keeper.held)}

    def _local(self, runner: WorkerRunner, *, sample: bool = True) -> dict[str, Any]:
        status = self._engine.worker_status(runner, sample=sample)
        status["owner"] = self._keeper.identity.as_owner()
        return status

    def _remote(self, runner: WorkerRunner) -> dict[str, Any]:
        status = self._engine.worker_status(runner)  # config, flag and heartbeat-row facts
        owner = self._keeper.owner_of(runner.name)
        reported = self._keeper.reported_status(runner.name)
        if reported is not None:
            status.update(reported)
        elif runner.spec.enabled:
            status.update({"healthy": False, "pid": None, "verdict": "down", "reasons": [self._unplaced(owner)]})
        status["owner"] = owner
        return status

    def _unplaced(self, owner: dict[str, Any] | None) -> str:
        """Why a worker that no manager reports on is not running, in an operator's words."""
        if self._keeper.last_error:  # named, not quoted: the driver's text names sockets, hosts and users
            return "stopped: the database is not answering, so no manager can hold its lease; it starts again once the database is back"
        if owner is None:
            return "no live manager holds its lease"
        if owner["managerId"] == self._keeper.identity.id:
            return "this manager holds its lease again and is starting it"
        return f"placed on {owner['host']} (pid {owner['pid']}, manager {owner['managerId']}); not reported yet"

    def _status_of(self, runner: WorkerRunner) -> dict[str, Any]:
        return self._local(runner) if self._keeper.holds(runner.name) else self._remote(runner)

    # ---- StatusView -----------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        return [self._status_of(runner) for runner in self._supervisor.runners.values()]

    def status_json(self) -> bytes:
        now = time.monotonic()
        if now - self._json_at > STATUS_MAX_AGE_S:
            self._json, self._json_at = json.dumps(self.status(), separators=(",", ":")).encode(), now
        return self._json

    def worker(self, name: str) -> dict[str, Any]:
        return self._status_of(self._runner(name))

    def health_report(self) -> dict[str, Any]:
        report = super().health_report()
        keeper = self._keeper
        if keeper.last_error:
            report["status"] = "degraded"
            # named, not quoted (see Fleet.health_report): the driver's text names sockets, hosts and users
            report["problems"].append("lease renewal failing: the database is not answering")
        report["manager"] = keeper.identity.as_owner()
        report["held"] = sorted(keeper.held)
        report["managersLive"] = len(keeper.peers)
        return report

    # ---- FleetCommands --------------------------------------------------------------------

    def _local_command(self, name: str, action: str) -> None:
        super().command(name, action)  # type: ignore[arg-type]

    def command(self, name: str, action: Action) -> dict[str, Any]:
        """Run it here when this manager holds the worker (or nobody does); otherwise queue it for
        the owner through the database and answer with what is known now."""
        runner = self._runner(name)
        owner = self._keeper.owner_of(name)
        if self._keeper.holds(name) or owner is None:
            status = super().command(name, action)
            self._background(self._keeper.record_desired(name, action), f"keep {action} of {name}")
            return status
        self._background(self._keeper.command_elsewhere(name, action, owner["managerId"]), f"queue {action} of {name}")
        status = self._remote(runner)
        status["sentTo"] = owner
        return status

    def _background(self, write: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(self._logged(write, what))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _logged(self, write: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await write
        except Exception as exc:  # the database is down: the operator sees it in the log
            log.error("could not %s: %s", what, exc)
