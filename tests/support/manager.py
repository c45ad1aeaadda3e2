"""A handle on a real `python -m manager` process for integration and end-to-end tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import yaml

from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token"

FAST_HEALDEC = {
    "max_restarts": 5,
    "restart_window_s": 60,
    "min_uptime_s": 2,
    "restart_delay_ms": 100,
    "max_restart_delay_ms": 1000,
    "heartbeat_timeout_s": 10,
    "stop_timeout_s": 5,
    "sweep_interval_ms": 200,
    "flag_reread_s": 5,
}


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range: a port the kernel
    handed out (bind to port 0) is free again once released, and the next `--port 0` stand-in or
    outgoing connection may get it before the manager binds it (a devnet run once lost its API port
    to anvil that way). Ports outside that range are only ever taken on purpose."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(500):  # bounded: a busy range ends in an error, not a hang
        port = rng.randrange(max(1024, low - 20_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port found below {low}")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def example_worker(**overrides: Any) -> dict[str, Any]:
    spec = {"module": "workers.example", "interval_ms": 300, "heartbeat_interval_ms": 200}
    spec.update(overrides)
    return spec


class ManagerHandle:
    def __init__(
        self,
        workdir: Path,
        database_url: str,
        workers: dict[str, Any],
        healdec: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        timeout: float | None = None,
        new_session: bool = False,
    ) -> None:
        self.start_timeout = timeout
        self.new_session = new_session  # its own process group, as a shell job or container has
        self.workdir = workdir
        self.database_url = database_url
        self.port = free_port()
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "database": {"url": database_url},
                    "api": {"host": "127.0.0.1", "port": self.port},
                    "healdec": {**FAST_HEALDEC, **(healdec or {})},
                    "workers": workers,
                },
                sort_keys=False,
            )
        )
        self.log_path = workdir / "manager.log"
        self.env = {**os.environ, "ADMIN_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.pop("DATABASE_URL", None)
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.base_url, timeout=10)

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 30, *, wait: bool = True) -> ManagerHandle:
        """Launch the manager; with `wait`, return once its /healthz answers (else see `wait_ready`)."""
        timeout = self.start_timeout or timeout
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "manager", "--config", str(self.config_path), *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self.new_session,
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(self._answers, timeout, 0.05, "the manager's /healthz")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"manager exited with {self.proc.returncode}:\n{self.output()}")
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                for child in self.descendants():
                    child.kill()
                self.proc.kill()
                self.proc.wait()
        self.http.close()
        if hasattr(self, "_log"):
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def descendants(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    # ---- the API ------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        response = self.http.get("/api/workers/status")
        response.raise_for_status()
        return list(response.json())

    def worker(self, name: str) -> dict[str, Any]:
        return next(w for w in self.status() if w["name"] == name)

    def wait_worker(
        self, name: str, check: Any, timeout: float = 15, what: str = "", interval: float = 0.02
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            w = self.worker(name)
            return w if check(w) else None

        return wait_for(probe, timeout, interval, what or f"{name} to satisfy the check")

    def api(self, method: str, path: str, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, path, headers=headers, **kwargs)

    # ---- the database and processes -----------------------------------------------------

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def events(self, name: str) -> list[dict[str, Any]]:
        """The worker's stored supervision events, oldest first: {event, at (epoch s), pid, detail}."""
        rows = self.sql(
            "SELECT event, extract(epoch FROM occurred_at)::float8, pid, detail FROM supervision_events"
            " WHERE worker_name = %s ORDER BY id",
            (name,),
        )
        return [{"event": e, "at": at, "pid": pid, "detail": detail} for e, at, pid, detail in rows]

    def wait_events(self, name: str, check: Any, timeout: float = 10, what: str = "") -> list[dict[str, Any]]:
        """Poll the stored events (written in the background) until `check(events)` holds."""

        def probe() -> list[dict[str, Any]] | None:
            events = self.events(name)
            return events if check(events) else None

        return wait_for(probe, timeout, 0.05, what or f"{name}'s events to satisfy the check")

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> int:
        pid = self.worker(name)["pid"]
        assert pid, f"{name} has no pid"
        os.kill(pid, sig)
        return int(pid)


def pid_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(pid: int) -> str:
    try:
        return f"{pid} {' '.join(psutil.Process(pid).cmdline())[:80]}"
    except psutil.Error:
        return str(pid)


def wait_gone(pids: list[int], timeout: float) -> None:
    try:
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout, 0.02, "the processes to exit")
    except AssertionError:
        survivors = [_describe(p) for p in pids if pid_alive(p)]
        raise AssertionError(f"still alive after {timeout} s: {survivors}") from None


def elapsed(since: float) -> float:
    return time.monotonic() - since


@contextmanager
def module_manager(pg_admin_url: str, workdir: Path, workers: dict[str, Any], **kwargs: Any) -> Iterator[ManagerHandle]:
    """One manager on its own fresh database, shared by the tests of a module (boots cost seconds).

    Give each test its own worker in `workers`, so the tests stay independent of each other's order.
    """
    from tests.support.postgres import fresh_database

    with fresh_database(pg_admin_url) as url:
        handle = ManagerHandle(workdir, url, workers, **kwargs)
        try:
            yield handle.start()
        finally:
            handle.close()
