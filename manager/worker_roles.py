"""Per-worker database roles: each stock worker connects as `wm_worker_<name>`, a role that reads
the schema and writes only its own tables (plus its heartbeat, cycle, error and cursor rows), so a
buggy or compromised worker cannot flip flags, rewrite the audit or touch another worker's data.

The manager creates or updates the roles at boot when its own database user may (superuser or
CREATEROLE; the embedded Postgres runs as a superuser) and hands each worker a DSN with its role in
the worker's environment. When it may not (a managed server whose user lacks CREATEROLE), or with
`database.worker_roles: off`, workers share the manager's user as before, and the boot log says so.

A role's password is derived from the manager's own password (HMAC), so several managers sharing
one database agree on it without storing it anywhere; with a passwordless manager user it is
random per boot. The embedded server trusts local connections, so there the roles guard against
mistakes, not against a hostile worker: a real server with password auth enforces both.

Workers run by `command:` or by a module this file does not know get no role: what they write is
unknown, so they keep the manager's user.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    from manager.config import Config, WorkerConfig

ROLE_PREFIX = "wm_worker_"

# Rows every worker writes about itself (the base class), whatever its module.
COMMON_WRITES = ("worker_heartbeats", "cycle_runs", "worker_errors", "sync_cursors")
_SOCIAL = ("external_posts", "profiles", "follows", "reactions", "social_listings", "wallets")
# Replicas (`replicas: N`) claim their items from these (workers/claims.py, migration 0015).
CLAIMS = ("work_queue", "work_feeds")
# The tables each stock module writes (sql/social.sql, chains.sql, ai.sql, search.sql).

MODULE_WRITES: dict[str, tuple[str, ...]] = {
    "workers.example": (),
    "workers.social.farcaster": _SOCIAL,
    "workers.social.reddit": _SOCIAL,
    "workers.evm": (
        "wallets",
        "evm_native_balances",
        "evm_tokens",
        "evm_token_balances",
        "evm_transactions",
        "evm_wallet_transactions",
        "evm_transfers",
        "evm_nfts",
        "ens_names",
    ),
    "workers.solana": (
        "wallets",
        "solana_balances",
        "solana_token_balances",
        "solana_transactions",
        "solana_wallet_transactions",
        "solana_nft_metadata",
    ),
    "workers.ai": (
        "ai_usage",
        "ai_embedding_cache",
        "ai_summary_cache",
        "ai_topics",
        "ai_posts",
        "ai_profiles",
        "ai_similar_posts",
        "ai_similar_profiles",
        *CLAIMS,
    ),
    "workers.search": (
        "search_posts",
        "search_posts_changes",  # counted by search_posts' trigger (migration 0025)
        "search_profiles",
        "post_tags",
        "search_lexemes",
        "search_lexeme_trigrams",
        "search_lexeme_pending",
        "search_lexeme_variants",
        *CLAIMS,
        "ai_embedding_cache",
    ),
}

# Managers booting together on one database take turns (this advisory lock, held until each role's
# transaction ends): three at once otherwise kept colliding on the same catalog rows until a retry
# budget ran out. Roles are server-wide, so managers of other databases on the same server can still
# meet; what they get when they create or alter the same role at the same moment is retried.
SERIALIZE = "SELECT pg_advisory_xact_lock(hashtext('wm_worker_roles'))"
RACES = (
    psycopg.errors.UniqueViolation,  # CREATE ROLE of a role another session just created
    psycopg.errors.DuplicateObject,
    psycopg.errors.InternalError_,  # "tuple concurrently updated" (ALTER ROLE, GRANT)
    psycopg.errors.SerializationFailure,
)
ATTEMPTS = 5
CAN_CREATE_ROLES = "SELECT rolsuper, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"


def role_name(worker: str) -> str:
    """`wm_worker_<name>`, folded to what an unquoted identifier may hold, within 63 bytes."""
    return (ROLE_PREFIX + re.sub(r"[^a-z0-9_]", "_", worker.lower()))[:63]


def writable_tables(spec: WorkerConfig) -> tuple[str, ...] | None:
    """The tables this worker may write, or None when its module is unknown (no role for it)."""
    if spec.command is not None or spec.module not in MODULE_WRITES:
        return None
    return COMMON_WRITES + MODULE_WRITES[spec.module]


def _password(manager_password: str | None, role: str) -> str:
    if not manager_password:
        return secrets.token_urlsafe(24)
    return hmac.new(manager_password.encode(), f"worker role {role}".encode(), hashlib.sha256).hexdigest()


def _grant(conn: psycopg.Connection, role: str, password: str, tables: tuple[str, ...], superuser: bool) -> None:
    ident = sql.Identifier(role)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
    # A superuser also strips powers a role of that name may have been given by hand; a CREATEROLE
    # user may not name those attributes at all (and cannot have granted them).
    powers = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS" if superuser else ""
    conn.execute(sql.SQL("ALTER ROLE {} LOGIN {} PASSWORD {}").format(ident, sql.SQL(powers), sql.Literal(password)))
    if not superuser:  # to see the role's sessions in pg_stat_activity (sync_read_horizon() needs it)
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident))
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(ident))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(ident))
    conn.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident))
    present = [t for t in tables if conn.execute("SELECT to_regclass(%s)", (f"public.{t}",)).fetchone()[0]]  # type: ignore[index]
    if present:
        conn.execute(
            sql.SQL("GRANT INSERT, UPDATE, DELETE ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in present), ident
            )
        )


def provision(
    conn: psycopg.Connection,
    database_url: str,
    workers: Mapping[str, WorkerConfig],
    refused: list[str] | None = None,
) -> dict[str, str] | None:
    """Create or update every known worker's role; returns worker name → its DSN, or None when
    this database user may not create roles. Runs in one transaction per worker, retried on a race
    with another manager (see RACES)."""
    row = conn.execute(CAN_CREATE_ROLES).fetchone()
    if not (row and row[1]):
        return None
    superuser = bool(row[0])
    if any(spec.module == "workers.ai" for spec in workers.values()):
        with conn.transaction():  # its tables must exist to be granted (no-op without pgvector)
            conn.execute(SERIALIZE)
            conn.execute("SELECT ai_install_schema()")
    params = conninfo_to_dict(database_url)
    manager_password = params.get("password")
    refused = [] if refused is None else refused  # roles this user may not manage, for the boot log
    urls: dict[str, str] = {}
    for name, spec in workers.items():
        tables = writable_tables(spec)
        if tables is None:
            continue
        role = role_name(name)
        password = _password(str(manager_password) if manager_password else None, role)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with conn.transaction():
                    conn.execute(SERIALIZE)
                    _grant(conn, role, password, tables, superuser)
                urls[name] = make_conninfo(database_url, user=role, password=password)
                break
            except psycopg.errors.InsufficientPrivilege:
                # a role of that name that this user may not manage (made by someone else): the
                # worker keeps the manager's user rather than the boot failing
                refused.append(role)
                break
            except RACES:
                if attempt == ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)
    return urls


def worker_database_urls(config: Config, database_url: str, say: Callable[[str], None]) -> dict[str, str]:
    """The boot step: roles per `database.worker_roles`, and a line in the log saying what happened."""
    if config.database.worker_roles == "off":
        return {}
    refused: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        urls = provision(conn, database_url, config.workers, refused)
    if refused:
        say(f"database: may not manage the roles {', '.join(refused)}: those workers connect as the manager's user")
    if urls is None:
        say(
            "database: this user may not create roles (CREATEROLE): workers connect as the manager's user;"
            " see README, 'Per-worker database roles'"
        )
        return {}
    if urls:
        say(f"database: {len(urls)} workers connect with their own roles ({ROLE_PREFIX}<name>)")
    return urls
