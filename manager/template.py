"""Template-fork spawning for `module:` workers: a zygote that has imported the worker modules
forks new workers on request, so a restart skips the interpreter start and the imports.

`TemplateSpawner` owns one zygote (manager.zygote) at a time. `spawn()` makes the stdout/stderr
pipes here, passes their write ends with the request, and gets the new pid back. The manager is not
the worker's parent (the zygote is), so it notices the exit with a pidfd (Linux ≥ 5.3, readable the
moment the process exits) and takes the exit status from the zygote's report. A zygote that dies
is started again on the next spawn; `reload()` (SIGHUP, `manager reload`) retires the current one —
it keeps reporting for the workers it forked until they exit — and starts a fresh one, which picks up
code changed on disk. Whenever the template cannot serve, the caller falls back to exec.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import marshal
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from manager.worker_env import base_environment

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0  # importing web3, solana, openai... on a busy machine
START_WAIT_S = 10.0  # a spawn waits this long for a (re)starting template, then uses exec
SPAWN_TIMEOUT_S = 2.0
RETRY_AFTER_S = 30.0  # after a template failed to start, exec for this long before trying again
EXIT_REPORT_TIMEOUT_S = 1.0


class TemplateUnavailable(Exception):
    """The template cannot fork this worker now: spawn it by exec instead."""


@dataclass
class _Zygote:
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    modules: frozenset[str]
    failed: dict[str, str] = field(default_factory=dict)
    pending: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    exits: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    unwanted: set[int] = field(default_factory=set)  # exits read from /proc before the report came
    closed: bool = False

    def exit_future(self, pid: int) -> asyncio.Future[int]:
        fut = self.exits.get(pid)
        if fut is None:
            fut = self.exits[pid] = asyncio.get_running_loop().create_future()
        return fut


class TemplateSpawner:
    def __init__(self, modules: list[str]) -> None:
        self._modules = sorted(set(modules))
        self._zygote: _Zygote | None = None
        self._starting: asyncio.Task[_Zygote] | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0
        self._retired: list[_Zygote] = []
        self._failed_until = float("-inf")
        self._launched: tuple[subprocess.Popen[bytes], socket.socket] | None = None  # by prestart()

    @property
    def pid(self) -> int | None:
        return self._zygote.proc.pid if self._zygote and not self._zygote.closed else None

    async def start(self) -> None:
        """Start the template; boot goes on meanwhile. The first spawns wait for it (bounded):
        forking N workers from it is quicker than N interpreters importing the same libraries side
        by side. If it cannot start, workers start by exec."""
        if self._modules:
            self._starting = asyncio.ensure_future(self._start_zygote())

    async def stop(self) -> None:
        if self._starting and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        for zygote in [*self._retired, *([self._zygote] if self._zygote else [])]:
            self._close(zygote)
            with contextlib.suppress(ProcessLookupError):
                zygote.proc.kill()
            await asyncio.to_thread(zygote.proc.wait)
        self._zygote, self._retired = None, []

    async def reload(self) -> None:
        """Retire the current template (its workers keep running) and start a fresh one."""
        old, self._zygote = self._zygote, None
        if old is not None and not old.closed:
            with contextlib.suppress(OSError):
                old.sock.send(marshal.dumps({"retire": True}))
            self._retired.append(old)
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start_zygote())

    def serves(self, module: str | None) -> bool:
        return module is not None and module in self._modules

    # ---- the zygote ---------------------------------------------------------------------------

    def prestart(self) -> None:
        """Start the template process now, before the event loop runs: its interpreter start and
        imports (web3, solana... about a second) then overlap the manager's own boot (database
        check, migrations, imports) instead of following it. `start()` takes it over."""
        if self._modules and self._launched is None:
            self._launched = self._launch()

    def _launch(self) -> tuple[subprocess.Popen[bytes], socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "manager.zygote", str(theirs.fileno()), *self._modules],
            pass_fds=[theirs.fileno()],
            env=base_environment(),  # no secrets: each forked worker gets its own env in the request
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        theirs.close()
        return proc, ours

    async def _start_zygote(self) -> _Zygote:
        launched, self._launched = self._launched, None
        proc, ours = launched or self._launch()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                hello = marshal.loads(await loop.sock_recv(ours, 1 << 16))
        except (TimeoutError, OSError, ValueError) as exc:
            ours.close()
            proc.kill()
            await asyncio.to_thread(proc.wait)
            log.warning("worker template did not start (%s); workers start by exec", exc)
            self._failed_until = time.monotonic() + RETRY_AFTER_S
            raise TemplateUnavailable(str(exc)) from None
        zygote = _Zygote(proc, ours, frozenset(self._modules), hello.get("failed") or {})
        for module, why in zygote.failed.items():
            log.warning("worker template could not import %s (%s); it starts by exec", module, why)
        loop.add_reader(ours.fileno(), self._on_message, zygote)
        self._zygote = zygote
        return zygote

    def _on_message(self, zygote: _Zygote) -> None:
        while True:
            try:
                data = zygote.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close(zygote)
                return
            message = marshal.loads(data)
            if "exited" in message:
                pid = int(message["exited"])
                fut = zygote.exit_future(pid)
                if not fut.done():
                    fut.set_result(int(message["status"]))
                if pid in zygote.unwanted:
                    zygote.unwanted.discard(pid)
                    zygote.exits.pop(pid, None)
            elif "id" in message:
                pending = zygote.pending.pop(int(message["id"]), None)
                if pending is not None and not pending.done():
                    if "pid" in message:
                        pending.set_result(int(message["pid"]))
                    else:
                        pending.set_exception(TemplateUnavailable(str(message.get("error"))))

    def _close(self, zygote: _Zygote) -> None:
        if zygote.closed:
            return
        zygote.closed = True
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(zygote.sock.fileno())
        zygote.sock.close()
        for fut in zygote.pending.values():
            if not fut.done():
                fut.set_exception(TemplateUnavailable("the worker template exited"))
        zygote.pending.clear()
        if zygote in self._retired:
            self._retired.remove(zygote)
        if zygote is self._zygote:
            self._zygote = None
        with contextlib.suppress(ChildProcessError):
            zygote.proc.poll()

    async def _ready(self) -> _Zygote:
        """The serving template; one that died, or was retired, is replaced here, and a spawn
        waits for the fresh one (it imports what an exec'd worker would import anyway)."""
        if self._zygote is not None and not self._zygote.closed:
            return self._zygote
        if time.monotonic() < self._failed_until:
            raise TemplateUnavailable("the worker template failed to start recently")
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start_zygote())
        try:
            async with asyncio.timeout(START_WAIT_S):
                return await asyncio.shield(self._starting)
        except TimeoutError:
            raise TemplateUnavailable("the worker template is still starting") from None

    # ---- spawning -----------------------------------------------------------------------------

    async def spawn(self, module: str, env: dict[str, str], cwd: str | None) -> tuple[int, int, int, _Zygote]:
        """Fork a worker running `module`; returns (pid, stdout read fd, stderr read fd, zygote)."""
        zygote = await self._ready()
        if module in zygote.failed:
            raise TemplateUnavailable(f"the template could not import {module}")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            async with self._lock:
                self._next_id += 1
                request_id = self._next_id
                fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                zygote.pending[request_id] = fut
                payload = marshal.dumps({"id": request_id, "module": module, "env": env, "cwd": cwd or os.getcwd()})
                fds = array.array("i", [out_w, err_w])
                try:
                    zygote.sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                except OSError as exc:
                    zygote.pending.pop(request_id, None)
                    self._close(zygote)
                    raise TemplateUnavailable(f"the worker template is gone: {exc}") from None
            async with asyncio.timeout(SPAWN_TIMEOUT_S):
                pid = await fut
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return pid, out_r, err_r, zygote


