"""The project's SQL, kept in `.sql` files: numbered migrations and named queries.

`queries.sql` holds the statements the Python code runs, each introduced by `-- name: <name>`
and a description line, so a reviewer can read every statement in one place.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import psycopg

_MIGRATIONS_LOCK_ID = 7_331_001  # pg_advisory_lock key: one migrator at a time across processes


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


def migrations() -> list[Migration]:
    """All migrations in `sql/migrations/`, ordered by their numeric prefix."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(match[1], match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


@cache
def queries_from(filename: str) -> dict[str, str]:
    """Named queries (`-- name: <name>`, a description line, the statement) from a `.sql` file of
    this package, keyed by name. `queries.sql` is one such file; workers may keep their own."""
    text = resources.files(__package__).joinpath(filename).read_text()
    named: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        lines = [line for line in body.splitlines() if not line.startswith("--")]
        named[name.strip()] = "\n".join(lines).strip().rstrip(";")
    return named


def queries() -> dict[str, str]:
    """Named queries from `queries.sql`, keyed by name."""
    return queries_from("queries.sql")


def query(name: str, source: str = "queries.sql") -> str:
    """The SQL text of one named query from `source` (a `.sql` file of this package); a KeyError
    names the missing query. The one way code reads SQL: `query("heartbeat")`,
    `query("fresh_tokens", "chains.sql")`."""
    try:
        return queries_from(source)[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/{source}") from None


class MigrationChanged(RuntimeError):
    """An applied migration's file no longer matches what was applied."""


def _check_unchanged(migration: Migration, recorded: str) -> None:
    """Refuse to run on a schema built from a different version of an applied migration: the
    database would silently lack what the edited file now says."""
    if recorded != migration.checksum:
        raise MigrationChanged(
            f"migration {migration.version}_{migration.name}.sql was changed after it was applied "
            f"(recorded checksum {recorded}, file now {migration.checksum}); restore the file and put "
            "the change in a new migration"
        )


def apply_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply the migrations not yet recorded; returns the versions applied.

    Safe to run from several processes at once (an advisory lock serialises them) and on every
    boot (applied versions are skipped, after checking that their files are unchanged: a changed
    one raises MigrationChanged). Each migration runs in its own transaction.
    """
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATIONS_LOCK_ID,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        applied = []
        for migration in migrations():
            if migration.version in done:
                _check_unchanged(migration, done[migration.version])
                continue
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            applied.append(f"{migration.version}_{migration.name}")
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATIONS_LOCK_ID,))
