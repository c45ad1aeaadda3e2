"""The narrow interface the HTTP routes and the console use to see and steer the workers.

`StatusView` answers from memory (status, logs, heartbeat detail, recent events); `FleetCommands`
starts, stops and restarts a worker by name. Both are Protocols so a router depends on what it
needs, not on the supervisor, the Healdec engine or the pool; `Fleet` implements both.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal, Protocol

from manager.errors import WorkerConflict
from manager.logs import iso
from workers.redact import mask_secrets

if TYPE_CHECKING:
    from healdec.engine import HealthEngine
    from manager.events import EventRecorder
    from manager.flags import FlagListener
    from manager.runner import WorkerRunner
    from manager.supervisor import Supervisor

Action = Literal["start", "stop", "restart"]


class StatusView(Protocol):
    """What the manager knows about its workers, read from memory (never waits on anything)."""

    def names(self) -> list[str]: ...
    def status(self) -> list[dict[str, Any]]: ...
    def status_json(self) -> bytes: ...
    def worker(self, name: str) -> dict[str, Any]: ...
    def logs(self, name: str, lines: int) -> list[dict[str, str | None]]: ...
    def config(self, name: str) -> dict[str, Any]: ...
    def scrub(self, name: str, text: str) -> str: ...
    def heartbeat_detail(self, name: str) -> dict[str, Any] | None: ...
    def recent_events(self, name: str, limit: int) -> list[dict[str, Any]]: ...
    def health_report(self) -> dict[str, Any]: ...


class FleetCommands(Protocol):
    """Asks a worker to change state; raises UnknownWorker or WorkerConflict."""

    def command(self, name: str, action: Action) -> dict[str, Any]: ...


class Fleet:
    """StatusView and FleetCommands over the supervisor, the Healdec engine and the event recorder."""

    def __init__(
        self,
        supervisor: Supervisor,
        engine: HealthEngine,
        events: EventRecorder,
        listener: FlagListener,
        started_monotonic: float,
    ) -> None:
        self._supervisor = supervisor
        self._engine = engine
        self._events = events
        self._listener = listener
        self._started = started_monotonic

    def _runner(self, name: str) -> WorkerRunner:
        return self._supervisor.get(name)  # raises UnknownWorker

    # ---- StatusView -----------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._supervisor.runners)

    def status(self) -> list[dict[str, Any]]:
        return self._engine.status()

    def status_json(self) -> bytes:
        return self._engine.status_json()

    def worker(self, name: str) -> dict[str, Any]:
        return self._engine.worker_status(self._runner(name))

    def logs(self, name: str, lines: int) -> list[dict[str, str | None]]:
        return [line.as_json() for line in reversed(self._runner(name).log.recent(lines))]

    def config(self, name: str) -> dict[str, Any]:
        """The worker's configuration with secrets masked."""
        return mask_secrets(self._runner(name).spec.model_dump(mode="json"))  # type: ignore[no-any-return]

    def scrub(self, name: str, text: str) -> str:
        return self._runner(name).scrub(text)

    def heartbeat_detail(self, name: str) -> dict[str, Any] | None:
        return self._engine.heartbeat_detail(name)

    def recent_events(self, name: str, limit: int) -> list[dict[str, Any]]:
        return [event.as_json() for event in reversed(self._events.recent(name, limit))]

    def health_report(self) -> dict[str, Any]:
        """The manager's own health: is its view of the database current?"""
        listener = self._listener
        problems = []
        # Problems are named, never quoted: a driver's error text can carry hosts, users or DSNs.
        if not listener.connected:
            problems.append("flag listener disconnected" + ("" if listener.last_error else " (connecting)"))
        if self._engine.last_sweep_error:
            problems.append("heartbeat sweep failing: the database is not answering")
        return {
            "status": "ok" if not problems else "degraded",
            "problems": problems,
            "uptimeSeconds": round(time.monotonic() - self._started, 3),
            "workers": len(self._supervisor.runners),
            "running": self._engine.running_count(),
            "flagListener": {
                "connected": listener.connected,
                "downSince": iso(listener.down_since),
                "notifications": listener.notifications,
            },
        }

    # ---- FleetCommands --------------------------------------------------------------------

    def command(self, name: str, action: Action) -> dict[str, Any]:
        """Ask the worker to start, stop or restart; returns its status right after asking."""
        runner = self._runner(name)
        if action == "start" and not runner.flag_enabled:
            raise WorkerConflict(f"{runner.flag_name} is false; enable the flag to start {name}")
        if not runner.spec.enabled:
            raise WorkerConflict(f"{name} has enabled: false in the config; the manager does not run it")
        {"start": runner.request_start, "stop": runner.request_stop, "restart": runner.request_restart}[action]()
        return self._engine.worker_status(runner)
