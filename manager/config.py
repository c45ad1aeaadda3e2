"""The configuration as one typed model tree, loaded from YAML with `${VAR}` expansion.

Everything past `load_config` receives these models, never raw dicts. A file that does not
parse or validate raises `ConfigError` with one line naming the file, the key path and the problem.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from manager.envref import expand_env
from manager.errors import ConfigError

WORKER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED_NAMES = frozenset({"login", "logout", "static", "status", "api", "trending"})  # console/API paths
# Worker modules that moved into packages: old configs keep working, with a notice to update them.
MOVED_MODULES = {"workers.farcaster": "workers.social.farcaster", "workers.reddit": "workers.social.reddit"}
# Workers that claim their work from a queue (workers/claims.py), so several copies may run at once.
REPLICABLE_MODULES = frozenset({"workers.ai", "workers.search"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Strict):
    url: str = ""  # empty: the embedded Postgres under data_dir
    data_dir: str = ".data/pg"
    connect_timeout_s: float = Field(default=60, gt=0)  # how long boot retries an unreachable DB
    # auto: stock workers connect as their own role when this user may create roles (manager.worker_roles)
    worker_roles: Literal["auto", "off"] = "auto"


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=4200, ge=0, le=65535)


class HealdecConfig(_Strict):
    max_restarts: int = Field(default=5, ge=0)
    restart_window_s: float = Field(default=600, gt=0)
    min_uptime_s: float = Field(default=10, ge=0)
    restart_delay_ms: int = Field(default=1000, ge=0)
    max_restart_delay_ms: int = Field(default=30000, ge=0)
    heartbeat_timeout_s: float = Field(default=30, gt=0)
    stop_timeout_s: float = Field(default=10, gt=0)
    sweep_interval_ms: int = Field(default=1000, gt=0)  # how often heartbeats are read
    flag_reread_s: float = Field(default=30, gt=0)  # safety net under LISTEN/NOTIFY
    error_rate_degraded: float = Field(default=0.25, ge=0, le=1)
    lag_degraded_after_s: float = Field(default=600, gt=0)  # lag growing this long: degraded
    events_retention_days: float = Field(default=14, gt=0)
    # fork `module:` workers from a pre-imported template process (exec when it is unavailable)
    template_fork: bool = True
    lease_ttl_s: float = Field(default=5, gt=0)  # a dead manager's workers move after at most this long


class WorkerConfig(BaseModel):
    """One worker. Keys beyond the known ones are the worker's own settings (hub_url, ...)."""

    model_config = ConfigDict(extra="allow")

    enabled: bool = True
    module: str | None = None
    command: list[str] | None = None
    interval_ms: int = Field(default=60000, gt=0)
    heartbeat: bool = True
    heartbeat_interval_ms: int = Field(default=5000, gt=0)
    heartbeat_timeout_s: float | None = Field(default=None, gt=0)  # overrides healdec's
    stale_after_s: float | None = Field(default=None, gt=0)
    description: str = ""
    env: dict[str, str] = Field(default_factory=dict)
    # Environment variables (secrets) this worker may read; None: its module's default (manager.worker_env).
    secrets: list[str] | None = None
    hosts: list[str] = Field(default_factory=list)  # pins: manager host names or labels; empty = any
    max_rss_mb: float | None = Field(default=None, gt=0)  # over it on two samples: graceful restart
    nice: int | None = Field(default=None, ge=-20, le=19)  # applied to the process at spawn
    # Copies of this worker claiming disjoint batches (ai, search only); see Config._expand_replicas.
    replicas: int = Field(default=1, ge=1, le=32)
    replica_of: str | None = None  # set by the manager on the copies `<name>-2` ... `<name>-N`

    @field_validator("module")
    @classmethod
    def _module_is_dotted_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w.]*", value):
            raise ValueError(f"{value!r} is not a Python module name")
        return MOVED_MODULES.get(value, value) if value is not None else None

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name a program to run")
        return value

    @model_validator(mode="after")
    def _module_xor_command(self) -> WorkerConfig:
        if (self.module is None) == (self.command is None):
            raise ValueError("give exactly one of `module` or `command`")
        return self

    @field_validator("replicas")
    @classmethod
    def _replicas_claim(cls, value: int, info: ValidationInfo) -> int:
        module = info.data.get("module")
        if value > 1 and module not in REPLICABLE_MODULES:
            raise ValueError(
                f"{value} copies of {module or 'a command'} would process the same items twice; only workers "
                f"that claim their work from a queue ({', '.join(sorted(REPLICABLE_MODULES))}) can have replicas > 1"
            )
        return value

    @property
    def group(self) -> str | None:
        """The worker whose flags and settings a replica follows (None: itself)."""
        return self.replica_of

    def own_settings(self) -> dict[str, Any]:
        """The worker-specific keys (everything pydantic did not model)."""
        return dict(self.model_extra or {})

    def effective_stale_after_s(self) -> float:
        """No successful cycle for this long makes the worker `degraded`."""
        if self.stale_after_s is not None:
            return self.stale_after_s
        schedule = (self.model_extra or {}).get("schedule")
        if isinstance(schedule, str):
            from workers.schedule import longest_gap_s

            try:  # a cron worker's cycles are as far apart as its slots, not its interval_ms
                return max(3 * longest_gap_s(schedule, str((self.model_extra or {}).get("timezone") or "UTC")), 60.0)
            except ValueError:
                pass  # the worker reports the bad schedule itself
        return max(3 * self.interval_ms / 1000, 60.0)


