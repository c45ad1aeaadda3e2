"""Cron schedules for workers: `schedule: "*/5 * * * *"` with a `timezone`, instead of `interval_ms`.

Pure functions of (schedule, timezone, a time), so they are tested with any clock. The worker asks
`next_run(schedule, tz, last_run)` for when its next cycle is due: a slot already past (the worker
was down over it) means "now", and since the run that follows moves `last_run` to now, any number
of missed slots is made up by one run, not one per slot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


def check_schedule(schedule: str, tz: str) -> None:
    """Raise ValueError with a readable message for a bad cron expression or time zone."""
    zone(tz)
    if len(schedule.split()) != 5 or not croniter.is_valid(schedule):
        raise ValueError(f"{schedule!r} is not a 5-field cron expression (minute hour day month weekday)")


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{tz!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from None


def next_run(schedule: str, tz: str, after: datetime) -> datetime:
    """The first slot of `schedule` (read in time zone `tz`) strictly after `after`, in UTC."""
    local = after.astimezone(zone(tz))
    return croniter(schedule, local).get_next(datetime).astimezone(UTC)  # type: ignore[no-any-return]


def due_at(schedule: str, tz: str, last_run: datetime | None, now: datetime) -> datetime:
    """When the next cycle should start: the slot after the last run, or `now` if that slot has
    passed (a missed run happens once) or there never was a run."""
    if last_run is None:
        return now
    return max(next_run(schedule, tz, last_run), now)


def longest_gap_s(schedule: str, tz: str, slots: int = 50) -> float:
    """The longest time between two consecutive slots among the next `slots` (how long a healthy
    scheduled worker may go without a cycle)."""
    check_schedule(schedule, tz)
    at = next_run(schedule, tz, datetime.now(UTC))
    longest = 0.0
    for _ in range(slots):
        following = next_run(schedule, tz, at)
        longest = max(longest, (following - at).total_seconds())
        at = following
    return longest
