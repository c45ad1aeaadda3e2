"""Config loading: env expansion, validation messages with key paths."""

from __future__ import annotations

import pytest

from manager.config import expand_env, load_config
from manager.errors import ConfigError


def test_env_expansion_with_defaults():
    env = {"A": "1", "EMPTY": ""}
    assert expand_env("${A} ${B:-two} ${EMPTY:-dflt} ${EMPTY}", env) == "1 two dflt "
    with pytest.raises(KeyError):
        expand_env("${MISSING}", env)


def test_shipped_config_is_valid(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = load_config("config.yaml")
    assert set(config.workers) == {"farcaster", "reddit", "ethereum", "base", "solana", "ai", "search"}
    assert config.workers["reddit"].enabled is False
    assert config.healdec.max_restarts == 5 and config.api.port == 4200


def test_worker_settings_are_kept_and_stale_default(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("workers:\n  w:\n    module: workers.example\n    interval_ms: 1000\n    hub_url: http://x\n")
    worker = load_config(path).workers["w"]
    assert worker.own_settings() == {"hub_url": "http://x"}
    assert worker.effective_stale_after_s() == 60.0


def test_moved_worker_modules_still_run_under_their_new_names(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("workers:\n  fc:\n    module: workers.farcaster\n  rd:\n    module: workers.reddit\n")
    workers = load_config(path).workers
    assert (workers["fc"].module, workers["rd"].module) == ("workers.social.farcaster", "workers.social.reddit")
    assert "workers.fc.module: workers.farcaster is now workers.social.farcaster" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers:\n  W-1:\n    module: a\n", "workers: Value error, worker name 'W-1'"),
        ("api:\n  port: 99999\n", "api.port: Input should be less than or equal to 65535"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("workers:\n  w:\n    command: []\n", "workers.w.command: must name a program to run"),
        ("workers:\n  login:\n    module: a\n", "worker name 'login' is reserved"),
    ],
)
def test_errors_name_the_key_path(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message.replace("Value error, ", "") in str(err.value)


def test_the_embedded_server_takes_an_eighth_of_memory_for_buffers_within_bounds():
    from manager.db import embedded_settings

    gib = 2**30
    assert embedded_settings(24 * gib)["shared_buffers"] == "2048MB"  # capped: it shares the host
    assert embedded_settings(8 * gib)["shared_buffers"] == "1024MB"
    assert embedded_settings(512 * 2**20)["shared_buffers"] == "128MB"  # never below Postgres's own default
