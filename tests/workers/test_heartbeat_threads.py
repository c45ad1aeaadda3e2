"""Heartbeats from several threads at once on a real database. The ai worker's provider calls run in
a prefetch thread that heartbeats while it waits, and the worker's own thread heartbeats while it
waits for that prefetch: both on the worker's one control connection. Two heartbeat transactions
interleaved on it used to fail ("transaction commit at the wrong nesting level", seen in
`bench search` at 1,000,000 posts), which crashes the worker."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.support.db import rows
from workers.example import ExampleWorker

THREADS = 4
BEATS = 150


def test_threads_heartbeating_at_once_share_the_control_connection_safely(migrated_url):
    worker = ExampleWorker(name="counter", config={"heartbeat_interval_ms": 1}, database_url=migrated_url)
    start = threading.Barrier(THREADS)

    def beat(n: int) -> int:
        start.wait()
        for i in range(BEATS):
            worker._last_beat = 0.0  # always due: every call may beat
            worker.beat_if_due()
            if i % 3 == n % 3:
                worker.heartbeat()
            worker.flag("anything")
            if i % 50 == 0:
                worker.record_error(f"thread {n} item {i}", f"item {n}.{i}")
        return n

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            assert sorted(pool.map(beat, range(THREADS))) == list(range(THREADS))  # none raised
        assert rows(migrated_url, "SELECT count(*) FROM worker_heartbeats WHERE worker_name = 'counter'") == [(1,)]
        assert rows(migrated_url, "SELECT count(*) FROM worker_errors WHERE worker_name = 'counter'") == [
            (THREADS * len(range(0, BEATS, 50)),)
        ]
        assert worker.control.info.transaction_status.name == "IDLE"  # no transaction left open
    finally:
        for conn in (worker._control, worker._data):
            if conn is not None:
                conn.close()
