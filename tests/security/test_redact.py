"""Masking by structure and scrubbing by knowledge (workers/redact.py), and the audit trigger's
SQL mirror of the same rules (sql/migrations/0011_secret_masking.sql)."""

from __future__ import annotations

import base64
from urllib.parse import quote

import psycopg
import pytest
from psycopg.types.json import Jsonb

from workers.redact import MASK, SecretScrubber, is_secret_key, mask_secrets, redact_text, redact_url

URLS = [
    ("https://eth-mainnet.example/v2/AbCdEf0123456789xyzQ", "https://eth-mainnet.example/v2/***"),
    ("https://rpc.example/solana?api-key=k3y&cluster=main", "https://rpc.example/solana?api-key=***&cluster=***"),
    ("postgresql://app:pa#ss?w/rd@db.example:5432/app", "postgresql://app:***@db.example:5432/app"),
    ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
    ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
    ("https://hub.example/v1/casts", "https://hub.example/v1/casts"),
    ("https://h/p#token-in-fragment", "https://h/p#***"),
]


@pytest.mark.parametrize(("url", "masked"), URLS)
def test_urls_are_masked_by_structure(url, masked):
    assert redact_url(url) == masked
    assert redact_text(f"calling {url} now") == f"calling {masked} now"


def test_key_value_dsn_and_text_pairs():
    assert redact_text("host=db port=5432 password=s3cr#t dbname=app") == "host=db port=5432 password=*** dbname=app"
    assert redact_text("password='a b c' user=x") == "password=*** user=x"
    assert redact_text("api_key: abc123 max_tokens=5") == "api_key: *** max_tokens=5"


@pytest.mark.parametrize(
    "key", ["api_key", "apiKey", "clientSecret", "db_password", "auth_token", "credentials", "OPENAI_API_KEY", "dsn"]
)
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["ai_max_tokens", "oauth_url", "ai_api_key_env", "password_file", "tokens_per_minute", "bypass", "author"]
)
def test_harmless_keys(key):
    assert not is_secret_key(key)


def test_nested_values_under_secret_keys_are_all_masked():
    value = {
        "credentials": {"user": "u", "inner": {"x": "deep"}, "list": ["a", 1]},
        "ai_max_tokens": 512,
        "oauth_url": "https://auth.example/oauth",
        "ai_api_key_env": "OPENAI_API_KEY",
        "empty_password": "",
        "rpc": ["https://x.example/v3/0123456789abcdef0123"],
    }
    assert mask_secrets(value) == {
        "credentials": {"user": MASK, "inner": {"x": MASK}, "list": [MASK, MASK]},
        "ai_max_tokens": 512,
        "oauth_url": "https://auth.example/oauth",
        "ai_api_key_env": "OPENAI_API_KEY",
        "empty_password": "",
        "rpc": ["https://x.example/v3/***"],
    }


def test_scrubber_finds_known_secrets_in_encoded_forms():
    secret = "sentinel-S3cr3t/+value"
    scrub = SecretScrubber.from_environment({"SOME_TOKEN": secret, "HOME": "/root"})
    texts = [
        f"plain {secret} end",
        f"urlencoded {quote(secret, safe='')} end",
        f"basic {base64.b64encode(f'user:{secret}'.encode()).decode()} end",
        f"urlsafe {base64.urlsafe_b64encode(f'ab{secret}'.encode()).decode()} end",
    ]
    for text in texts:
        out = scrub(text)
        assert secret not in out and quote(secret, safe="") not in out and MASK in out, out
    assert scrub("HOME is /root") == "HOME is /root"


def test_scrubber_learns_secrets_from_urls_in_env_and_config():
    env = {"ETH_RPC": "https://rpc.example/v2/PathKey0123456789abc", "DATABASE_URL": "postgresql://u:Db#Pass9@h/db"}
    config = {"workers": {"sol": {"rpc_url": "https://sol.example/?api-key=QueryKey42"}}}
    scrub = SecretScrubber.from_environment(env, config)
    out = scrub("errors: PathKey0123456789abc, Db#Pass9 and QueryKey42")
    assert out == "errors: ***, *** and ***"


CASES = [
    ("ai_api_key", "sk-1"),
    ("ai_max_tokens", 5),
    ("oauth_url", "https://auth.example/oauth?client_id=abc"),
    ("ai_base_url", "https://user:pw@api.example/v2/AbCdEf0123456789xyzQ?k=v"),
    ("reddit", {"credentials": {"user": "u"}, "limit": 3, "clientSecret": "x"}),
    ("evm_dsn", "host=x password=y"),
    ("notes", "connect with password=hunter2 please"),
    ("list", ["https://h/p?a=1", 2, None]),
]


def test_sql_mask_matches_python(migrated_url):
    """The audit trigger masks like the API does, so the stored trail holds no secret either."""
    with psycopg.connect(migrated_url) as conn:
        for key, value in CASES:
            got = conn.execute("SELECT mask_secret_json(%s, %s)", (key, Jsonb(value))).fetchone()
            assert got is not None and got[0] == mask_secrets(value, key), (key, value)