class ManagerConfig(_Strict):
    """How this manager presents itself to the others sharing the database."""

    host: str = ""  # empty: the machine's host name
    labels: list[str] = Field(default_factory=list)  # plus MANAGER_LABELS (comma-separated)


class WebhookConfig(_Strict):
    """One alert receiver. The URL is a secret (it carries the receiver's token): always masked."""

    url: str = Field(pattern=r"^https?://")
    format: Literal["slack", "json"] = "json"  # slack: {"text": ...}; json: the full alert


class AlertsConfig(_Strict):
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    for_s: float = Field(default=300, ge=0)  # `degraded` (or restarting) must last this long to alert
    attempts: int = Field(default=4, ge=1, le=10)  # per webhook, with backoff 1, 2, 4 ... s between
    retry_base_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)


class Config(_Strict):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    manager: ManagerConfig = Field(default_factory=ManagerConfig)
    healdec: HealdecConfig = Field(default_factory=HealdecConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    workers: dict[str, WorkerConfig] = Field(default_factory=dict)
    source: str = Field(default="<defaults>", exclude=True)

    @field_validator("workers")
    @classmethod
    def _names_are_identifiers(cls, value: dict[str, WorkerConfig]) -> dict[str, WorkerConfig]:
        for name in value:
            if not WORKER_NAME.fullmatch(name):
                raise ValueError(f"worker name {name!r} must be lowercase letters, digits and _")
            if name in RESERVED_NAMES:
                raise ValueError(f"worker name {name!r} is reserved (it would hide a console or API path)")
            if value[name].replica_of is not None:
                raise ValueError(f"workers.{name}.replica_of is set by the manager for replicas; use `replicas: N`")
        return value

    @model_validator(mode="after")
    def _expand_replicas(self) -> Config:
        """`replicas: N` becomes N supervised workers: the worker itself and `<name>-2` ... `<name>-N`
        (a `-` cannot appear in a configured name, so no copy hides a worker; it needs no escaping in
        a URL, a CLI argument or a Prometheus label). Each copy has its own lease, heartbeat row and
        status entry, and follows the flags and settings rows of `<name>`."""
        expanded: dict[str, WorkerConfig] = {}
        for name, spec in self.workers.items():
            expanded[name] = spec
            if spec.replica_of is None:
                for index in range(2, spec.replicas + 1):
                    expanded[f"{name}-{index}"] = spec.model_copy(update={"replica_of": name})
        self.workers = expanded
        return self

    def heartbeat_timeout_s(self, name: str) -> float:
        return self.workers[name].heartbeat_timeout_s or self.healdec.heartbeat_timeout_s


def default_config_path() -> Path:
    return Path(os.environ.get("MANAGER_CONFIG") or "config.yaml")


def load_config(path: str | Path | None = None) -> Config:
    """Read, expand and validate the config file. Raises ConfigError with one readable line."""
    path = Path(path) if path is not None else default_config_path()
    try:
        raw_text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(raw_text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not {type(data).__name__}")
    data = _expand_values(data, path, ())
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None
    config.source = str(path)
    for name, worker in (data.get("workers") or {}).items():  # a notice only once the file is valid
        old = worker.get("module") if isinstance(worker, dict) else None
        if old in MOVED_MODULES:
            print(
                f"{path}: workers.{name}.module: {old} is now {MOVED_MODULES[old]}; running that "
                "(update the config to silence this notice)",
                file=sys.stderr,
            )
    return config


def _expand_values(value: Any, path: Path, where: tuple[str, ...]) -> Any:
    """Expand `${VAR}` in string values only (comments and keys are left alone)."""
    if isinstance(value, dict):
        return {k: _expand_values(v, path, (*where, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_values(v, path, (*where, str(i))) for i, v in enumerate(value)]
    if isinstance(value, str):
        try:
            return expand_env(value)
        except KeyError as exc:
            raise ConfigError(
                f"{path}: {'.'.join(where)}: environment variable {exc.args[0]} is not set "
                f"(set it, or write ${{{exc.args[0]}:-default}} in the file)"
            ) from None
    return value


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem as `key.path: message` (plus a count of the others)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    location = ".".join(str(part) for part in first["loc"] if part not in ("function-after",))
    message = first["msg"].removeprefix("Value error, ")
    if "[key]" in first["loc"]:
        location = ".".join(str(part) for part in first["loc"][: first["loc"].index("[key]") - 1])
        message = f"key {first['input']!r} must be text (YAML reads yes/no/on/off as booleans: quote it)"
    elif first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{location or '<top>'}: {message}{more}"
