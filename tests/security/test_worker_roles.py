"""Per-worker database roles: a worker's connection writes its own tables and nothing else; the
manager hands each stock worker its own role, and falls back to its own user when it may not
create roles."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import sql
from manager.config import WorkerConfig
from manager.worker_roles import provision, role_name
from sql import apply_migrations
from tests.support.manager import example_worker
from tests.support.waiting import wait_for

FLEET = {
    "farcaster": WorkerConfig.model_validate({"module": "workers.social.farcaster"}),
    "search": WorkerConfig.model_validate({"module": "workers.search"}),
    "ethereum": WorkerConfig.model_validate({"module": "workers.evm"}),
    "script": WorkerConfig.model_validate({"command": ["true"], "heartbeat": False}),
}

DENIED = [
    ("UPDATE feature_flags SET enabled = false", "feature_flags"),
    ("INSERT INTO feature_flags (flag_name, enabled) VALUES ('x_enabled', false)", "feature_flags"),
    ("UPDATE config_audit SET new_value = 'null'", "config_audit"),
    ("DELETE FROM config_audit", "config_audit"),
    ("INSERT INTO settings (key, value) VALUES ('farcaster_hub_url', '\"http://evil\"')", "settings"),
    ("INSERT INTO evm_tokens (chain, address, standard) VALUES ('ethereum', '0x1', 'erc20')", "evm_tokens"),
    ("DELETE FROM evm_transactions", "evm_transactions"),
    ("INSERT INTO supervision_events (worker_name, event) VALUES ('farcaster', 'started')", "supervision_events"),
    ("CREATE TABLE sneaky (x int)", "schema public"),
]


@pytest.fixture
def urls(migrated_url: str) -> dict[str, str]:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        granted = provision(conn, migrated_url, FLEET)
    assert granted is not None, "the test server's user is a superuser: it may create roles"
    return granted


@pytest.mark.parametrize(("statement", "table"), DENIED)
def test_a_worker_role_cannot_touch_flags_audit_or_other_workers_tables(urls, statement, table):
    with psycopg.connect(urls["farcaster"]) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
        conn.execute(statement)
    assert f"permission denied for {'table ' if ' ' not in table else ''}{table}" in str(denied.value)


def test_a_worker_role_does_its_job(urls):
    with psycopg.connect(urls["farcaster"]) as conn:
        assert conninfo_to_dict(urls["farcaster"])["user"] == role_name("farcaster") == "wm_worker_farcaster"
        conn.execute(
            "INSERT INTO external_posts (platform, external_id, body, created_at) VALUES ('farcaster', '0xab', 'gm', now())"
        )
        conn.execute("INSERT INTO sync_cursors (worker_name, cursor_key, value) VALUES ('farcaster', 'k', '1')")
        conn.execute("CREATE TEMP TABLE stage_posts (LIKE external_posts)")  # the social upserts stage rows
        assert conn.execute("SELECT enabled FROM feature_flags").fetchall() is not None  # flags are read
    with psycopg.connect(urls["search"]) as conn:  # indexing also counts the change (search_posts' trigger, 0025)
        conn.execute(
            "INSERT INTO search_posts (post_id, created_at, source_updated_at, tsv) "
            "SELECT id, created_at, updated_at, to_tsvector('english', body) FROM external_posts"
        )
    with psycopg.connect(urls["ethereum"]) as conn:
        conn.execute("INSERT INTO evm_tokens (chain, address, standard) VALUES ('ethereum', '0x1', 'erc20')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM external_posts")  # the other worker's table
    assert "script" not in urls  # a command's writes are unknown: it keeps the manager's user


def test_a_worker_role_sees_other_roles_writers_in_the_read_horizon(urls):
    """search reads rows up to sync_read_horizon(): the start of the oldest open transaction. A
    role sees only its own sessions in pg_stat_activity, so without the function running as its
    owner the search worker would miss farcaster's open transaction and skip its late commit."""
    with psycopg.connect(urls["farcaster"]) as writer, psycopg.connect(urls["search"]) as reader:
        (started,) = writer.execute("SELECT now()").fetchone()  # opens the writer's transaction
        (horizon,) = reader.execute("SELECT sync_read_horizon()").fetchone()
        assert horizon <= started


