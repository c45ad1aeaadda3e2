"""`python -m manager run-worker NAME`: one worker in the foreground, under its lease like any other.

It takes the worker's lease (refusing, with the holder named, when a manager or another
`run-worker` holds it), runs the worker with the lease epoch so its writes are fenced, renews the
lease every `lease_ttl_s / 3` while the worker runs, and releases it when the worker exits. There
is no override: a second copy of a worker would write the same cursors twice.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from typing import Any

import psycopg

from manager.config import Config
from manager.db import APPLICATION_NAME
from manager.errors import ManagerError
from manager.runner import worker_argv, worker_environment
from sql import query

SQL = "leases.sql"


class WorkerLeased(ManagerError):
    """The worker runs elsewhere: say where."""


def describe_holder(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute(
        "SELECT owner, host, pid, extract(epoch FROM expires_at - clock_timestamp())::float8 "
        "FROM worker_leases WHERE worker_name = %s",
        (name,),
    ).fetchone()
    if row is None:
        return "nobody"
    owner, host, pid, left = row
    return f"manager {owner} on {host} (pid {pid}; lease renewed, expires in {max(left, 0):.1f} s unless renewed)"


def run_leased_worker(name: str, config: Config, url: str) -> int:
    """Acquire, run, renew, release; returns the worker's exit code."""
    ttl = config.healdec.lease_ttl_s
    host, pid = config.manager.host or socket.gethostname(), os.getpid()
    me = f"run-worker:{host}:{pid}"
    spec = config.workers[name]
    with psycopg.connect(url, autocommit=True, application_name=f"{APPLICATION_NAME}:run-worker") as conn:
        managers = conn.execute(query("fleet_managers", SQL), {"ttl": ttl}).fetchall()
        dead = [m[0] for m in managers if not m[-1]]
        got = conn.execute(
            query("acquire_leases", SQL),
            {"id": me, "host": host, "pid": pid, "ttl": ttl, "names": [name], "dead": dead},
        ).fetchall()
        if not got:
            raise WorkerLeased(
                f"{name} is running under {describe_holder(conn, name)}; stop it there "
                "(python -m manager stop NAME, or stop that manager) before running it here"
            )
        epoch = int(got[0][1])
        env = worker_environment(name, spec, url)
        env["WORKER_LEASE_EPOCH"] = str(epoch)
        argv = worker_argv(spec)
        child = subprocess.Popen(argv, env=env)
        forward = lambda sig, _frame: child.send_signal(sig)  # noqa: E731 - the worker stops itself
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        try:
            while True:
                try:
                    return child.wait(ttl / 3)
                except subprocess.TimeoutExpired:
                    pass
                renewed = conn.execute(
                    query("renew_one_lease", SQL), {"ttl": ttl, "name": name, "id": me, "epoch": epoch}
                ).fetchone()
                if renewed is None:
                    child.kill()
                    child.wait()
                    raise WorkerLeased(f"{name}: lost the lease to {describe_holder(conn, name)}; stopped the worker")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            conn.execute(query("release_leases", SQL), {"id": me, "names": [name]})
