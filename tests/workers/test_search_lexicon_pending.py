"""The typo lexicon's pending counts, one row per indexed batch and bucket of lexemes (migration 0030).

Every count noted is folded exactly once, whether the fold runs in one part or in several parts at
once on connections of their own (each takes the buckets of its part, and only those), and the
counts of a batch still being indexed while a fold runs wait for the next fold."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import psycopg

from sql import query
from tests.workers.test_search import seed_many
from workers.search.worker import STREAMS, run_statements

SHAPE = re.compile(r"[a-z][a-z0-9]{2,31}")  # the lexemes the fold keeps (migration 0014)


def reference(conn: psycopg.Connection[Any], ids: list[int]) -> Counter[str]:
    """ndoc by lexeme for posts indexed once each: the number of their documents holding it."""
    counts: Counter[str] = Counter()
    for (words,) in conn.execute("SELECT tsvector_to_array(tsv) FROM search_posts WHERE post_id = ANY(%s)", (ids,)):
        counts.update(word for word in words if SHAPE.fullmatch(word))
    return counts


def lexicon(conn: psycopg.Connection[Any]) -> Counter[str]:
    return Counter(dict(conn.execute("SELECT lexeme, ndoc FROM search_lexemes").fetchall()))


def fold(url: str, parts: int) -> None:
    """Every part on its own connection, all open at once (a part waiting for another would hang)."""
    conns = [psycopg.connect(url, options="-c statement_timeout=10s") for _ in range(parts)]
    try:
        for part, conn in enumerate(conns):
            conn.execute(query("fold_lexemes", "search.sql"), {"part": part, "parts": parts})
        for conn in conns:
            conn.commit()
    finally:
        for conn in conns:
            conn.close()


def test_each_noted_count_is_folded_once_by_parts_at_once(migrated_url: str) -> None:
    seed_many(migrated_url, 300)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM external_posts ORDER BY id")]
        for start in range(0, len(ids), 100):
            with conn.transaction():
                run_statements(conn, STREAMS["posts"][1], ids[start : start + 100])
        rows, misplaced, uneven = conn.execute(
            "SELECT count(*), "
            "       (SELECT count(*) FROM search_lexeme_pending p, unnest(p.lexemes) AS l "
            "         WHERE search_lexeme_bucket(l) <> p.bucket), "
            "       count(*) FILTER (WHERE cardinality(lexemes) <> cardinality(ndocs) "
            "                         OR cardinality(lexemes) <> (SELECT count(DISTINCT l) FROM unnest(lexemes) AS l)) "
            "FROM search_lexeme_pending"
        ).fetchone() or (0, 0, 0)
        assert 3 <= rows <= 3 * 8 and misplaced == 0 and uneven == 0  # a row per batch and bucket
        fold(migrated_url, 3)  # 8 buckets over 3 parts: 3, 3 and 2
        assert conn.execute("SELECT count(*) FROM search_lexeme_pending").fetchone() == (0,)
        assert lexicon(conn) == reference(conn, ids) != Counter()


def test_a_batch_indexed_during_a_fold_waits_for_the_next_fold(migrated_url: str) -> None:
    seed_many(migrated_url, 200)
    with psycopg.connect(migrated_url, autocommit=True) as conn, psycopg.connect(migrated_url) as noting:
        ids = [row[0] for row in conn.execute("SELECT id FROM external_posts ORDER BY id")]
        with conn.transaction():
            run_statements(conn, STREAMS["posts"][1], ids[:100])
        run_statements(noting, STREAMS["posts"][1], ids[100:])  # not committed while the fold runs
        fold(migrated_url, 2)
        noting.commit()
        assert lexicon(conn) == reference(conn, ids[:100])
        assert conn.execute("SELECT count(*) > 0 FROM search_lexeme_pending").fetchone() == (True,)
        fold(migrated_url, 1)
        assert lexicon(conn) == reference(conn, ids)
