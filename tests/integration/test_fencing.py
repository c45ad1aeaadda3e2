"""Fencing beyond the cursor: a worker whose lease epoch is stale has every data transaction
refused (cursor or not), its error records refused, and its claims cannot complete - each checked
in the database inside the same transaction."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.db import rows
from workers.base import CycleResult, Worker
from workers.claims import ClaimQueue
from workers.lease import LeaseLost


class Writer(Worker[int]):
    """Writes a row without touching any cursor."""

    def run_cycle(self) -> CycleResult:
        with self.transaction() as tx:
            tx.execute("INSERT INTO fenced_rows (pid) VALUES (%s)", (self.pid,))
        return CycleResult(items=1)


def _lease(url: str, epoch: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fenced_rows (pid integer)")
        conn.execute(
            "INSERT INTO worker_leases (worker_name, owner, host, pid, epoch, expires_at) "
            "VALUES ('writer', 'm', 'h', 1, %s, clock_timestamp() + interval '1 min') "
            "ON CONFLICT (worker_name) DO UPDATE SET epoch = excluded.epoch",
            (epoch,),
        )


def _writer(url: str, epoch: int, monkeypatch: pytest.MonkeyPatch) -> Writer:
    monkeypatch.setenv("WORKER_LEASE_EPOCH", str(epoch))
    return Writer(name="writer", config={}, database_url=url)


def test_a_stale_epoch_cannot_commit_data_or_errors(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _lease(migrated_url, 1)
    current = _writer(migrated_url, 1, monkeypatch)
    assert current.run_cycle().items == 1
    current.record_error("a real problem", "item 1")

    _lease(migrated_url, 2)  # another placement took over
    with pytest.raises(LeaseLost, match="epoch 2"):
        current.run_cycle()
    with pytest.raises(LeaseLost):
        current.record_error("written by a stale copy", "item 2")
    assert rows(migrated_url, "SELECT count(*) FROM fenced_rows") == [(1,)]
    assert rows(migrated_url, "SELECT item_key FROM worker_errors WHERE worker_name = 'writer'") == [("item 1",)]

    fresh = _writer(migrated_url, 2, monkeypatch)
    assert fresh.run_cycle().items == 1
    assert rows(migrated_url, "SELECT count(*) FROM fenced_rows") == [(2,)]


def test_a_stale_replica_cannot_complete_its_claims(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _lease(migrated_url, 1)
    worker = _writer(migrated_url, 1, monkeypatch)
    queue = ClaimQueue("writer", "items", "writer", worker.fence)
    stamp: Any = rows(migrated_url, "SELECT now()")[0][0]
    assert queue.feed(worker.db, lambda _c, _after, _limit: [(1, stamp), (2, stamp)]) == 2
    claims = queue.claim(worker.db, 10)
    assert len(claims) == 2

    _lease(migrated_url, 2)
    with pytest.raises(LeaseLost), worker.transaction() as tx:
        queue.complete(tx, claims)
    with pytest.raises(LeaseLost):
        queue.claim(worker.db, 10)
    assert rows(migrated_url, "SELECT state, completions FROM work_queue ORDER BY item_id") == [("claimed", 0)] * 2
