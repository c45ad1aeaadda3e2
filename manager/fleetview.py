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
            where = f"{owner['host']} (pid {owner['pid']}, manager {owner['managerId']})" if owner else None
            reason = f"placed on {where}; not reported yet" if where else "no live manager holds its lease"
            status.update({"healthy": False, "pid": None, "verdict": "down", "reasons": [reason]})
        status["owner"] = owner
        return status

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
            report["problems"].append(f"lease renewal failing: {keeper.last_error}")
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
            return super().command(name, action)
        task = asyncio.get_running_loop().create_task(self._send(name, action, owner["managerId"]))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        status = self._remote(runner)
        status["sentTo"] = owner
        return status

    async def _send(self, name: str, action: str, target: str) -> None:
        try:
            await self._keeper.send_command(name, action, target)
        except Exception as exc:  # the database is down: the operator sees it in the log
            log.error("could not queue %s %s for manager %s: %s", action, name, target, exc)
