"""Where the social workers (farcaster, reddit) write: bulk, idempotent upserts into `external_posts`,
`profiles`, `follows` and `reactions`.

Rows are COPYed into session-private staging tables and moved into the real tables by one
`INSERT ... ON CONFLICT` per batch (statements in `sql/social.sql`), so a page of a thousand casts
costs a few round trips, not a thousand. When a batch is refused (a row Postgres will not take), it
is retried row by row, each in its own savepoint: the bad row is reported and skipped, the rest land.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg

from sql import query as _query
from workers.base import describe

#: Told about each row that could not be written: (a name for the row, what went wrong).
OnError = Callable[[str, str], None]

# The connection is gone: the whole cycle fails (and is retried), nothing is half-written.
_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


def query(name: str) -> str:
    return _query(name, "social.sql")


class PostRow(NamedTuple):
    """One `external_posts` row; `mentions`, `embeds` and `raw` are JSON text (see `to_json`)."""

    platform: str
    external_id: str
    author_external_id: str | None
    author_name: str | None
    title: str | None
    body: str
    url: str | None
    parent_external_id: str | None
    root_external_id: str | None
    channel: str | None
    mentions: str
    embeds: str
    score: int | None
    created_epoch: float  # unix seconds
    raw: str


class ProfileRow(NamedTuple):
    platform: str
    external_id: str
    username: str | None
    display_name: str | None
    bio: str | None
    avatar_url: str | None
    url: str | None
    raw: str


class FollowRow(NamedTuple):
    platform: str
    follower_id: str
    target_id: str
    created_epoch: float | None


class ReactionRow(NamedTuple):
    platform: str
    actor_id: str
    kind: str  # like | recast
    target_external_id: str
    created_epoch: float | None


def clean_text(value: str | None) -> str | None:
    """Postgres text cannot hold NUL characters; upstream text occasionally does."""
    return value.replace("\x00", "") if value and "\x00" in value else value


def to_json(value: Any) -> str:
    """JSON text for a jsonb column, without the `\\u0000` escape jsonb refuses."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\\u0000", "") if "\\u0000" in text else text


@dataclass(frozen=True)
class _Kind:
    """One table the store writes: its staging COPY, its upsert, and the key naming a row."""

    copy: str
    upsert: str
    key: Callable[[Any], tuple[Any, ...]]
    describe: Callable[[Any], str]


_POSTS = _Kind(
    "copy_posts", "upsert_posts", lambda r: (r.platform, r.external_id), lambda r: f"{r.platform} post {r.external_id}"
)
_PROFILES = _Kind(
    "copy_profiles",
    "upsert_profiles",
    lambda r: (r.platform, r.external_id),
    lambda r: f"{r.platform} profile {r.external_id}",
)
_FOLLOWS = _Kind(
    "copy_follows",
    "upsert_follows",
    lambda r: (r.platform, r.follower_id, r.target_id),
    lambda r: f"{r.platform} follow {r.follower_id} -> {r.target_id}",
)
_REACTIONS = _Kind(
    "copy_reactions",
    "upsert_reactions",
    lambda r: (r.platform, r.actor_id, r.kind, r.target_external_id),
    lambda r: f"{r.platform} {r.kind} by {r.actor_id} of {r.target_external_id}",
)


def _ignore(_key: str, _message: str) -> None:
    pass


class SocialStore:
    """The write path of the social workers. `prepare(conn)` once per cycle (outside a transaction),
    then `write_*` inside the worker's transaction; each returns the rows inserted or changed."""

    def __init__(self) -> None:
        self._prepared: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Create the session's staging tables, once per connection. Call it outside a transaction:
        a rollback would take the tables with it while this store still counted them as made."""
        if conn not in self._prepared:
            conn.execute(query("create_stages"))
            self._prepared.add(conn)

    def write_posts(self, tx: psycopg.Connection[Any], rows: Iterable[PostRow], on_error: OnError = _ignore) -> int:
        return self._write(tx, _POSTS, rows, on_error)

    def write_profiles(
        self, tx: psycopg.Connection[Any], rows: Iterable[ProfileRow], on_error: OnError = _ignore
    ) -> int:
        return self._write(tx, _PROFILES, rows, on_error)

    def write_follows(self, tx: psycopg.Connection[Any], rows: Iterable[FollowRow], on_error: OnError = _ignore) -> int:
        return self._write(tx, _FOLLOWS, rows, on_error)

    def write_reactions(
        self, tx: psycopg.Connection[Any], rows: Iterable[ReactionRow], on_error: OnError = _ignore
    ) -> int:
        return self._write(tx, _REACTIONS, rows, on_error)

    # ---- reads the workers need -------------------------------------------------------------

    def followed_ids(self, conn: psycopg.Connection[Any], platform: str, follower: str) -> list[str]:
        rows = conn.execute(query("followed_ids"), {"platform": platform, "follower": follower}).fetchall()
        return [row[0] for row in rows]

    def comment_counts(self, conn: psycopg.Connection[Any], platform: str, ids: Sequence[str]) -> dict[str, int | None]:
        """{post id: num_comments when last stored} for the posts already stored."""
        if not ids:
            return {}
        rows = conn.execute(query("comment_counts"), {"platform": platform, "ids": list(ids)}).fetchall()
        return {row[0]: row[1] for row in rows}

    # ---- the bulk path ----------------------------------------------------------------------------

    def _write(self, tx: psycopg.Connection[Any], kind: _Kind, rows: Iterable[Any], on_error: OnError) -> int:
        # One statement may not touch a row twice: the last version of a repeated key wins.
        unique = list({kind.key(row): row for row in rows}.values())
        if not unique:
            return 0
        try:
            with tx.transaction():
                return self._copy_upsert(tx, kind, unique)
        except _CONNECTION_ERRORS:
            raise
        except psycopg.Error as exc:
            if len(unique) == 1:
                on_error(kind.describe(unique[0]), describe(exc))
                return 0
        written = 0
        for row in unique:  # find the row(s) Postgres refused; keep the others
            try:
                with tx.transaction():
                    written += self._copy_upsert(tx, kind, [row])
            except _CONNECTION_ERRORS:
                raise
            except psycopg.Error as exc:
                on_error(kind.describe(row), describe(exc))
        return written

    def _copy_upsert(self, tx: psycopg.Connection[Any], kind: _Kind, rows: list[Any]) -> int:
        with tx.cursor() as cur:
            with cur.copy(query(kind.copy)) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(query(kind.upsert))
            return max(cur.rowcount, 0)
