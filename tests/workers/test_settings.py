"""Typed worker settings on a real database: a bad `settings` row is refused with its name and key
path while the settings in force stay; a bad config value makes the worker wait, reporting it."""

from __future__ import annotations

import signal

import psycopg
import pytest

from tests.support.db import rows
from tests.support.waiting import wait_for
from tests.support.workers import start_worker
from workers.example import ExampleWorker
from workers.settings import SettingsInvalid, WorkerSettings, load_settings


def set_row(url: str, key: str, value: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (%s, %s::jsonb) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (key, value),
        )


def test_errors_name_the_row_or_the_config_key_path():
    with pytest.raises(SettingsInvalid) as bad_row:
        load_settings(WorkerSettings, "farcaster", {"interval_ms": 1000}, {"interval_ms": 0})
    assert str(bad_row.value) == "settings row farcaster_interval_ms: interval_ms: Input should be greater than 0"
    assert bad_row.value.from_rows
    with pytest.raises(SettingsInvalid) as bad_config:
        load_settings(WorkerSettings, "farcaster", {"interval_ms": "abc"})
    assert str(bad_config.value).startswith("config workers.farcaster.interval_ms: Input should be a valid integer")
    assert not bad_config.value.from_rows
    extra = load_settings(WorkerSettings, "w", {"module": "workers.example", "hub_url": "x"}, {"interval_ms": "250"})
    assert extra.interval_ms == 250 and extra.model_extra == {"module": "workers.example", "hub_url": "x"}


def test_a_bad_settings_row_is_refused_and_the_previous_settings_stay(migrated_url):
    worker = ExampleWorker(name="counter", config={"interval_ms": 1000, "batch_size": 2}, database_url=migrated_url)
    set_row(migrated_url, "counter_batch_size", "3")
    worker.refresh_settings()
    assert (worker.settings.batch_size, worker.settings_error) == (3, None)

    set_row(migrated_url, "counter_interval_ms", "0")
    set_row(migrated_url, "counter_batch_size", '"abc"')
    worker.refresh_settings()
    assert (worker.settings.interval_ms, worker.settings.batch_size) == (1000, 3)  # still in force
    expected = (
        "settings row counter_interval_ms: interval_ms: Input should be greater than 0; "
        "settings row counter_batch_size: batch_size: Input should be a valid integer, unable to parse string as an integer"
    )
    assert worker.settings_error == expected
    worker.heartbeat()
    assert rows(migrated_url, "SELECT last_error FROM worker_heartbeats WHERE worker_name = 'counter'") == [(expected,)]
    assert worker.run_cycle().items == 3  # work goes on with the settings in force
    worker.refresh_settings()  # the same problem again is not recorded twice
    assert rows(migrated_url, "SELECT count(*) FROM worker_errors WHERE item_key = 'settings'") == [(1,)]

    set_row(migrated_url, "counter_interval_ms", "500")
    set_row(migrated_url, "counter_batch_size", "4")
    worker.refresh_settings()
    assert (worker.settings.interval_ms, worker.settings.batch_size, worker.settings_error) == (500, 4, None)


def test_a_bad_config_value_waits_and_reports_its_key_path(migrated_url, tmp_path):
    proc = start_worker("example", migrated_url, {"interval_ms": 200, "batch_size": "many"}, tmp_path)
    try:
        [(error,)] = wait_for(
            lambda: rows(migrated_url, "SELECT last_error FROM worker_heartbeats WHERE phase = 'waiting'"),
            20,
            0.05,
            "a waiting heartbeat",
        )
        assert error.startswith("config workers.example.batch_size: Input should be a valid integer")
        assert rows(migrated_url, "SELECT count(*) FROM cycle_runs") == [(0,)]  # never ran a cycle
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
