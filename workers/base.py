"""The worker lifecycle every data-sync worker shares, and the building blocks of a cycle.

A worker subclasses `Worker`, names its typed settings (`settings_model`, a `WorkerSettings`
subclass) and implements:

- `validate()`: check dependencies (endpoints, credentials); raise `NotConfigured` to wait.
- `run_cycle()`: one cycle of work, returning a `CycleResult`. It is built from these blocks:
  - `load_cursor(key)` / `save_cursor(tx, value, key)`: where each stream got to. Save the
    cursor in the same `transaction()` as the rows it covers, so both commit or neither does.
  - `transaction()`: a transaction on the data connection.
  - `run_items(items, tx, handle)`: `handle(item, tx)` per item, one savepoint each; a failing
    item is recorded and skipped; returns `(result, complete)` - do not move the cursor past a
    batch that a stop request interrupted (`complete` is False).
  - `drain_streams({name: one_batch}, max_cycle_s)`: several cursors (per fid, per wallet, ...)
    served in turn until drained or out of time; a backlog sets `more_pending` (next cycle at once).
  - `beat_if_due()`: call between slow steps; `stopping`: leave at the next safe point.
  - `report_lag(value, unit)`: how far behind the upstream the worker is (blocks, slots,
    seconds, rows), sent with every heartbeat.
  - `cached_client(name, key, build)`: an upstream client rebuilt when the settings it uses change.
- `close()`: release anything not made by `cached_client`.

The base does the rest: connect, read its flag and settings rows each cycle (a bad row is refused
and reported, the previous settings stay), wait without crash-looping while unconfigured, run
cycles on `interval_ms`, heartbeat, obey `RateLimited`, and on SIGTERM finish the current item and
exit 0. `workers/example/` is the runnable template.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from sql import query
from workers.blocked import blocked_reason, error_kind, every_item_failing
from workers.errors import NotConfigured, RateLimited
from workers.lease import EXIT_LEASE_LOST, LeaseLost, epoch_from_environment, fence, lease_lost
from workers.listen import Listener
from workers.orphan import ORPHAN_EXIT_CODE, watch_parent
from workers.redact import SecretScrubber, mask_secrets
from workers.schedule import due_at
from workers.settings import SettingsInvalid, WorkerSettings, load_settings

Item = TypeVar("Item")
Client = TypeVar("Client")

DEFAULT_CURSOR = "default"


@dataclass
class Batch(Generic[Item]):
    """One unit of fetched work: its items, the cursor after them, and whether more is waiting."""

    items: list[Item]
    cursor: Any = None
    more: bool = False


@dataclass
class CycleResult:
    """What a cycle did: items written, items that failed, and whether work is left over."""

    items: int = 0
    item_errors: int = 0
    more_pending: bool = False  # the cycle stopped with work left: start the next one at once
    wait_s: float | None = None  # the wait before the next cycle, if not interval_ms (an idle backoff)

    def add(self, other: CycleResult) -> None:
        self.items += other.items
        self.item_errors += other.item_errors


def _close(client: Any) -> None:
    client.close()


def describe(exc: BaseException) -> str:
    """One line for an operator: the exception type and message, no traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Worker(Generic[Item]):
    """Subclass this; see the module docstring. Run with `Worker.main()` from `__main__`."""

    #: The typed settings: field defaults < the config file < `settings` rows (`<name>_<key>`).
    settings_model: ClassVar[type[WorkerSettings]] = WorkerSettings
    settings: WorkerSettings

    def __init__(
        self, name: str | None = None, config: dict[str, Any] | None = None, database_url: str | None = None
    ) -> None:
        self.name = name or os.environ.get("WORKER_NAME") or type(self).__name__.lower()
        self.base_config: dict[str, Any] = (
            config if config is not None else json.loads(os.environ.get("WORKER_CONFIG") or "{}")
        )
        #: Why the settings in force are not the ones asked for (a bad row or config value), or None.
        self.settings_error: str | None = None
        self._settings_valid = True  # False while the config file itself does not validate
        #: Whose flags and settings rows apply: a replica `ai-2` follows `ai` (workers/claims.py).
        self.group: str = self.base_config.get("replica_of") or self.name
        try:
            self.settings = load_settings(self.settings_model, self.group, self.base_config)
        except SettingsInvalid as exc:
            self.settings = self._waiting_settings()  # only for the intervals while waiting
            self.settings_error, self._settings_valid = str(exc), False
        self._clients: dict[str, tuple[Any, Any, Callable[[Any], None]]] = {}
        self.database_url = database_url or os.environ.get("DATABASE_URL", "")
        self.pid = os.getpid()
        self.lease_epoch = epoch_from_environment()  # fences every cursor write and heartbeat
        self.started_at = time.time()
        self._stop = threading.Event()
        self._control: psycopg.Connection[Any] | None = None  # heartbeats, flags, errors
        # The control connection is shared by the worker's threads (the ai worker's prefetch thread
        # heartbeats while its provider calls wait): one user at a time, so that a heartbeat's
        # transaction never interleaves with another thread's statements or transaction.
        self._control_lock = threading.RLock()
        self._data: psycopg.Connection[Any] | None = None  # results + cursors, in transactions
        self._last_beat = 0.0
        self._rate_limited_s = 0.0
        self.cycles = 0
        # Errors are stored scrubbed of this worker's own secrets (its environment and config).
        self._scrub = SecretScrubber.from_environment(os.environ, self.base_config)
        self._wake = threading.Event()  # set by a stop or run-now request: ends the wait between cycles
        self._listener = Listener(self._connect, self.name, self._wake)
        self._flags: dict[str, bool] = {}
        self._flags_version = -1
        self._more_pending = False
        self.next_run_at: datetime | None = None  # when the wait between cycles ends (heartbeat `next_run`)
        #: What the worker is doing, sent with every heartbeat: starting | waiting | running | idle.
        self.phase = "starting"
        #: Why the worker cannot do its job (see workers.blocked), sent with every heartbeat until
        #: a cycle succeeds; None while it works.
        self.blocked: str | None = None
        self.lag: float | None = None
        self.lag_unit: str | None = None
        self._attempted = 0  # items handed to run_items this cycle
        self._item_errors: Counter[str] = Counter()  # this cycle's item errors, by kind

    # ---- to override ------------------------------------------------------------------------

    def validate(self) -> None:
        """Check dependencies (endpoints, credentials); raise NotConfigured to wait."""

    def run_cycle(self) -> CycleResult:
        """One cycle of work from the building blocks (see the module docstring)."""
        raise NotImplementedError

    def item_key(self, item: Item) -> str:
        """How an item is named in error records."""
        return str(item)[:200]

    def close(self) -> None:
        """Release upstream clients (called once, on the way out)."""

    # ---- settings ---------------------------------------------------------------------------

    @property
    def interval_s(self) -> float:
        return self.settings.interval_ms / 1000

    @property
    def heartbeat_interval_s(self) -> float:
        return self.settings.heartbeat_interval_ms / 1000

    def refresh_settings(self) -> None:
        """Re-read the `settings` rows named `<name>_<key>` over the config file (they apply live).

        Rows that do not validate are refused: the settings in force stay, and `settings_error`
        names the row and key path (reported with each heartbeat, recorded once per change)."""
        with self._control_lock:
            rows = self.control.execute(query("worker_settings"), {"prefix": f"{self.group}_"}).fetchall()
        self.apply_settings(dict(rows))

    def apply_settings(self, rows: Mapping[str, Any]) -> None:
        """Validate the config file overlaid with `rows` (key -> value) into `self.settings`."""
        before = self.settings_error
        try:
            self.settings = load_settings(self.settings_model, self.group, self.base_config, rows)
            self.settings_error, self._settings_valid = None, True
        except SettingsInvalid as exc:
            self.settings_error = str(exc)
            if not exc.from_rows:
                self._settings_valid = False
        if self.settings_error and self.settings_error != before:
            self.record_error(self.settings_error, "settings")

    def _waiting_settings(self) -> WorkerSettings:
        """The defaults with the configured intervals, when those validate: a worker waiting on a bad
        config value re-checks (and heartbeats) at the pace its operator set."""
        pace = {k: self.base_config[k] for k in ("interval_ms", "heartbeat_interval_ms") if k in self.base_config}
        try:
            return self.settings_model.model_validate(pace)
        except ValueError:  # pydantic's ValidationError: the intervals themselves are the bad values
            return self.settings_model()

    def cached_client(
        self, name: str, key: Any, build: Callable[[], Client], close: Callable[[Client], None] | None = None
    ) -> Client:
        """The upstream client `name`, built once and rebuilt (the old one closed) whenever `key` -
        the settings and secrets it was built from - changes, so settings rows apply live."""
        held = self._clients.get(name)
        if held is not None and held[0] == key:
            return held[1]  # type: ignore[no-any-return]
        if held is not None:
            held[2](held[1])
        client = build()
        self._clients[name] = (key, client, close or _close)
        return client

    def drop_client(self, name: str) -> None:
        """Close and forget one cached client (the next `cached_client` call builds it afresh)."""
        held = self._clients.pop(name, None)
        if held is not None:
            held[2](held[1])

    def flag_enabled(self) -> bool:
        with self._control_lock:
            row = self.control.execute(query("worker_flag"), (f"{self.group}_enabled",)).fetchone()
        return True if row is None else bool(row[0])

    def flag(self, feature: str) -> bool:
        """Whether the part `feature` is switched on: the `<worker>_<feature>_enabled` row (a full
        flag name is taken as is). No row means enabled. Read again after any flag change the
        listener hears, so a switch applies at the next item or cycle."""
        name = feature if feature.endswith("_enabled") else f"{self.group}_{feature}_enabled"
        version = self._listener.flags_version
        if version != self._flags_version or not self._listener.listening.is_set():
            with self._control_lock:
                rows = self.control.execute(query("worker_feature_flags"), {"prefix": f"{self.group}_"}).fetchall()
            self._flags, self._flags_version = {n: bool(e) for n, e in rows}, version
        return self._flags.get(name, True)

    # ---- database ---------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, autocommit=True, application_name=f"worker:{self.name}")

    @property
    def control(self) -> psycopg.Connection[Any]:
        if self._control is None or self._control.closed or self._control.broken:
            self._control = self._connect()
        return self._control

    @property
    def db(self) -> psycopg.Connection[Any]:
        if self._data is None or self._data.closed or self._data.broken:
            self._data = self._connect()
        return self._data

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction on the data connection: results and cursors commit together or not at all.

        Fenced just before it commits, whether or not it wrote a cursor: a worker whose lease moved
        on gets `LeaseLost` and the transaction rolls back (workers/lease.py)."""
        conn = self.db
        with conn.transaction():
            yield conn
            self.fence(conn)

    def fence(self, conn: psycopg.Connection[Any]) -> None:
        """Inside a transaction on `conn`: refuse (LeaseLost) unless this process holds the current
        lease epoch; the lease row stays share-locked until commit."""
        fence(conn, self.name, self.lease_epoch)

    def load_cursor(self, key: str = DEFAULT_CURSOR) -> Any:
        row = self.db.execute(query("get_cursor"), (self.name, key)).fetchone()
        return row[0] if row else None

    def save_cursor(self, tx: psycopg.Connection[Any], value: Any, key: str = DEFAULT_CURSOR) -> None:
        fence(tx, self.name, self.lease_epoch)  # refused in the database once another placement took over
        tx.execute(query("set_cursor"), (self.name, key, Jsonb(value)))

    def record_error(self, message: str, item_key: str | None = None) -> None:
        """Keep an error for the detail view (outside any data transaction, so it survives rollback)."""
        message = self._scrub(message)
        try:
            with self._control_lock:
                if self.lease_epoch is None:
                    self.control.execute(query("record_error"), (self.name, item_key, message[:2000]))
                else:  # fenced, in one statement
                    self.control.execute(
                        query("record_error_fenced", "leases.sql"),
                        {"name": self.name, "item_key": item_key, "message": message[:2000], "epoch": self.lease_epoch},
                    )
        except psycopg.Error as exc:  # the error is still printed below, unless the lease is lost
            lost = lease_lost(exc)
            if lost is not None:
                raise lost from None
        self.log(f"error{f' on {item_key}' if item_key else ''}: {message}", err=True)

    # ---- heartbeats ---------------------------------------------------------------------------

    def report_lag(self, value: float | None, unit: str) -> None:
        """How far behind the upstream the worker is, in `unit` (blocks, slots, seconds, rows);
        None when unknown. Sent with every heartbeat; Healdec calls lag that keeps growing degraded."""
        self.lag, self.lag_unit = (None if value is None else max(0.0, float(value))), unit

    def heartbeat(self, phase: str | None = None, last_error: str | None = None) -> None:
        """Report liveness with the current phase and blocked reason (never overwriting them with
        a default: a waiting worker's every heartbeat says it waits)."""
        phase = phase or self.phase
        last_error = last_error or self.settings_error or self.blocked
        last_error = self._scrub(last_error) if last_error else last_error
        detail = {
            "config": mask_secrets(self.settings.model_dump(mode="json")),
            "cycles": self.cycles,
            "settingsError": self.settings_error,  # a refused settings row (the previous settings stay)
        }
        detail["next_run"] = self.next_run_at.isoformat().replace("+00:00", "Z") if self.next_run_at else None
        with self._control_lock, self.control.transaction():
            fence(self.control, self.name, self.lease_epoch)
            self._beat(phase, last_error, detail)
        self._last_beat = time.monotonic()

    def _beat(self, phase: str, last_error: str | None, detail: dict[str, Any]) -> None:
        self.control.execute(
            query("heartbeat"),
            {
                "name": self.name,
                "pid": self.pid,
                "started_at": self.started_at,
                "phase": phase,
                "last_error": last_error,
                "rate_limited_s": self._rate_limited_s,
                "detail": Jsonb(detail),
                "blocked": self.blocked,
                "lag": self.lag,
                "lag_unit": self.lag_unit,
            },
        )

    def beat_if_due(self) -> None:
        """Call between items of a long cycle: proves the loop is alive without flooding the DB."""
        if time.monotonic() - self._last_beat < self.heartbeat_interval_s:
            return
        if not self._control_lock.acquire(blocking=False):
            return  # another thread is on the control connection (beating, likely): try at the next call
        try:
            if time.monotonic() - self._last_beat >= self.heartbeat_interval_s:  # not just beaten by another
                self.heartbeat()
        finally:
            self._control_lock.release()

    # ---- stopping -----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, *_: Any) -> None:
        self._stop.set()
        self._wake.set()

    def sleep(self, seconds: float) -> None:
        """Wait up to `seconds`, heartbeating; returns early when asked to stop."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, self.heartbeat_interval_s))
            if not self.stopping and time.monotonic() < deadline:
                self.beat_if_due()

    def idle(self, seconds: float) -> None:
        """The wait between cycles: like `sleep`, but a run-now request ends it at once. The end
        of the wait is reported as `next_run` in the heartbeat."""
        if seconds <= 0:
            return  # a backlog: the next cycle starts at once
        self.next_run_at = datetime.fromtimestamp(time.time() + seconds, UTC)
        try:
            self.heartbeat()
            deadline = time.monotonic() + seconds
            while not self.stopping and not self._listener.run_now.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._wake.wait(min(left, self.heartbeat_interval_s))
                self.beat_if_due()
        finally:
            self.next_run_at = None

    def _last_run(self) -> datetime | None:
        """When this worker last finished a cycle (kept across restarts), for schedules."""
        with self._control_lock:
            row = self.control.execute(query("worker_last_run"), (self.name,)).fetchone()
        return row[0] if row and row[0] is not None else None

    def _scheduled_wait(self) -> float | None:
        """Seconds until the schedule's next slot after the last run (0: due now), or None
        without a schedule."""
        schedule = self.settings.schedule
        if not schedule:
            return None
        now = datetime.now(UTC)
        return (due_at(schedule, self.settings.timezone, self._last_run(), now) - now).total_seconds()

    # ---- the cycle ------------------------------------------------------------------------------

    def run_items(
        self, items: Iterable[Item], tx: psycopg.Connection[Any], handle: Callable[[Item, psycopg.Connection[Any]], int]
    ) -> tuple[CycleResult, bool]:
        """`handle(item, tx)` for each item, one savepoint each (it returns how many items it
        counts as); a failing item is recorded and skipped.

        Returns the result and whether every item was handled (False when a stop request
        interrupted the batch: the caller must then not move its cursor past the batch).
        """
        result = CycleResult()
        for item in items:
            if self.stopping:
                return result, False
            self._attempted += 1
            try:
                with tx.transaction():
                    result.items += handle(item, tx)
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise  # the connection is gone: the whole cycle fails, nothing half-written
            except Exception as exc:
                result.item_errors += 1
                self._item_errors[error_kind(describe(exc))] += 1
                self.record_error(describe(exc), self.item_key(item))
            self.beat_if_due()
        return result, True

    def drain_streams(self, streams: Mapping[str, Callable[[CycleResult], bool]], max_cycle_s: float) -> CycleResult:
        """One batch per stream in turn until every stream is drained or `max_cycle_s` is up.

        Each callable handles one batch (its own transaction and cursor), adds to the result and
        returns whether more may be waiting. Work left when time runs out is flagged
        `more_pending`, so a backlog drains without waiting out the interval between cycles.
        """
        total = CycleResult()
        deadline = time.monotonic() + max_cycle_s
        pending = dict(streams)
        while pending and not self.stopping:
            for name, batch in list(pending.items()):
                if not batch(total):
                    del pending[name]
                self.beat_if_due()
            if time.monotonic() >= deadline:
                break
        total.more_pending = bool(pending) and not self.stopping
        return total

    # ---- the loop -------------------------------------------------------------------------------

    def log(self, text: str, err: bool = False) -> None:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)

    def _record_cycle(self, started: float, ok: bool, result: CycleResult, error: str | None) -> None:
        """The cycle's row and heartbeat fields, fenced like a heartbeat: a worker whose lease moved
        on records nothing more (its last data transaction may have committed just before)."""
        with self._control_lock, self.control.transaction():
            fence(self.control, self.name, self.lease_epoch)
            self._record_cycle_row(started, ok, result, error)

    def _record_cycle_row(self, started: float, ok: bool, result: CycleResult, error: str | None) -> None:
        self.control.execute(
            query("record_cycle"),
            {
                "name": self.name,
                "pid": self.pid,
                "started_at": started,
                "ok": ok,
                "items": result.items,
                "item_errors": result.item_errors,
                "error": error,
                "blocked": self.blocked,
                "lag": self.lag,
                "lag_unit": self.lag_unit,
            },
        )

    def _wait_for_database(self) -> bool:
        delay = 0.2
        while not self.stopping:
            try:
                self.heartbeat("starting")
                return True
            except psycopg.OperationalError as exc:
                self.log(f"database not reachable ({describe(exc)}); retrying in {delay:.1f} s", err=True)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return False

    def run_forever(self) -> None:
        if not self._wait_for_database():
            return
        self._listener.start()
        self.log(f"{self.name} worker started (pid {self.pid})")
        while not self.stopping:
            try:
                self.refresh_settings()
                if not self.flag_enabled():
                    self.phase = "idle"
                    self.heartbeat()
                    self.sleep(self.interval_s)
                    continue
                if not self._settings_valid:  # a bad config value: report it and wait, as unconfigured
                    self._wait(f"not configured: {self.settings_error}")
                    continue
                try:
                    self.validate()
                except NotConfigured as exc:
                    self._wait(blocked_reason(exc) or str(exc))
                    continue
                wait = None if self._more_pending else self._scheduled_wait()
                if wait and wait > 0 and not self._listener.run_now.is_set():
                    self.idle(wait)  # not due yet (after a restart, or the schedule changed)
                    continue
                self.phase = "running"  # `blocked` stays until a cycle succeeds
                self.heartbeat()
                self._one_cycle()
            except psycopg.OperationalError as exc:
                self.log(f"lost the database ({describe(exc)}); reconnecting", err=True)
                self._stop.wait(1.0)

    def _wait(self, reason: str) -> None:
        """Blocked before a cycle can start (not configured, budget spent): say so on every
        heartbeat and re-check at least every 30 s, without crash-looping."""
        self.phase, self.blocked = "waiting", reason
        self.heartbeat()
        self.sleep(min(self.interval_s, 30.0))

    def _one_cycle(self) -> None:
        started = time.time()
        result, ok, error, wait_s = CycleResult(), True, None, self.interval_s
        self._rate_limited_s = 0.0
        self._listener.run_now.clear()  # a request from now on asks for another cycle
        if not self.stopping:
            self._wake.clear()
        self._attempted, self._item_errors = 0, Counter()
        failure: Exception | None = None
        try:
            result = self.run_cycle()
            if result.wait_s is not None:
                wait_s = result.wait_s
            if result.more_pending:
                wait_s = 0.0
        except RateLimited as exc:
            ok, error = False, f"rate limited by upstream: {exc} (retrying in {exc.retry_after_s:.0f} s)"
            self._rate_limited_s = exc.retry_after_s
            wait_s = max(exc.retry_after_s, 0.1)
        except (psycopg.OperationalError, LeaseLost):
            raise
        except Exception as exc:
            ok, error, failure = False, describe(exc), exc
            if os.environ.get("WORKER_DEBUG"):
                traceback.print_exc()
        self.cycles += 1
        if not ok:  # a cycle that fails as a whole counts its batch (at least one item) as failed
            result = CycleResult(items=0, item_errors=max(1, self._attempted))
        self.blocked = self._blocked_after(ok, result, failure)
        if error:
            error = self._scrub(error)  # an exception's text may quote a URL or key: stored without it
            self.record_error(error)
        self._record_cycle(started, ok, result, error)
        if ok and (result.items or result.item_errors):  # idle cycles stay quiet
            errors = f", {result.item_errors} item error(s)" if result.item_errors else ""
            self.log(f"cycle {self.cycles}: {result.items} item(s){errors} in {time.time() - started:.2f} s")
        self._more_pending = result.more_pending
        if self.settings.schedule and wait_s == self.interval_s:
            return  # the loop waits for the schedule's next slot
        self.idle(wait_s)

    def _blocked_after(self, ok: bool, result: CycleResult, failure: Exception | None) -> str | None:
        """What blocks the worker after a cycle: cleared by success, kept through an idle cycle
        after every item failed (no evidence either way), set by a blocking failure."""
        if not ok:
            return blocked_reason(failure) if failure is not None else None
        if result.item_errors and not result.items:
            return every_item_failing(self._item_errors)
        if not result.items and self.blocked and self.blocked.startswith("every item failing"):
            return self.blocked
        return None

    def run(self) -> int:
        """The process's whole life; returns the exit code (0 after a graceful stop)."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        code = 0
        parent = os.getppid()
        watch_parent(self.request_stop)
        try:
            self.run_forever()
        except LeaseLost as exc:  # another placement runs this worker now: leave without writing
            self.log(f"lease lost, stopping: {exc}", err=True)
            code = EXIT_LEASE_LOST
        finally:
            try:
                if self._control is not None and not self._control.closed:
                    self.heartbeat("stopped")
            except (psycopg.Error, LeaseLost):
                pass
            self.close()
            self._listener.stop()
            for name in list(self._clients):
                with suppress(Exception):  # closing is best effort on the way out
                    self.drop_client(name)
            for conn in (self._control, self._data):
                if conn is not None:
                    conn.close()
        if os.getppid() != parent:  # stopped because the parent died: not a clean, asked-for stop
            self.log(f"{self.name} worker stopped: its parent process died", err=True)
            return ORPHAN_EXIT_CODE
        self.log(f"{self.name} worker stopped")
        return code

    @classmethod
    def main(cls) -> None:
        """Entry point for `python -m workers.<name>`."""
        sys.exit(cls().run())
