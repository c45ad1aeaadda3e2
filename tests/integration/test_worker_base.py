"""The worker base class on a real database, without a manager."""

from __future__ import annotations

from tests.support.db import rows
from workers.base import CycleResult
from workers.example import ExampleWorker


def test_drain_streams_flags_a_backlog_and_clears_when_drained(migrated_url):
    worker = ExampleWorker(name="drainer", config={}, database_url=migrated_url)
    left = {"a": 3, "b": 1}

    def batch(name: str):
        def run(total: CycleResult) -> bool:
            left[name] -= 1
            total.items += 1
            return left[name] > 0

        return run

    first = worker.drain_streams({"a": batch("a"), "b": batch("b")}, max_cycle_s=0)
    assert (first.items, first.more_pending) == (2, True)  # out of time with "a" not drained
    second = worker.drain_streams({"a": batch("a")}, max_cycle_s=60)
    assert (second.items, second.more_pending) == (2, False)


def test_bad_items_are_recorded_and_skipped_and_the_cursor_commits_with_the_rows(migrated_url):
    worker = ExampleWorker(name="counter", config={"batch_size": 4, "fail_items": [1, 2]}, database_url=migrated_url)
    result = worker.run_cycle()
    assert (result.items, result.item_errors) == (2, 2)
    assert rows(migrated_url, "SELECT value FROM sync_cursors WHERE worker_name = 'counter'") == [(4,)]
    errors = rows(migrated_url, "SELECT item_key FROM worker_errors WHERE worker_name = 'counter' ORDER BY id")
    assert errors == [("1",), ("2",)]


def test_a_stop_request_mid_batch_keeps_the_cursor(migrated_url):
    worker = ExampleWorker(name="counter", config={"batch_size": 4}, database_url=migrated_url)
    original = worker.process

    def stop_after_two(item, tx):
        if item == 1:
            worker.request_stop()
        return original(item, tx)

    worker.process = stop_after_two  # type: ignore[method-assign]
    result = worker.run_cycle()
    assert result.items == 2  # the current item finished, the rest of the batch was left
    assert rows(migrated_url, "SELECT value FROM sync_cursors WHERE worker_name = 'counter'") == []
