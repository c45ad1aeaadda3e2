"""Cron schedules as pure functions of a clock: slots, time zones, missed runs, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workers.example import ExampleWorker
from workers.schedule import check_schedule, due_at, next_run


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_every_five_minutes_fires_on_the_fives():
    fired, now = [], at("2026-03-01T10:02:30")
    for _ in range(4):
        now = next_run("*/5 * * * *", "UTC", now)
        fired.append(now)
    assert fired == [at("2026-03-01T10:05"), at("2026-03-01T10:10"), at("2026-03-01T10:15"), at("2026-03-01T10:20")]


def test_a_slot_is_strictly_after_the_given_time():
    assert next_run("*/5 * * * *", "UTC", at("2026-03-01T10:05")) == at("2026-03-01T10:10")


def test_the_schedule_is_read_in_its_time_zone():
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_run("0 9 * * *", "Europe/Berlin", at("2026-01-10T12:00")) == at("2026-01-11T08:00")
    assert next_run("0 9 * * *", "Europe/Berlin", at("2026-07-10T12:00")) == at("2026-07-11T07:00")


def test_weekdays_and_ranges():
    # 2026-03-06 is a Friday: the next weekday 18:30 after Friday evening is Monday.
    assert next_run("30 18 * * 1-5", "UTC", at("2026-03-06T19:00")) == at("2026-03-09T18:30")


def test_missed_slots_after_downtime_make_one_run_now_then_the_schedule_resumes():
    last_run = at("2026-03-01T10:00:10")
    now = at("2026-03-01T10:47:00")  # down over nine slots
    assert due_at("*/5 * * * *", "UTC", last_run, now) == now  # one run, at once
    after_that_run = now + timedelta(seconds=3)
    assert due_at("*/5 * * * *", "UTC", after_that_run, after_that_run) == at("2026-03-01T10:50")


def test_no_run_yet_means_now_and_a_run_in_this_slot_means_the_next():
    now = at("2026-03-01T10:02:00")
    assert due_at("*/5 * * * *", "UTC", None, now) == now
    assert due_at("*/5 * * * *", "UTC", at("2026-03-01T10:00:05"), now) == at("2026-03-01T10:05")


@pytest.mark.parametrize(
    ("schedule", "tz", "words"),
    [
        ("*/5 * * *", "UTC", "5-field cron"),
        ("61 * * * *", "UTC", "5-field cron"),
        ("every five minutes", "UTC", "5-field cron"),
        ("*/5 * * * *", "Mars/Olympus", "not a known time zone"),
    ],
)
def test_bad_schedules_are_refused_with_a_reason(schedule: str, tz: str, words: str):
    with pytest.raises(ValueError, match=words):
        check_schedule(schedule, tz)


def test_worker_settings_refuse_a_bad_schedule_and_name_the_key():
    worker = ExampleWorker(name="counter", config={"schedule": "*/5 * * *"}, database_url="")
    assert worker.settings_error is not None and "schedule" in worker.settings_error
    assert "5-field cron" in worker.settings_error
    good = ExampleWorker(name="counter", config={"schedule": "0 * * * *", "timezone": "Asia/Tokyo"}, database_url="")
    assert good.settings_error is None and good.settings.schedule == "0 * * * *"


def test_a_scheduled_worker_is_stale_only_after_three_of_its_gaps():
    from manager.config import WorkerConfig

    hourly = WorkerConfig.model_validate({"module": "workers.example", "schedule": "0 * * * *"})
    assert hourly.effective_stale_after_s() == 3 * 3600
    weekdays = WorkerConfig.model_validate({"module": "workers.example", "schedule": "0 9 * * 1-5"})
    assert weekdays.effective_stale_after_s() == 3 * 3 * 86400  # Friday 09:00 to Monday 09:00
