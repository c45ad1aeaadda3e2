"""The set of supervised workers: starts them in config order, applies flag changes, stops
them all at once on shutdown.
"""

from __future__ import annotations

from collections.abc import Mapping

from manager.errors import UnknownWorker
from manager.runner import RunnerContext, WorkerRunner, stop_all


class Supervisor:
    def __init__(self, ctx: RunnerContext, flags: Mapping[str, bool]) -> None:
        self.ctx = ctx
        self.runners: dict[str, WorkerRunner] = {name: WorkerRunner(name, ctx) for name in ctx.config.workers}
        for runner in self.runners.values():  # a replica follows its worker's flag
            runner.set_flag(flags.get(runner.flag_name, True))

    async def start(self) -> None:
        for runner in self.runners.values():
            runner.start()

    async def stop(self) -> None:
        await stop_all(list(self.runners.values()))

    def get(self, name: str) -> WorkerRunner:
        try:
            return self.runners[name]
        except KeyError:
            known = ", ".join(self.runners) or "none"
            raise UnknownWorker(f"no worker named {name!r} (configured: {known})") from None

    def apply_flags(self, flags: Mapping[str, bool]) -> None:
        """Pause or resume workers whose `<name>_enabled` changed; a missing row means enabled."""
        for runner in self.runners.values():
            runner.set_flag(flags.get(runner.flag_name, True))
