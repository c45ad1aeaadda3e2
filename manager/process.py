"""One supervised child process: spawn it in its own process group, stream its output,
notice its exit the moment it happens, and stop it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from manager.template import TemplateSpawner

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None

# The guardian is a POSIX shell script: its job (read lines, signal groups) needs no Python, and
# /bin/sh (dash) holds it in about 1 MiB resident against about 8.5 MiB for `python -I -S`.
GUARDIAN_ARGV = ["/bin/sh", str(Path(__file__).with_name("guardian.sh"))]

LineSink = Callable[[str, str], None]  # (stream, line) with stream "stdout" | "stderr"


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec hook: ask Linux to signal the child when its parent dies, even by SIGKILL.

    (The signal fires when the *thread* that forked the child exits; spawn from the main thread.)
    """

    def hook() -> None:
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent_pid:  # the manager died before the prctl took effect
            os._exit(1)

    return hook


@dataclass(frozen=True)
class ExitStatus:
    code: int | None  # exit code, when it exited
    signal: int | None  # signal number, when a signal killed it

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        return cls(None, -returncode) if returncode < 0 else cls(returncode, None)

    @property
    def clean(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            return f"killed by {name}"
        return f"exited with code {self.code}"


class GuardianLink:
    """Keeps the orphan guardian (manager/guardian.sh) informed of every worker's process group.

    The guardian runs in its own session, so a signal to the manager's process group (a shell's
    `kill -9 -PGID`, `timeout -s KILL`, a container runtime) cannot take it down with the manager.
    If the guardian itself dies while the manager lives, it is started again and told every group.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: set[int] = set()
        self._pidfd: int | None = None
        self._stopping = False

    async def start(self) -> None:
        self._spawn()

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            GUARDIAN_ARGV,
            stdin=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # out of the manager's process group: a group SIGKILL misses it
        )
        for pgid in self._groups:
            self._send(f"+{pgid}")
        self._watch_exit()

    def _watch_exit(self) -> None:
        """Restart the guardian the moment it exits unasked (pidfd: no polling)."""
        if self._proc is None or not hasattr(os, "pidfd_open"):
            return
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except OSError:
            return
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)

    def _unwatch(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _on_exit(self) -> None:
        self._unwatch()
        if self._proc is not None:
            self._proc.poll()  # reap it
        if not self._stopping:
            self._spawn()

    def _send(self, line: str) -> None:
        if self._proc and self._proc.stdin:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self._proc.stdin.write(f"{line}\n".encode())
                self._proc.stdin.flush()

    def watch(self, pgid: int) -> None:
        self._groups.add(pgid)
        self._send(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._groups.discard(pgid)
        self._send(f"-{pgid}")

    async def stop(self) -> None:
        """Tell the guardian the workers are stopped and let it exit."""
        self._stopping = True
        self._unwatch()
        if self._proc is None:
            return
        self._send("bye")
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        try:
            await asyncio.to_thread(self._proc.wait, 5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._proc = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None


class ChildProcess:
    """A running worker process. Created by `spawn` (exec) or `fork` (from the worker template);
    `exited` completes when it exits."""

    def __init__(self, pid: int, wait: Coroutine[Any, Any, int], guardian: GuardianLink | None) -> None:
        self._guardian = guardian
        self.pid: int = pid
        self.started_monotonic = time.monotonic()
        self.started_wall = time.time()
        self.exited: asyncio.Task[ExitStatus] = asyncio.ensure_future(self._wait(wait))
        self._readers: list[asyncio.Task[None]] = []
        self.killed_after_timeout = False  # stop() had to escalate to SIGKILL

    @classmethod
    async def spawn(
        cls,
        argv: list[str],
        env: dict[str, str],
        on_line: LineSink,
        guardian: GuardianLink | None = None,
        cwd: str | None = None,
        nice: int | None = None,
    ) -> ChildProcess:
        # The parent-death signal is set by util-linux's `setpriv` when present: a preexec hook
        # would force a full fork() of the manager (~10 ms at 70 MB) instead of vfork (~1.5 ms).
        if _SETPRIV:
            argv, preexec = [_SETPRIV, "--pdeathsig", "TERM", "--", *argv], None
        else:
            preexec = die_with_parent(os.getpid())
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own session and process group: signals reach its children
            preexec_fn=preexec,
            limit=1 << 20,
        )
        child = cls(proc.pid, proc.wait(), guardian)
        if nice is not None:
            child.set_nice(nice, on_line)
        if guardian:
            guardian.watch(child.pid)
        assert proc.stdout is not None and proc.stderr is not None
        child._readers = [
            asyncio.ensure_future(_pump(proc.stdout, "stdout", on_line)),
            asyncio.ensure_future(_pump(proc.stderr, "stderr", on_line)),
        ]
        return child

    @classmethod
    async def fork(
        cls,
        template: TemplateSpawner,
        module: str,
        env: dict[str, str],
        on_line: LineSink,
        guardian: GuardianLink | None = None,
        cwd: str | None = None,
        nice: int | None = None,
    ) -> ChildProcess:
        """Fork the worker from the pre-imported template (raises TemplateUnavailable)."""
        from manager.template import wait_forked_exit

        pid, out_fd, err_fd, zygote = await template.spawn(module, env, cwd)
        child = cls(pid, wait_forked_exit(pid, zygote), guardian)
        if nice is not None:
            child.set_nice(nice, on_line)
        if guardian:
            guardian.watch(pid)
        child._readers = [
            asyncio.ensure_future(_pump(await _reader(out_fd), "stdout", on_line)),
            asyncio.ensure_future(_pump(await _reader(err_fd), "stderr", on_line)),
        ]
        return child

    def set_nice(self, nice: int, on_line: LineSink) -> None:
        """Set the worker's scheduling priority, right after spawn (no preexec hook: that would
        cost the fast spawn path). Threads it starts later inherit it. Raising priority needs
        privileges: a refusal is noted in its log and the worker runs at the default."""
        try:
            os.setpriority(os.PRIO_PROCESS, self.pid, nice)
        except OSError as exc:
            on_line("manager", f"could not set nice {nice}: {exc.strerror or exc}")

    async def _wait(self, wait: Coroutine[Any, Any, int]) -> ExitStatus:
        returncode = await wait
        # Leftover grandchildren in the worker's group die with it (the group only: the pid
        # itself is reaped and could already name another process).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self._guardian:
            self._guardian.forget(self.pid)
        return ExitStatus.from_returncode(returncode)

    @property
    def running(self) -> bool:
        return not self.exited.done()

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def signal_group(self, sig: int) -> None:
        if not self.running:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:  # a just-forked worker may not have its own group yet
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)
        except PermissionError:
            pass

    async def stop(self, timeout_s: float) -> ExitStatus:
        """SIGTERM the group (the worker finishes its current item), SIGKILL after `timeout_s`."""
        if self.running:
            self.signal_group(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    return await asyncio.shield(self.exited)
            except TimeoutError:
                self.killed_after_timeout = True
                self.signal_group(signal.SIGKILL)
        return await self.exited

    async def drain_output(self, timeout_s: float = 1.0) -> None:
        """Wait briefly for the last output lines (a stray grandchild may hold the pipe open)."""
        if self._readers:
            await asyncio.wait(self._readers, timeout=timeout_s)


async def _reader(fd: int) -> asyncio.StreamReader:
    """An asyncio stream over the read end of a pipe (for forked workers' output)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0))
    return reader


async def _pump(stream: asyncio.StreamReader, name: str, on_line: LineSink) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line longer than the limit: take what is buffered
            raw = await stream.read(1 << 20)
        if not raw:
            return
        on_line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))
