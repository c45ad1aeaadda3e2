"""Typed worker settings: defaults < config file < `settings` rows, validated into one object.

Each worker declares a `WorkerSettings` subclass whose fields carry the defaults; the base class
validates `{**config, **rows}` into it on every refresh, so worker code reads `self.settings.<field>`
with its type already checked. A value that fails is reported with where it came from (the config
key path or the `settings` row) and the pydantic message, e.g.
`settings row farcaster_interval_ms: interval_ms: Input should be greater than 0`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from workers.schedule import check_schedule, zone

S = TypeVar("S", bound="WorkerSettings")


class WorkerSettings(BaseModel):
    """What every worker reads. Extra keys are allowed on purpose: the config carries the manager's
    keys (`module`, `enabled`, `description`, ...) and a worker may be given settings it does not model.
    Every field needs a default: a worker whose config does not validate waits on the defaults."""

    model_config = ConfigDict(extra="allow", frozen=True)

    interval_ms: int = Field(default=60000, gt=0)
    heartbeat_interval_ms: int = Field(default=5000, gt=0)
    timezone: str = "UTC"  # what `schedule` is read in
    schedule: str | None = None  # cron ("*/5 * * * *"): when set, it replaces interval_ms

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule_parses(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            check_schedule(value, info.data.get("timezone", "UTC"))
        return value


class SettingsInvalid(ValueError):
    """The merged settings did not validate. `from_rows` is true when only `settings` rows are to blame
    (the previous settings may stay in force); false when the config file itself is wrong."""

    def __init__(self, problems: list[str], from_rows: bool) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.from_rows = from_rows


def load_settings(model: type[S], worker: str, config: Mapping[str, Any], rows: Mapping[str, Any] | None = None) -> S:
    """`config` overlaid with `rows` (setting key -> value), validated into `model`.

    Raises `SettingsInvalid` naming, per problem, the row (`settings row <worker>_<key>`) or the
    config key path (`config workers.<worker>.<key>`) and the key path inside the value."""
    rows = dict(rows or {})
    try:
        return model.model_validate({**config, **rows})
    except ValidationError as exc:
        problems, from_rows = [], True
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            top = str(error["loc"][0]) if error["loc"] else ""
            if top in rows:
                problems.append(f"settings row {worker}_{top}: {path}: {error['msg']}")
            else:
                from_rows = False
                problems.append(f"config workers.{worker}.{path}: {error['msg']}")
        raise SettingsInvalid(problems, from_rows) from None
