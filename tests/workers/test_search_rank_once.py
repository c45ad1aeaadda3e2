"""The ranked-every-match path of search_posts_top (`few`, migration 0027: each match ranked as it is
fetched, the window function buffering narrow rows) answers exactly what the naive ranked query
answers: ts_rank over every match, best first, newer first on equal rank, `exclude` left out."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from sql import queries_from
from tests.workers.test_search import index, seed

FEW = "SELECT post_id, rank FROM search_posts_top(%s::tsquery, false, false, %s, %s, 5000, %s, true)"
NEWEST = "SELECT post_id, rank FROM search_posts_top(%s::tsquery, false, false, %s, %s, 5000, %s, false)"
NAIVE = (
    "SELECT post_id, ts_rank(tsv, %(q)s::tsquery, 1) AS rank FROM search_posts"
    " WHERE tsv @@ %(q)s::tsquery AND post_id <> ALL (%(exclude)s::bigint[])"
    " ORDER BY rank DESC, created_at DESC LIMIT %(limit)s"
)
TSQUERIES = ("'ethereum'", "'gas' | 'fee'", "'ethereum' | 'eth':*", "'solana' & 'outage'", "'fee':* | 'vitalik'")


@pytest.fixture
def indexed(migrated_url: str) -> dict[str, int]:
    ids = seed(migrated_url)
    index(migrated_url)
    return ids


def _rows(conn: psycopg.Connection[Any], statement: str, params: Any) -> list[tuple[int, float]]:
    return [(int(post_id), float(rank)) for post_id, rank in conn.execute(statement, params)]


def test_every_match_ranked_is_the_naive_answer(migrated_url: str, indexed: dict[str, int]) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        for tsquery in TSQUERIES:
            for limit, exclude in ((20, []), (2, []), (1, [indexed["0x03"]]), (3, [indexed["0x01"], indexed["t3_07"]])):
                naive = _rows(conn, NAIVE, {"q": tsquery, "limit": limit, "exclude": exclude})
                assert naive or tsquery == "'solana' & 'outage'" or exclude, tsquery  # the corpus has matches
                assert _rows(conn, FEW, (tsquery, limit, exclude, 100)) == naive, (tsquery, limit, exclude)
        # ranked best first: the post saying ethereum three times before the long post mentioning it once
        ranked = [post_id for post_id, _ in _rows(conn, FEW, ("'ethereum'", 20, [], 100))]
        assert ranked.index(indexed["0x03"]) < ranked.index(indexed["0x02"])


def test_more_matches_than_the_window_rank_the_newest(migrated_url: str, indexed: dict[str, int]) -> None:
    """When the lexicon's estimate was wrong (more matches than the window), the answer is the
    newest window's, as without `few`: five posts say ethereum, a window of 3 ranks the 3 newest."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        few = _rows(conn, FEW, ("'ethereum'", 20, [], 3))
        assert few == _rows(conn, NEWEST, ("'ethereum'", 20, [], 3))
        assert {post_id for post_id, _ in few} == {indexed["0x03"], indexed["t3_07"], indexed["0x08"]}


def test_the_benchs_widened_naive_ranks_the_query_ours_widened(migrated_url: str, indexed: dict[str, int]) -> None:
    """bench/search.py's naive+widening baseline (search_posts_naive_widened) widens what was typed as
    ours does and then answers as the naive query over that widened query: the same posts, ranks and
    highlights, in one statement."""
    statements = queries_from("search.sql")
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        for typed in ("etherium", "ethereum", "gas fe", "vitalk"):
            widened = conn.execute("SELECT search_query(%s, true)::text", (typed,)).fetchone()
            assert widened is not None
            naive = conn.execute(statements["search_posts_naive"], {"q": widened[0], "limit": 20}).fetchall()
            assert naive, typed  # each finds posts once widened
            both = conn.execute(statements["search_posts_naive_widened"], {"typed": typed, "limit": 20}).fetchall()
            assert both == naive, typed
