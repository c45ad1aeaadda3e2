"""The tag extraction of migration 0031 finds exactly the tags of the one it replaced (0014), on
generated hostile text: tags running past their length limit, tags back to back, the characters
that may or may not stand before a tag, unicode letters, links and mentions lists."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import psycopg

MIGRATION_0014 = Path(__file__).parents[2] / "sql" / "migrations" / "0014_pipeline_throughput.sql"
PIECES = ["#", "@", "$", "u/", "/", ".", "-", "_", "&", " ", " ", " ", "\n", "é", "ß", "Ω", "x", "7"]
WORDS = ["eth", "ETH", "vitalik.eth", "dwr", "a-b", "a.", "sol_2", "x" * 70, "y" * 63 + "-", "z" * 64 + ".q"]
LINKS = ["https://www.Zora.co/x", "http://a.b-c.io", "https://x.y.z9", "https://localhost", "see http://ok.xyz."]


def _old_function() -> str:
    """0014's search_post_tags, renamed: the reference the new one must agree with."""
    text = MIGRATION_0014.read_text()
    match = re.search(r"CREATE OR REPLACE FUNCTION search_post_tags\(.*?\n\$\$;", text, re.S)
    assert match, "0014 defines search_post_tags"
    return match[0].replace("FUNCTION search_post_tags(", "FUNCTION search_post_tags_0014(", 1)


def _hostile_text(rnd: random.Random) -> str:
    parts = []
    for _ in range(rnd.randint(1, 24)):
        roll = rnd.random()
        if roll < 0.45:
            parts.append(rnd.choice(PIECES))
        elif roll < 0.9:
            parts.append(rnd.choice(WORDS))
        else:
            parts.append(rnd.choice(LINKS))
    return "".join(parts)


def _mentions(rnd: random.Random) -> str:
    return json.dumps(
        rnd.choice([[], [], [{"username": "Dwr"}], [{"fid": 3}, "plain"], {"not": "a list"}, [{"username": ""}]])
    )


def test_the_same_tags_as_before_on_hostile_text(migrated_url: str) -> None:
    rnd = random.Random(31)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(_old_function())
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO external_posts (platform, external_id, title, body, url, embeds, mentions, created_at)"
                " VALUES ('farcaster', %s, %s, %s, %s, %s, %s, now())",
                [
                    (
                        f"0xtag{i}",
                        _hostile_text(rnd) if i % 3 == 0 else None,
                        _hostile_text(rnd),
                        rnd.choice([None, *LINKS]),
                        json.dumps([{"url": rnd.choice(LINKS)}] if i % 4 == 0 else []),
                        _mentions(rnd),
                    )
                    for i in range(3000)
                ],
            )
        ids = [row[0] for row in conn.execute("SELECT id FROM external_posts WHERE external_id LIKE '0xtag%'")]
        old = set(conn.execute("SELECT * FROM search_post_tags_0014(%s)", (ids,)).fetchall())
        new = set(conn.execute("SELECT * FROM search_post_tags(%s)", (ids,)).fetchall())
    assert new == old
    kinds = {kind for kind, *_ in old}
    assert kinds == {"hashtag", "cashtag", "mention", "domain"}  # the corpus exercises every kind
    # and the limits: a 64-character hashtag cut from a longer one, a mention cut before its trailing '-'
    assert ("hashtag", "x" * 64) in {(k, t) for k, t, *_ in old}
    assert any(k == "mention" and t == "y" * 63 for k, t, *_ in old)
