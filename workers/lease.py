"""The worker's side of exactly-once placement: the fence its writes pass through.

A manager starts a worker only while it holds the worker's lease, and hands it the lease epoch in
`WORKER_LEASE_EPOCH`. `fence(conn, name, epoch)` runs the database check `check_worker_lease`
(sql/migrations/0010_fleet_leases.sql) inside the caller's transaction: it share-locks the lease
row until commit and refuses when another placement has bumped the epoch. So a worker whose
manager froze or lost its lease cannot commit after the new owner started; it gets `LeaseLost`
and exits. Without `WORKER_LEASE_EPOCH` (a worker run by hand or by tests) nothing is checked.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg

from sql import query
from workers.errors import WorkerError

FENCE_SQLSTATE = "WL001"
EXIT_LEASE_LOST = 75  # EX_TEMPFAIL: the manager that still holds the lease may start it again


class LeaseLost(WorkerError):
    """Another placement of this worker holds the lease now: stop at once, write nothing."""


def epoch_from_environment() -> int | None:
    """The lease epoch the manager started this process under, or None when run unleased."""
    value = os.environ.get("WORKER_LEASE_EPOCH", "").strip()
    return int(value) if value else None


def fence(conn: psycopg.Connection[Any], name: str, epoch: int | None) -> None:
    """Refuse to go on (LeaseLost) unless `epoch` is the worker's current lease epoch.

    Inside a transaction the check holds a share lock on the lease row until commit."""
    if epoch is None:
        return
    try:
        conn.execute(query("check_worker_lease", "leases.sql"), (name, epoch))
    except psycopg.Error as exc:
        raise lease_lost(exc) or exc from None


def lease_lost(exc: psycopg.Error) -> LeaseLost | None:
    """The fence's refusal (SQLSTATE WL001) as LeaseLost; None for any other database error."""
    if exc.sqlstate == FENCE_SQLSTATE:
        return LeaseLost(str(exc).strip().splitlines()[0])
    return None
