"""The two lexicon helpers migration 0034 rewrote as loops answer exactly as 0022's statements did:
search_expected_recent (the exact words' expected share of the newest posts, to the bit) and
search_similar_lexemes (the typo candidates: the same rows in the same order), on a lexicon folded
from hostile and ordinary words, for misspellings, hostile words and multi-word queries.

0022's definitions are read from its migration file and created under pg_temp, so the comparison is
with the text that was applied before, not with a copy of it."""

from __future__ import annotations

import random
import re
from importlib import resources
from typing import Any

import psycopg

from tests.workers.test_search_lexicon_fold import note, words
from tests.workers.test_search_lexicon_pending import fold

ORDINARY = ["ethereum", "etherium", "contract", "contracts", "bridge", "bridges", "staking", "stake", "gas", "wallet"]


def _0022() -> str:
    return resources.files("sql").joinpath("migrations", "0022_search_one_call.sql").read_text()


def old_definitions() -> list[str]:
    """0022's search_expected_recent and (pg_trgm absent) search_similar_lexemes, as pg_temp.old_*."""
    text = _0022()
    expected = re.search(r"CREATE OR REPLACE FUNCTION search_expected_recent\(.*?\n\$\$;", text, re.S)
    similar = re.search(r"EXECUTE \$f\$\n(.*?)\n  \$f\$;", text, re.S)
    assert expected and similar, "0022's definitions moved: update this test"
    return [
        expected[0].replace("FUNCTION search_expected_recent(", "FUNCTION pg_temp.old_expected_recent("),
        similar[1].replace("FUNCTION search_similar_lexemes(", "FUNCTION pg_temp.old_similar_lexemes("),
    ]


def queries(vocabulary: list[str]) -> list[str]:
    """Each ordinary word, one-letter typos of lexicon words, the hostile words, and multi-word queries."""
    rng = random.Random(34)
    typos = []
    for word in rng.sample(vocabulary, 60):
        at = rng.randrange(len(word))
        typos.append(word[:at] + rng.choice("abz") + word[at + 1 :])
    pairs = [" ".join(rng.sample(ORDINARY + typos, 3)) for _ in range(20)]
    return ORDINARY + typos + vocabulary[:40] + pairs + ["", "!!", "the of and", "café crème", "ETHEREUM Gas"]


def test_the_loops_answer_as_0022s_statements(migrated_url: str) -> None:
    vocabulary = words() + ORDINARY
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(  # every word gets its trigrams at once, as in a large lexicon's common words
            "CREATE OR REPLACE FUNCTION search_trigrams_wait_from() RETURNS bigint LANGUAGE sql IMMUTABLE "
            "AS $$ SELECT 0::bigint $$"
        )
        note(conn, {w: 1 + i % 60 for i, w in enumerate(vocabulary)})  # variants from ndoc 5 up (0014)
        fold(migrated_url, 2)
        for definition in old_definitions():
            conn.execute(definition)
        asked = queries(vocabulary)
        compared = _compare(conn, asked)
    assert compared["expected"] == len(asked)
    assert compared["similar"] == 3 * len(asked)
    assert compared["similar_found"] > len(asked) // 2, "too few words with candidates to compare"


def _compare(conn: psycopg.Connection[Any], asked: list[str]) -> dict[str, int]:
    counts = {"expected": 0, "similar": 0, "similar_found": 0}
    for q in asked:
        old, new = conn.execute(
            "SELECT pg_temp.old_expected_recent(%(q)s, 5000), search_expected_recent(%(q)s, 5000)", {"q": q}
        ).fetchone() or (None, None)
        assert old == new, (q, old, new)  # equal floats (or both NULL: no searchable word)
        counts["expected"] += 1
        for min_ndoc in (1, 5, 50):
            params = {"w": q, "m": min_ndoc}
            before = conn.execute("SELECT * FROM pg_temp.old_similar_lexemes(%(w)s, %(m)s)", params).fetchall()
            after = conn.execute("SELECT * FROM search_similar_lexemes(%(w)s, %(m)s)", params).fetchall()
            assert after == before, (q, min_ndoc)
            counts["similar"] += 1
            counts["similar_found"] += bool(after)
    return counts
