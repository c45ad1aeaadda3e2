"""What a worker hears from Postgres while it works or waits: flag changes and run-now requests.

One extra connection per worker, in a daemon thread, LISTENs on two channels:
- `config_changed` (the flags/settings trigger, sql/migrations/0001_core.sql): the worker's feature
  flags are re-read at their next use (`Worker.flag`), so a flag switches its part at the next item;
- `worker_run_now` (payload: a worker name; `manager run-now`, `POST /api/workers/{name}/run`):
  wakes the worker's wait between cycles, so the next cycle starts at once, without a restart.
A dropped connection is re-opened with backoff; the flags are then treated as changed, since an
announcement may have been missed while it was down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg

RUN_NOW_CHANNEL = "worker_run_now"
CONFIG_CHANNEL = "config_changed"


class Listener:
    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], name: str, wake: threading.Event) -> None:
        self._connect = connect
        self._name = name
        self._wake = wake
        self._done = threading.Event()
        self.run_now = threading.Event()
        self.flags_version = 0  # moves on every config change (or possible missed one)
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end, without waiting out its poll: a stopping worker must exit at once
        (the daemon thread and its connection end with the process)."""
        self._done.set()
        if self._thread.ident is not None:  # a worker that failed before its loop never started it
            self._thread.join(timeout=0.05)

    def _run(self) -> None:
        delay = 0.2
        while not self._done.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CONFIG_CHANNEL}")
                    conn.execute(f"LISTEN {RUN_NOW_CHANNEL}")
                    self.flags_version += 1  # anything said while not listening is re-read
                    self.listening.set()
                    delay = 0.2
                    while not self._done.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            self._heard(notice.channel, notice.payload)
            except psycopg.Error:
                self.listening.clear()
                self._done.wait(delay)
                delay = min(delay * 2, 10.0)

    def _heard(self, channel: str, payload: str) -> None:
        if channel == RUN_NOW_CHANNEL:
            if payload == self._name:
                self.run_now.set()
                self._wake.set()
        else:
            self.flags_version += 1
