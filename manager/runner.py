"""One supervised worker: its state machine and the loop that spawns, watches and restarts it.

Everything that happens to the worker goes through this object's single lifecycle task, so
there is never more than one process per worker and every transition is recorded as an event.
Operators and the flag listener only express intent (`desired`) and wake the task.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from healdec.rules import RestartPolicy, decide_after_crash, restarts_in_window
from manager.config import Config, WorkerConfig
from manager.events import EventRecorder
from manager.logs import OutputEcho, WorkerLog
from manager.process import ChildProcess, ExitStatus, GuardianLink
from manager.states import WorkerState, check_transition
from manager.template import TemplateSpawner, TemplateUnavailable
from manager.worker_env import manager_secrets_environment, worker_environment
from workers.lease import EXIT_LEASE_LOST
from workers.redact import SecretScrubber

log = logging.getLogger(__name__)


class Desired(StrEnum):
    RUN = "run"
    PAUSE = "pause"  # its flag is false
    STOP = "stop"  # an operator stopped it, or it exited 0
    SHUTDOWN = "shutdown"  # the manager is stopping


@dataclass
class RunnerContext:
    """What every runner shares: where the database is, where events and output go."""

    config: Config
    database_url: str
    events: EventRecorder
    echo: OutputEcho
    guardian: GuardianLink | None
    extra_env: dict[str, str]  # e.g. the devnet endpoints
    template: TemplateSpawner | None = None  # forks `module:` workers pre-imported (healdec.template_fork)
    leasing: bool = False  # True: a worker runs only while this manager holds its lease (manager.leases)
    worker_database_urls: dict[str, str] = field(default_factory=dict)  # a worker's own role (manager.worker_roles)


def worker_argv(spec: WorkerConfig) -> list[str]:
    """The program to run: the configured command, or `<this python> -u -m <module>`."""
    if spec.command is not None:
        return list(spec.command)
    assert spec.module is not None
    return [sys.executable, "-u", "-m", spec.module]


class WorkerRunner:
    def __init__(self, name: str, ctx: RunnerContext, flag_enabled: bool = True) -> None:
        self.name = name
        self.spec: WorkerConfig = ctx.config.workers[name]
        self._ctx = ctx
        healdec = ctx.config.healdec
        self.policy = RestartPolicy(
            healdec.max_restarts,
            healdec.restart_window_s,
            healdec.min_uptime_s,
            healdec.restart_delay_ms,
            healdec.max_restart_delay_ms,
        )
        self.stop_timeout_s = healdec.stop_timeout_s
        self.lease_epoch: int | None = None  # passed to the worker, which fences its writes with it
        self.leased = not ctx.leasing
        # Everything the manager knows (not just this worker's share) is scrubbed from what it reports.
        self.scrub = SecretScrubber.from_environment(
            {
                **manager_secrets_environment(ctx.database_url, ctx.extra_env),
                **{f"WORKER_DATABASE_URL_{n}": url for n, url in ctx.worker_database_urls.items()},
                **self.spec.env,
            },
            ctx.config.model_dump(mode="json"),
        )
        self.log = WorkerLog(name, ctx.echo, scrub=self.scrub)
        self.state = WorkerState.STOPPED if self.spec.enabled else WorkerState.DISABLED
        self.flag_enabled = flag_enabled
        self.desired = Desired.RUN if flag_enabled else Desired.PAUSE
        self.process: ChildProcess | None = None
        self.restart_count = 0  # restarts since the manager booted (crashes, hangs, operators)
        self.restart_times: deque[float] = deque()  # budgeted restarts, monotonic
        self.memory_restart_times: deque[float] = deque()  # restarts for max_rss_mb, monotonic
        self._stop_reason: str | None = None  # why the manager itself restarts it (e.g. memory)
        self.quick_crashes = 0
        self.last_exit: ExitStatus | None = None
        self.crash_note: str | None = None
        self.state_since = time.time()
        self._blocked_by_failure = False
        self._pending_delay_s = 0.0
        self._restart_requested = False
        self._hung_reason: str | None = None
        self._next_start_event = "started"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.on_change: list[Callable[[WorkerRunner], None]] = []

    # ---- intent, from operators and the flag listener -------------------------------------

    @property
    def flag_name(self) -> str:
        """`<name>_enabled`; a replica (`ai-2`) follows its worker's flag (`ai_enabled`)."""
        return f"{self.spec.replica_of or self.name}_enabled"

    def set_flag(self, enabled: bool) -> None:
        if enabled == self.flag_enabled:
            return
        self.flag_enabled = enabled
        if self.desired is Desired.SHUTDOWN:
            return
        if not enabled and self.desired is Desired.RUN:
            self.desired = Desired.PAUSE
        elif enabled and self.desired is Desired.PAUSE:
            self.desired = Desired.RUN
            self._blocked_by_failure = False
            self._pending_delay_s = 0.0
            self._next_start_event = "resumed"
        self._wake.set()

    def request_start(self) -> None:
        """Operator start: also clears `failed` and resets the restart budget."""
        self._reset_budget()
        if self.desired is not Desired.SHUTDOWN:
            self.desired = Desired.RUN
        self._wake.set()

    def request_stop(self) -> None:
        if self.desired is not Desired.SHUTDOWN:
            self.desired = Desired.STOP
        self._wake.set()

    def request_restart(self) -> None:
        """Operator restart: stop (if running) and start again, with a fresh budget."""
        self._reset_budget()
        if self.desired is not Desired.SHUTDOWN:
            self.desired = Desired.RUN
            self._restart_requested = True
        self._wake.set()

    def kill_hung(self, reason: str) -> None:
        """Healdec found it alive but silent: SIGKILL it; the exit then counts as a crash."""
        process = self.process
        if process is None or not process.running or self._hung_reason is not None:
            return
        self._hung_reason = reason
        self._ctx.events.record(self.name, "killed_hung", process.pid, reason=reason)
        self.log.add("manager", f"killed as hung: {reason}")
        process.signal_group(signal.SIGKILL)

    # ---- placement, from the lease keeper (manager.leases) -----------------------------------

    def follow_operator(self, stopped: bool) -> None:
        """On taking the lease: an operator's stop, kept in the database, holds here too; a stop
        left over from an earlier placement here that an operator has since undone does not."""
        if stopped:
            self.request_stop()
        elif self.desired is Desired.STOP:
            self.request_start()

    def grant_lease(self, epoch: int) -> None:
        """This manager now holds the lease at `epoch`: the worker may run."""
        self.lease_epoch, self.leased = epoch, True
        self._wake.set()

    def hand_over(self) -> None:
        """Stop gracefully (it finishes its item) so another manager can run it."""
        self.leased = False
        self._wake.set()

    def lose_lease(self, reason: str) -> None:
        """The lease is gone: SIGKILL at once; the fence refuses whatever it would still write."""
        self.leased = False
        process = self.process
        if process is not None and process.running:
            self._ctx.events.record(self.name, "lease_lost", process.pid, reason=reason)
            self.log.add("manager", f"lease lost ({reason}): killed")
            process.signal_group(signal.SIGKILL)
        self._wake.set()

    @property
    def idle(self) -> bool:
        """No process of this worker is running under this manager."""
        return self.process is None

    def restart_for_memory(self, figure: str) -> None:
        """Over `max_rss_mb`: a graceful restart (SIGTERM, then the stop timeout), counted in
        `restart_count` but not in the crash budget, since the worker did not crash."""
        process = self.process
        if process is None or not process.running or self._restart_requested or self.desired is not Desired.RUN:
            return
        now = time.monotonic()
        self.memory_restart_times.append(now)
        while self.memory_restart_times and now - self.memory_restart_times[0] >= 3600:
            self.memory_restart_times.popleft()
        self._ctx.events.record(self.name, "memory_restart", process.pid, reason=figure)
        self.log.add("manager", f"restarting: {figure}")
        self._stop_reason = "memory limit"
        self._restart_requested = True
        self._wake.set()

    def memory_restarts_last_hour(self) -> int:
        now = time.monotonic()
        return sum(1 for t in self.memory_restart_times if now - t < 3600)

    def _reset_budget(self) -> None:
        self._blocked_by_failure = False
        self._pending_delay_s = 0.0
        self.restart_times.clear()
        self.quick_crashes = 0

    # ---- start/stop of the runner itself ----------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._lifecycle(), name=f"runner-{self.name}")

    async def stop(self) -> None:
        self.desired = Desired.SHUTDOWN
        self._wake.set()
        if self._task:
            await self._task

    # ---- the lifecycle ----------------------------------------------------------------------

    def _enter(self, state: WorkerState, event: str | None = None, **detail: object) -> None:
        if state != self.state:
            check_transition(self.state, state)
            self.state = state
            self.state_since = time.time()
        if event:
            pid = self.process.pid if self.process else None
            self._ctx.events.record(self.name, event, pid, **detail)
        for callback in self.on_change:
            callback(self)

    async def _wait_for_intent(self, timeout_s: float | None = None) -> bool:
        """Sleep until someone changes our intent (True) or the timeout passes (False)."""
        try:
            async with asyncio.timeout(timeout_s):  # not wait_for: see manager/listen.py
                await self._wake.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._wake.clear()

    async def _lifecycle(self) -> None:
        if self.state is WorkerState.DISABLED:
            while self.desired is not Desired.SHUTDOWN:
                await self._wait_for_intent()
            return
        while True:
            desired = self.desired
            if desired is Desired.SHUTDOWN:
                if self.state not in (WorkerState.PAUSED, WorkerState.FAILED):
                    self._enter(WorkerState.STOPPED)
                return
            if desired is Desired.PAUSE:
                if self.state is not WorkerState.PAUSED:
                    self._enter(WorkerState.PAUSED, "paused", flag=self.flag_name)
                await self._wait_for_intent()
                continue
            if desired is Desired.STOP:
                if self.state is not WorkerState.STOPPED:
                    self._enter(WorkerState.STOPPED, "stopped", by="operator")
                await self._wait_for_intent()
                continue
            if not self.leased:  # another manager runs it, or nobody may yet
                if self.state is not WorkerState.STOPPED:
                    self._enter(WorkerState.STOPPED)
                await self._wait_for_intent()
                continue
            if self._blocked_by_failure:
                await self._wait_for_intent()
                continue
            if self._pending_delay_s > 0 and not self._restart_requested:
                delay, self._pending_delay_s = self._pending_delay_s, 0.0
                if await self._wait_for_intent(delay):
                    continue  # intent changed during the backoff: decide again
            await self._run_once()

    def _argv(self) -> list[str]:
        return worker_argv(self.spec)

    def _env(self) -> dict[str, str]:
        url = self._ctx.worker_database_urls.get(self.name, self._ctx.database_url)
        env = worker_environment(self.name, self.spec, url, self._ctx.extra_env)
        if self.lease_epoch is not None:
            env["WORKER_LEASE_EPOCH"] = str(self.lease_epoch)
        return env

    async def _run_once(self) -> None:
        if self._restart_requested:  # an operator restart counts, but not against the budget
            self.restart_count += 1
        self._restart_requested = False
        event, self._next_start_event = self._next_start_event, "restarted"
        self._enter(WorkerState.STARTING)
        try:
            process = await self._spawn()
        except OSError as exc:
            self.log.add("manager", f"could not start: {exc}")
            self._after_exit(None, ExitStatus(127, None), f"could not start: {exc.strerror or exc}")
            return
        self.process = process
        self._enter(WorkerState.RUNNING, event, argv=self._argv()[:3])
        while process.running:
            waker = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({process.exited, waker}, return_when=asyncio.FIRST_COMPLETED)
            waker.cancel()
            self._wake.clear()
            if process.running and (self.desired is not Desired.RUN or self._restart_requested or not self.leased):
                await self._stop_process(process)
                return
        await process.drain_output(0.2)
        if not self.leased or process.exited.result().code == EXIT_LEASE_LOST:  # fenced out: not a crash
            self.leased = False  # the lease keeper confirms (or regrants) at its next renewal
            self.last_exit, self.process = process.exited.result(), None
            self._enter(WorkerState.STOPPED, "stopped", by="lease lost")
            return
        self._after_exit(process, process.exited.result())

    async def _spawn(self) -> ChildProcess:
        """Fork from the worker template when it serves this module, else exec."""
        template = self._ctx.template
        if template is not None and template.serves(self.spec.module):
            assert self.spec.module is not None
            try:
                return await ChildProcess.fork(
                    template, self.spec.module, self._env(), self.log.add, self._ctx.guardian, nice=self.spec.nice
                )
            except TemplateUnavailable:
                pass
        return await ChildProcess.spawn(
            self._argv(), self._env(), self.log.add, self._ctx.guardian, nice=self.spec.nice
        )

    async def _stop_process(self, process: ChildProcess) -> None:
        self._enter(WorkerState.STOPPING)
        status = await process.stop(self.stop_timeout_s)
        await process.drain_output(0.5)
        self.last_exit = status
        reason = {Desired.PAUSE: "paused", Desired.STOP: "operator stop", Desired.SHUTDOWN: "shutdown"}
        why = "operator restart" if self.desired is Desired.RUN else reason[self.desired]
        why, self._stop_reason = self._stop_reason or why, None
        why = why if self.leased else "handed over"
        forced = {}
        if process.killed_after_timeout:
            forced = {"forced": f"SIGKILL: still running {self.stop_timeout_s:g} s after SIGTERM"}
            self.log.add("manager", f"did not stop within {self.stop_timeout_s:g} s of SIGTERM: killed (SIGKILL)")
        self._ctx.events.record(
            self.name,
            "exited",
            process.pid,
            code=status.code,
            signal=status.signal,
            uptime_s=round(process.uptime_s(), 3),
            reason=why,
            **forced,
        )
        self.process = None

    def _after_exit(self, process: ChildProcess | None, status: ExitStatus, note: str | None = None) -> None:
        uptime = process.uptime_s() if process else 0.0
        pid = process.pid if process else None
        hung, self._hung_reason = self._hung_reason, None
        self._stop_reason = None  # it exited by itself before a requested restart could stop it
        self.last_exit = status
        self.process = None
        what = note or ("killed as hung" if hung else status.describe())
        self._ctx.events.record(
            self.name,
            "exited",
            pid,
            code=status.code,
            signal=status.signal,
            uptime_s=round(uptime, 3),
            hung=bool(hung),
        )
        self.log.add("manager", f"{what} after {uptime:.1f} s")
        if status.clean and not hung:
            self.desired = Desired.STOP
            self._enter(WorkerState.STOPPED, "stopped", by="exit 0")
            return
        now = time.monotonic()
        decision = decide_after_crash(
            uptime_s=uptime,
            quick_crashes=self.quick_crashes,
            restart_times=self.restart_times,
            now=now,
            policy=self.policy,
        )
        self.quick_crashes = decision.quick_crashes
        if decision.give_up:
            spent = restarts_in_window(self.restart_times, now, self.policy.restart_window_s)
            self.crash_note = f"{what}; {spent} restarts within {self.policy.restart_window_s:g} s"
            self._blocked_by_failure = True
            self._enter(WorkerState.FAILED, "failed", restarts=spent, last=what)
            self.log.add("manager", f"failed: {self.crash_note}; restart it from the API, CLI or console")
            return
        self.restart_times.append(now)
        while self.restart_times and now - self.restart_times[0] >= self.policy.restart_window_s:
            self.restart_times.popleft()
        self.restart_count += 1
        self._pending_delay_s = decision.delay_s
        self.crash_note = f"{what}; restarting in {decision.delay_s:.1f} s" if decision.delay_s else what
        if decision.delay_s > 0:
            self._enter(WorkerState.BACKOFF, "backoff", delay_s=decision.delay_s, last=what)
        else:
            self._enter(WorkerState.BACKOFF)

    # ---- facts for status -------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.running else None

    def uptime_s(self) -> float | None:
        return self.process.uptime_s() if self.process and self.process.running else None


async def stop_all(runners: list[WorkerRunner]) -> None:
    """Stop every runner at once (each stops its process gracefully)."""
    results = await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)
    for runner, result in zip(runners, results, strict=True):
        if isinstance(result, BaseException):
            log.error("stopping %s failed: %r", runner.name, result)
