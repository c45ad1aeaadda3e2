"""The state machine's allowed transitions, secret masking, and the SQL loader."""

from __future__ import annotations

import pytest

import sql
from manager.states import IllegalTransition, WorkerState, check_transition
from workers.redact import mask_secrets, redact_url


def test_transitions():
    check_transition(WorkerState.RUNNING, WorkerState.BACKOFF)
    check_transition(WorkerState.FAILED, WorkerState.STARTING)
    with pytest.raises(IllegalTransition):
        check_transition(WorkerState.DISABLED, WorkerState.STARTING)
    with pytest.raises(IllegalTransition):
        check_transition(WorkerState.PAUSED, WorkerState.RUNNING)  # always through starting


def test_masking():
    value = {
        "api_key": "sk-1",
        "nested": {"client_secret": "x", "ok": 1},
        "url": "postgresql://u:pw@h/db",
        "password": "",
        "tokens_per_minute": 5,
    }
    masked = mask_secrets(value)
    assert masked["api_key"] == "***" and masked["nested"] == {"client_secret": "***", "ok": 1}
    assert masked["url"] == "postgresql://u:***@h/db" and masked["password"] == ""
    assert redact_url("http://host/path") == "http://host/path"


def test_sql_files_load():
    names = sql.queries()
    assert "heartbeat" in names and "set_flag" in names
    assert all(not text.rstrip().endswith(";") for text in names.values())
    versions = [m.version for m in sql.migrations()]
    assert versions == sorted(versions) and versions[0] == "0001"
