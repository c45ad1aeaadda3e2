"""The worker lifecycle every data-sync worker shares.

A worker author implements `fetch_batch(cursor)` and `process(item, tx)` (and `validate()` for
its dependencies); the base does the rest: connect, read its flag and settings each cycle, wait
without crash-looping while unconfigured, run cycles on its interval, write each batch's results
and its cursor in one transaction (one savepoint per item, so a bad item is logged and skipped),
heartbeat, obey upstream rate limits, and on SIGTERM finish the current item and exit 0.

Workers that sync several streams (one cursor per fid, per chain, ...) override `run_cycle()`
and use the same building blocks: `transaction()`, `load_cursor()`, `save_cursor()`,
`run_items()`, `beat_if_due()` and `stopping`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from workers.redact import mask_secrets
from sql import query
from workers.errors import NotConfigured, RateLimited

Item = TypeVar("Item")

DEFAULT_CURSOR = "default"


@dataclass
class Batch(Generic[Item]):
    """One unit of fetched work: its items, the cursor after them, and whether more is waiting."""

    items: list[Item]
    cursor: Any = None
    more: bool = False
    cursor_key: str = DEFAULT_CURSOR


@dataclass
class CycleResult:
    items: int = 0
    item_errors: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    more_pending: bool = False  # the cycle stopped with work left: start the next one at once

    def add(self, other: CycleResult) -> None:
        self.items += other.items
        self.item_errors += other.item_errors


def describe(exc: BaseException) -> str:
    """One line for an operator: the exception type and message, no traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Worker(Generic[Item]):
    """Subclass this; see the module docstring. Run with `Worker.main()` from `__main__`."""

    #: Default settings; the config file and `settings` rows (`<name>_<key>`) override them.
    defaults: dict[str, Any] = {}

    def __init__(self, name: str | None = None, config: dict[str, Any] | None = None,
                 database_url: str | None = None) -> None:
        self.name = name or os.environ.get("WORKER_NAME") or type(self).__name__.lower()
        base = config if config is not None else json.loads(os.environ.get("WORKER_CONFIG") or "{}")
        self.base_config: dict[str, Any] = {**self.defaults, **base}
        self.config: dict[str, Any] = dict(self.base_config)
        self.database_url = database_url or os.environ.get("DATABASE_URL", "")
        self.pid = os.getpid()
        self.started_at = time.time()
        self._stop = threading.Event()
        self._control: psycopg.Connection[Any] | None = None  # heartbeats, flags, errors
        self._data: psycopg.Connection[Any] | None = None  # results + cursors, in transactions
        self._last_beat = 0.0
        self._rate_limited_s = 0.0
        self.cycles = 0

    # ---- to override ------------------------------------------------------------------------

    def validate(self) -> None:
        """Check dependencies (endpoints, credentials); raise NotConfigured to wait."""

    def fetch_batch(self, cursor: Any) -> Batch[Item]:
        """The next batch of work after `cursor` (None on the first run)."""
        return Batch([], cursor)

    def process(self, item: Item, tx: psycopg.Connection[Any]) -> int:
        """Write the results of one item using `tx`; return how many items it counts as."""
        raise NotImplementedError

    def item_key(self, item: Item) -> str:
        """How an item is named in error records."""
        return str(item)[:200]

    def close(self) -> None:
        """Release upstream clients (called once, on the way out)."""

    # ---- settings ---------------------------------------------------------------------------

    @property
    def interval_s(self) -> float:
        return float(self.config.get("interval_ms", 60000)) / 1000

    @property
    def heartbeat_interval_s(self) -> float:
        return float(self.config.get("heartbeat_interval_ms", 5000)) / 1000

    def setting(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    def refresh_settings(self) -> None:
        """Effective config = defaults < config file < `settings` rows named `<name>_<key>`."""
        rows = self.control.execute(query("worker_settings"), {"prefix": f"{self.name}_"}).fetchall()
        self.config = {**self.base_config, **{key: value for key, value in rows}}

    def flag_enabled(self) -> bool:
        row = self.control.execute(query("worker_flag"), (f"{self.name}_enabled",)).fetchone()
        return True if row is None else bool(row[0])

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
        """A transaction on the data connection: results and cursors commit together or not at all."""
        conn = self.db
        with conn.transaction():
            yield conn

    def load_cursor(self, key: str = DEFAULT_CURSOR) -> Any:
        row = self.db.execute(query("get_cursor"), (self.name, key)).fetchone()
        return row[0] if row else None

    def save_cursor(self, tx: psycopg.Connection[Any], value: Any, key: str = DEFAULT_CURSOR) -> None:
        tx.execute(query("set_cursor"), (self.name, key, Jsonb(value)))

    def record_error(self, message: str, item_key: str | None = None) -> None:
        """Keep an error for the detail view (outside any data transaction, so it survives rollback)."""
        with suppress(psycopg.Error):  # the error is still printed below
            self.control.execute(query("record_error"), (self.name, item_key, message[:2000]))
        self.log(f"error{f' on {item_key}' if item_key else ''}: {message}", err=True)

    # ---- heartbeats ---------------------------------------------------------------------------

    def heartbeat(self, phase: str = "running", last_error: str | None = None) -> None:
        detail = {"config": mask_secrets(self.config), "cycles": self.cycles}
        self.control.execute(
            query("heartbeat"),
            {
                "name": self.name, "pid": self.pid, "started_at": self.started_at, "phase": phase,
                "last_error": last_error, "rate_limited_s": self._rate_limited_s, "detail": Jsonb(detail),
            },
        )
        self._last_beat = time.monotonic()

    def beat_if_due(self) -> None:
        """Call between items of a long cycle: proves the loop is alive without flooding the DB."""
        if time.monotonic() - self._last_beat >= self.heartbeat_interval_s:
            self.heartbeat()

    # ---- stopping -----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

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

    # ---- the cycle ------------------------------------------------------------------------------

    def run_items(self, items: Iterable[Item], tx: psycopg.Connection[Any],
                  handle: Callable[[Item, psycopg.Connection[Any]], int] | None = None) -> tuple[CycleResult, bool]:
        """Process items one savepoint each; a failing item is recorded and skipped.

        Returns the result and whether every item was handled (False when a stop request
        interrupted the batch: the caller must then not move its cursor past the batch).
        """
        handle = handle or self.process
        result = CycleResult()
        for item in items:
            if self.stopping:
                return result, False
            try:
                with tx.transaction():
                    result.items += handle(item, tx)
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise  # the connection is gone: the whole cycle fails, nothing half-written
            except Exception as exc:
                result.item_errors += 1
                self.record_error(describe(exc), self.item_key(item))
            self.beat_if_due()
        return result, True

    def run_cycle(self) -> CycleResult:
        """Fetch and process batches until the source is drained (or a stop is requested)."""
        total = CycleResult()
        cursor = self.load_cursor()
        while not self.stopping:
            batch = self.fetch_batch(cursor)
            with self.transaction() as tx:
                result, complete = self.run_items(batch.items, tx)
                if complete and batch.cursor is not None:
                    self.save_cursor(tx, batch.cursor, batch.cursor_key)
            total.add(result)
            if not complete or not batch.more:
                break
            cursor = batch.cursor
        return total

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
        self.control.execute(
            query("record_cycle"),
            {
                "name": self.name, "pid": self.pid, "started_at": started, "ok": ok,
                "items": result.items, "item_errors": result.item_errors, "error": error,
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
        self.log(f"{self.name} worker started (pid {self.pid})")
        while not self.stopping:
            try:
                self.refresh_settings()
                if not self.flag_enabled():
                    self.heartbeat("idle")
                    self.sleep(self.interval_s)
                    continue
                try:
                    self.validate()
                except NotConfigured as exc:
                    self.heartbeat("waiting", last_error=str(exc))
                    self.sleep(min(self.interval_s, 30.0))
                    continue
                self.heartbeat()
                self._one_cycle()
            except psycopg.OperationalError as exc:
                self.log(f"lost the database ({describe(exc)}); reconnecting", err=True)
                self._stop.wait(1.0)

    def _one_cycle(self) -> None:
        started = time.time()
        result, ok, error, wait_s = CycleResult(), True, None, self.interval_s
        self._rate_limited_s = 0.0
        try:
            result = self.run_cycle()
            if result.more_pending:
                wait_s = 0.0
        except RateLimited as exc:
            ok, error = False, f"rate limited by upstream: {exc} (retrying in {exc.retry_after_s:.0f} s)"
            self._rate_limited_s = exc.retry_after_s
            wait_s = max(exc.retry_after_s, 0.1)
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            ok, error = False, describe(exc)
            if os.environ.get("WORKER_DEBUG"):
                traceback.print_exc()
        self.cycles += 1
        if error:
            self.record_error(error)
        self._record_cycle(started, ok, result, error)
        if ok and (result.items or result.item_errors):  # idle cycles stay quiet
            errors = f", {result.item_errors} item error(s)" if result.item_errors else ""
            self.log(f"cycle {self.cycles}: {result.items} item(s){errors} in {time.time() - started:.2f} s")
        self.sleep(wait_s)

    def run(self) -> int:
        """The process's whole life; returns the exit code (0 after a graceful stop)."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        try:
            self.run_forever()
        finally:
            try:
                if self._control is not None and not self._control.closed:
                    self.heartbeat("stopped")
            except psycopg.Error:
                pass
            self.close()
            for conn in (self._control, self._data):
                if conn is not None:
                    conn.close()
        self.log(f"{self.name} worker stopped")
        return 0

    @classmethod
    def main(cls) -> None:
        """Entry point for `python -m workers.<name>`."""
        sys.exit(cls().run())
