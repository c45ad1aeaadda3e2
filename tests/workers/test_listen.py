"""The worker's listener thread (workers/listen.py) against a real Postgres: a run-now request for
this worker wakes it and one for another does not, a config change moves the flags version, a
connection the server kills is re-opened (and counts as a possible missed change), and stopping a
listener that never started is harmless."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from workers.listen import CONFIG_CHANNEL, RUN_NOW_CHANNEL, Listener

APP = "worker-listen-test"


def notify(url: str, channel: str, payload: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def until(check: Any, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_run_now_wakes_only_its_worker_and_config_changes_move_the_flags_version(database_url: str) -> None:
    wake = threading.Event()
    listener = Listener(lambda: psycopg.connect(database_url, autocommit=True, application_name=APP), "solo", wake)
    listener.start()
    try:
        until(listener.listening.is_set, "the listener to listen")
        version = listener.flags_version
        assert version == 1  # the first connect counts: anything said before it is re-read

        notify(database_url, RUN_NOW_CHANNEL, "someone_else")
        notify(database_url, CONFIG_CHANNEL, "feature_flags")
        until(lambda: listener.flags_version == version + 1, "the config change")
        assert not listener.run_now.is_set() and not wake.is_set()  # heard in order: the other's request came first

        notify(database_url, RUN_NOW_CHANNEL, "solo")
        until(listener.run_now.is_set, "this worker's run-now request")
        assert wake.is_set()

        with psycopg.connect(database_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (APP,)
            ).fetchall()
        assert killed == [(True,)]
        until(lambda: listener.flags_version == version + 2, "the reconnect (a possible missed change)")
        until(listener.listening.is_set, "listening again")
        notify(database_url, CONFIG_CHANNEL, "settings")
        until(lambda: listener.flags_version == version + 3, "a config change after the reconnect")
    finally:
        listener.stop()


def test_stopping_a_listener_that_never_started_is_harmless(database_url: str) -> None:
    listener = Listener(lambda: psycopg.connect(database_url), "early", threading.Event())
    listener.stop()  # a worker that failed before its loop started the thread
    assert not listener.listening.is_set()
