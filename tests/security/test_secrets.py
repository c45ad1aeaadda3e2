"""Secrets never leave: a distinct sentinel is planted in every place a secret can enter (the
environment, a URL path, a URL query, a DSN with `#` and `?`, a key=value DSN, nested settings
JSON, a worker's output and its recorded errors), then stdout, every API response, /metrics, each
console page and the tables that record errors, events and audit are scanned: zero sentinels.
Workers also get only the secrets they declare."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from manager.config import WorkerConfig
from manager.worker_env import check_env_reference, worker_environment
from tests.support.manager import example_worker
from tests.support.waiting import wait_for

SENTINELS = {
    "env": "SNTLenv0aa1zz",
    "other_env": "SNTLother0bb2zz",
    "path": "SNTLpath0cc3dd4ee5ff",
    "query": "SNTLquery0dd4zz",
    "dsn": "SNTL#dsn?0ee5zz",
    "kv": "SNTLkv0ff6zz",
    "nested": "SNTLnested0gg7zz",
    "setting": "SNTLsetting0hh8zz",
}


def _forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode().rstrip("=")]


def _leaks(text: str) -> list[str]:
    return [f"{name}:{form}" for name, secret in SENTINELS.items() for form in _forms(secret) if form in text]


def test_no_sentinel_leaves_the_manager(boot_manager):
    leaky = {
        "module": "tests.security.leaky_worker",
        "interval_ms": 300,
        "heartbeat_interval_ms": 200,
        "secrets": ["LEAKY_API_KEY"],
        "rpc_url": f"https://rpc.invalid/v2/{SENTINELS['path']}",
        "feed_url": f"https://feed.invalid/x?api-key={SENTINELS['query']}&page=2",
        "archive_url": f"postgresql://app:{SENTINELS['dsn']}@db.invalid:5432/x",
        "archive_conn": f"host=db.invalid password={SENTINELS['kv']} dbname=x",
        "ai_max_tokens": 512,
        "oauth_url": "https://auth.invalid/oauth",
    }
    m = boot_manager(
        {"leaky": leaky, "counter": example_worker(), "ai": {"module": "workers.ai", "enabled": False}},
        env={"LEAKY_API_KEY": SENTINELS["env"], "OTHER_WORKER_KEY": SENTINELS["other_env"], "VIEWER_TOKEN": "v" * 20},
    )
    assert m.api(
        "PUT", "/api/settings/leaky_provider", json={"value": {"auth": {"token": SENTINELS["nested"]}}}
    ).is_success
    assert m.api("PUT", "/api/settings/leaky_api_key", json={"value": SENTINELS["setting"]}).is_success
    # a settings row cannot send the admin token to the ai provider
    refused = m.api("PUT", "/api/settings/ai_api_key_env", json={"value": "ADMIN_TOKEN"})
    assert refused.status_code == 422 and "OPENAI_API_KEY" in refused.json()["detail"]
    m.wait_worker("leaky", lambda w: w["lastError"] is not None, what="the leaky worker's first failed cycle")
    wait_for(
        lambda: m.sql("SELECT count(*) FROM worker_errors WHERE worker_name = 'leaky'")[0][0] > 0,
        10,
        0.05,
        "an error row",
    )

    detail = m.api("GET", "/api/workers/leaky").json()
    texts = [line["text"] for line in detail["logs"]]
    # only its own secret was given, and it arrives masked in every form it was printed in
    assert "env I was given beyond my own: []" in texts
    assert any(t.startswith("plain *** encoded *** b64 ***") for t in texts), texts
    # harmless keys stay readable; structure-masked ones keep their shape
    assert detail["config"]["ai_max_tokens"] == 512 and detail["config"]["oauth_url"] == "https://auth.invalid/oauth"
    assert detail["config"]["rpc_url"] == "https://rpc.invalid/v2/***"
    assert detail["config"]["feed_url"] == "https://feed.invalid/x?api-key=***&page=***"

    seen: dict[str, str] = {}
    for path in [
        "/api/workers/status",
        "/api/workers/leaky",
        "/api/workers/counter",
        "/api/settings",
        "/api/audit",
        "/api/flags",
        "/api/trends",
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/workers",
        "/workers/leaky",
        "/workers/counter",
    ]:
        response = m.api("GET", path)
        assert response.status_code == 200, (path, response.status_code)
        seen[path] = response.text
    seen["stdout"] = m.output()
    for table in ("worker_errors", "supervision_events", "config_audit", "worker_heartbeats", "cycle_runs"):
        seen[table] = json.dumps([list(map(str, row)) for row in m.sql(f"SELECT * FROM {table}")])
    leaks = {where: found for where, text in seen.items() if (found := _leaks(text))}
    assert leaks == {}
    assert SENTINELS["nested"] in json.dumps(m.sql("SELECT value FROM settings WHERE key = 'leaky_provider'")[0][0])


def test_workers_get_only_their_declared_environment():
    environ = {"PATH": "/bin", "LANG": "C", "ADMIN_TOKEN": "a", "OPENAI_API_KEY": "o", "REDDIT_PASSWORD": "r"}
    ai = WorkerConfig(module="workers.ai")
    env = worker_environment("ai", ai, "postgresql://x", {"FARCASTER_HUB_API_KEY": "f"}, environ=environ)
    assert {k for k in env if not k.startswith(("WORKER_", "PYTHON"))} == {
        "PATH",
        "LANG",
        "OPENAI_API_KEY",
        "DATABASE_URL",
    }
    custom = WorkerConfig(command=["true"], secrets=["REDDIT_PASSWORD"], env={"EXTRA": "1"})
    env = worker_environment("c", custom, "postgresql://x", environ=environ)
    assert (
        env["REDDIT_PASSWORD"] == "r"
        and env["EXTRA"] == "1"
        and "ADMIN_TOKEN" not in env
        and "OPENAI_API_KEY" not in env
    )
    assert "secrets" not in json.loads(env["WORKER_CONFIG"])


def test_a_setting_cannot_name_a_variable_its_worker_is_not_given():
    workers = {"ai": WorkerConfig(module="workers.ai"), "ai_backup": WorkerConfig(module="workers.example")}
    assert check_env_reference(workers, "ai_api_key_env", "OPENAI_API_KEY") is None
    assert "ai is given (OPENAI_API_KEY" in (check_env_reference(workers, "ai_api_key_env", "ADMIN_TOKEN") or "")
    assert "ai_backup" in (check_env_reference(workers, "ai_backup_api_key_env", "OPENAI_API_KEY") or "")
    assert check_env_reference(workers, "ai_model", "ADMIN_TOKEN") is None