async def wait_forked_exit(pid: int, zygote: _Zygote) -> int:
    """Wait for a forked worker to exit; returns its exit code in `returncode` form (-signal)."""
    loop = asyncio.get_running_loop()
    report = zygote.exit_future(pid)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None
    if pidfd is not None:
        gone: asyncio.Future[None] = loop.create_future()

        def exited() -> None:
            if not gone.done():
                gone.set_result(None)

        loop.add_reader(pidfd, exited)
        try:
            await gone
            status = None if report.done() else _zombie_status(pid, pidfd)
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        if status is not None:  # the template's report is dropped when it comes
            zygote.unwanted.add(pid)
            return os.waitstatus_to_exitcode(status)
    try:
        async with asyncio.timeout(EXIT_REPORT_TIMEOUT_S):
            status = await asyncio.shield(report)
    except TimeoutError:  # the template died with its report: the worker is gone all the same
        return -9
    finally:
        zygote.exits.pop(pid, None)
    return os.waitstatus_to_exitcode(status)


def _zombie_status(pid: int, pidfd: int) -> int | None:
    """The wait status of an exited worker its template has not reaped yet, from /proc (`stat`
    field 52, `exit_code`): a respawn then need not wait for the template's turn on a busy CPU to
    hear it. Checked against the pidfd afterwards: if the worker was reaped meanwhile, the pid (and
    the `stat` just read) may already be another process's, so None, and the report is awaited.
    A clean exit (0) is left to the report too: that is also what the field reads when the
    kernel does not let us see it, and a clean exit is no respawn to hurry."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if len(fields) < 50 or fields[0] != b"Z":
        return None
    try:
        signal.pidfd_send_signal(pidfd, 0)  # a zombie takes signals; a reaped process does not
    except ProcessLookupError:
        return None
    return int(fields[49]) or None  # 0: a clean exit, or a kernel that hides the field: ask the report
