"""The lexicon fold (migration 0032) against the definitions it must keep: the lexemes of the shape
'^[a-z][a-z0-9]{2,31}$', ntrigrams and trigram rows as search_trigrams(), variants as search_deletes(),
on hostile words (repeated letters and trigrams, lengths at the bounds, non-ASCII, digits first), folded
in two parts at once and then again on the lexicon they built."""

from __future__ import annotations

import random
from typing import Any

import psycopg

from tests.workers.test_search_lexicon_pending import fold

HOSTILE = [
    "ab", "abc", "a" * 32, "a" * 33, "b" + "a" * 31, "1abc", "Abc", "café", "ééé", "naïve", "ab_c", "ab-c",
    "abc\n", " abc", "aaaa", "aaaaaaa", "abababab", "abcabcabc", "mississippi", "bookkeeper", "aabbaabb",
    "a1a1a1a1", "zz9z9z9", "abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz0123456",
]  # fmt: skip

# Every lexeme against its definitions; a row for each one that differs.
MISMATCHES = """
SELECT l.lexeme, l.ndoc, l.ntrigrams,
       ARRAY(SELECT t.trigram FROM search_lexeme_trigrams t WHERE t.lexeme_id = l.id ORDER BY 1),
       ARRAY(SELECT v.variant FROM search_lexeme_variants v WHERE v.lexeme_id = l.id ORDER BY 1)
FROM search_lexemes l
WHERE l.ntrigrams <> CASE WHEN l.ndoc >= 2 THEN cardinality(search_trigrams(l.lexeme)) ELSE 0 END
   OR ARRAY(SELECT t.trigram FROM search_lexeme_trigrams t WHERE t.lexeme_id = l.id ORDER BY 1)
      <> ARRAY(SELECT w FROM unnest(search_trigrams(l.lexeme)) AS w WHERE l.ndoc >= 2 ORDER BY 1)
   OR ARRAY(SELECT v.variant FROM search_lexeme_variants v WHERE v.lexeme_id = l.id ORDER BY 1)
      <> ARRAY(SELECT w FROM unnest(search_deletes(l.lexeme)) AS w WHERE l.ndoc >= search_variant_min_ndoc() ORDER BY 1)
"""


def words() -> list[str]:
    """The hostile words and random ones from a small alphabet: ~60 of the shape, most with runs and
    repeated trigrams, the others with non-ASCII letters, '_', a digit first or a length out of bounds."""
    rng = random.Random(15)
    randoms = {"".join(rng.choice("aab1" * 4 + "é_") for _ in range(rng.randint(1, 35))) for _ in range(400)}
    return HOSTILE + sorted(randoms - set(HOSTILE))


def note(conn: psycopg.Connection[Any], counts: dict[str, int]) -> None:
    conn.execute(
        "INSERT INTO search_lexeme_pending (bucket, lexemes, ndocs) "
        "SELECT search_lexeme_bucket(w), array_agg(w), array_agg(n) FROM unnest(%s::text[], %s::int[]) AS c (w, n) "
        "GROUP BY 1",
        (list(counts), list(counts.values())),
    )


def test_the_fold_keeps_the_shape_trigrams_and_deletions(migrated_url: str) -> None:
    vocabulary = words()
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(  # one-off words wait for their trigrams, as in a large lexicon
            "CREATE OR REPLACE FUNCTION search_trigrams_wait_from() RETURNS bigint LANGUAGE sql IMMUTABLE "
            "AS $$ SELECT 0::bigint $$"
        )
        first = {w: 1 + i % 3 for i, w in enumerate(vocabulary)}  # 1: waits, 2: trigrams, 3: and variants
        note(conn, first)
        fold(migrated_url, 2)
        shaped = {
            w
            for (w,) in conn.execute(
                "SELECT w FROM unnest(%s::text[]) AS w WHERE w ~ '^[a-z][a-z0-9]{2,31}$'", (vocabulary,)
            )
        }
        assert dict(conn.execute("SELECT lexeme, ndoc FROM search_lexemes").fetchall()) == {w: first[w] for w in shaped}
        assert {len(w) for w in shaped} >= {3, 32} and any(first[w] == 3 for w in shaped)
        assert conn.execute(MISMATCHES).fetchall() == []

        note(conn, dict.fromkeys(vocabulary, 1))  # waiting words get their trigrams, 2s their variants
        fold(migrated_url, 1)
        assert dict(conn.execute("SELECT lexeme, ndoc FROM search_lexemes").fetchall()) == {
            w: first[w] + 1 for w in shaped
        }
        assert conn.execute(MISMATCHES).fetchall() == []
        assert conn.execute("SELECT count(*) FROM search_lexeme_pending").fetchone() == (0,)