def test_a_manager_with_createrole_but_not_superuser_gets_the_same_separation(urls, pg_admin_url):
    """An external server's usual set-up: the manager owns its database and may create roles."""
    suffix = uuid.uuid4().hex[:8]
    manager, dbname = f"wm_mgr_{suffix}", f"t_mgr_{suffix}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {manager} LOGIN CREATEROLE PASSWORD 'pw'")
        admin.execute(f"CREATE DATABASE {dbname} OWNER {manager}")
    try:
        with psycopg.connect(make_conninfo(pg_admin_url, dbname=dbname), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION vector")  # not a trusted extension: the DBA installs it
        url = make_conninfo(pg_admin_url, dbname=dbname, user=manager, password="pw")
        # names of their own: roles are server-wide, and the other tests' roles are the superuser's
        fleet = {f"{name}{suffix}": spec for name, spec in FLEET.items()}
        with psycopg.connect(url, autocommit=True) as conn:
            apply_migrations(conn)
            refused: list[str] = []
            assert provision(conn, url, {"farcaster": FLEET["farcaster"]}, refused) == {}
            assert refused == ["wm_worker_farcaster"]  # made by the superuser before: not this user's to alter
            urls = provision(conn, url, fleet)
            assert urls is not None and set(urls) == {f"farcaster{suffix}", f"search{suffix}", f"ethereum{suffix}"}
        with (
            psycopg.connect(urls[f"farcaster{suffix}"]) as writer,
            psycopg.connect(urls[f"search{suffix}"]) as reader,
        ):
            (started,) = writer.execute("SELECT now()").fetchone()
            assert reader.execute("SELECT sync_read_horizon()").fetchone()[0] <= started
            writer.rollback()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.execute("UPDATE feature_flags SET enabled = false")
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            admin.execute(f"DROP ROLE {manager}")


def test_without_createrole_workers_share_the_managers_user(migrated_url):
    plain = f"wm_plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(migrated_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {plain} LOGIN PASSWORD 'x'")
        admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {plain}")
    try:
        as_plain = make_conninfo(migrated_url, user=plain, password="x")
        with psycopg.connect(as_plain, autocommit=True) as conn:
            assert provision(conn, as_plain, FLEET) is None
    finally:
        with psycopg.connect(migrated_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {plain}")
            admin.execute(f"DROP ROLE {plain}")


def test_the_manager_runs_each_worker_as_its_own_role(boot_manager):
    m = boot_manager({"rolecounter": example_worker()})
    m.wait_worker("rolecounter", lambda w: w["healthy"] and w["itemsProcessed"] > 0, timeout=30)

    def worker_backends() -> list[tuple[str, str]]:
        return m.sql(
            "SELECT DISTINCT usename::text, application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND usename::text LIKE 'wm_worker_%%'"
        )

    backends = wait_for(worker_backends, 10, 0.1, "the worker's connections")
    assert {user for user, _ in backends} == {"wm_worker_rolecounter"}
    assert "workers connect with their own roles" in m.output()


def test_functions_that_act_for_workers_keep_owner_rights_after_every_migration(migrated_url):
    """The few functions a worker role calls to do what it may not do itself (install its schema,
    check its lease) run with their owner's rights. `CREATE OR REPLACE` in a later migration silently
    resets that (it happened once, in 0018), so every function any migration made SECURITY DEFINER
    must still be one, with a fixed search_path, once all migrations have run."""
    declared = {
        name
        for path in sorted((Path(sql.__file__).parent / "migrations").glob("*.sql"))
        for name in re.findall(r"ALTER FUNCTION (\w+)\([^)]*\) SECURITY DEFINER", path.read_text())
    }
    assert {"check_worker_lease", "ai_install_schema"} <= declared
    with psycopg.connect(migrated_url) as conn:
        rows = conn.execute(
            "SELECT proname, prosecdef, proconfig FROM pg_proc WHERE proname = ANY(%s)", (sorted(declared),)
        ).fetchall()
    assert {name for name, _, _ in rows} == declared
    lost = [name for name, definer, _ in rows if not definer]
    assert not lost, f"no longer SECURITY DEFINER after the migrations: {lost}"
    unpinned = [name for name, _, config in rows if not any(c.startswith("search_path=") for c in config or [])]
    assert not unpinned, f"SECURITY DEFINER without a fixed search_path: {unpinned}"
