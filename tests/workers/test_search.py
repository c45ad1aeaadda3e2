"""The search worker's indexes and the searches over them, on a real Postgres (no pg_trgm here)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from sql import queries_from
from workers.search import SearchWorker
from workers.search.query import Search, parse_tags

POSTS = [  # (external_id, title, body, minutes ago)
    ("0x01", None, "Ethereum gas fees are brutal today #ethereum $ETH https://etherscan.io/tx/1", 90),
    (
        "0x02",
        None,
        "Vitalik wrote a long post about scaling, rollups, blobs, data availability and, at the end, "
        "a short note on ethereum",
        80,
    ),
    ("0x03", None, "ethereum ethereum ethereum: the merge, staking and gas", 70),
    ("0x04", None, "Solana validators restarted after the outage #solana $SOL", 60),
    ("0x05", None, "My cat chased a kitten around the garden", 50),
    ("0x06", None, "gm frens, who is minting the new NFT on https://zora.co/collect? cc @dwr.eth", 40),
    ("t3_07", "Ethereum roadmap", "What comes after the surge", 30),
    ("0x08", None, "Base fees stay tiny compared to ethereum mainnet", 20),
]
PROFILES = [
    ("3", "dwr.eth", "Dan Romero", "Working on Farcaster"),
    ("5650", "vitalik.eth", "Vitalik Buterin", "Ethereum researcher"),
]


def seed(url: str) -> dict[str, int]:
    ids = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for external_id, title, body, minutes in POSTS:
            platform = "reddit" if external_id.startswith("t3_") else "farcaster"
            row = conn.execute(
                "INSERT INTO external_posts (platform, external_id, author_name, title, body, created_at) "
                "VALUES (%s, %s, 'someone', %s, %s, now() - make_interval(mins => %s)) RETURNING id",
                (platform, external_id, title, body, minutes),
            ).fetchone()
            assert row is not None
            ids[external_id] = row[0]
        for external_id, username, name, bio in PROFILES:
            conn.execute(
                "INSERT INTO profiles (platform, external_id, username, display_name, bio) "
                "VALUES ('farcaster', %s, %s, %s, %s)",
                (external_id, username, name, bio),
            )
    return ids


def index(url: str, **config: Any) -> int:
    worker = SearchWorker(name="search", config=config, database_url=url)
    try:
        return worker.run_cycle().items
    finally:
        worker.close()  # its lanes' connections
        for conn in (worker._data, worker._control):
            if conn is not None:
                conn.close()


async def search(url: str, q: str, **kwargs: Any) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await Search(conn, q, **kwargs).run()


def ids_of(answer: dict[str, Any]) -> list[int]:
    return [r["id"] for r in answer["results"]]


@pytest.fixture
def corpus(migrated_url: str) -> dict[str, int]:
    ids = seed(migrated_url)
    assert index(migrated_url) == len(POSTS) + len(PROFILES)
    return ids


def test_tags_are_parsed_from_the_query() -> None:
    tags, rest = parse_tags("#ETH $sol @dwr.eth site:www.Zora.co github.com gas fees")
    assert [(t.kind, t.tag) for t in tags] == [
        ("hashtag", "eth"),
        ("cashtag", "sol"),
        ("mention", "dwr.eth"),
        ("domain", "zora.co"),
        ("domain", "github.com"),
    ]
    assert rest == "gas fees"


async def test_finds_by_words_ranked_with_highlights(migrated_url: str, corpus: dict[str, int]) -> None:
    answer = await search(migrated_url, "gas fees")
    assert ids_of(answer) == [corpus["0x01"]]  # the only post with both words
    assert "<mark>gas</mark>" in answer["results"][0]["headline"].lower()
    assert all(r["matchedBy"] == "text" for r in answer["results"])

    ranked = ids_of(await search(migrated_url, "ethereum", mode="text"))
    assert set(ranked) == {corpus[k] for k in ("0x01", "0x02", "0x03", "t3_07", "0x08")}
    # the title match and the post about little else outrank a passing mention at the end of a long post
    assert ranked.index(corpus["t3_07"]) < ranked.index(corpus["0x02"])
    assert ranked.index(corpus["0x03"]) < ranked.index(corpus["0x02"])


async def test_finds_by_prefix_and_by_misspelling(migrated_url: str, corpus: dict[str, int]) -> None:
    prefix = await search(migrated_url, "vita")
    assert ids_of(prefix) == [corpus["0x02"]]
    assert prefix["results"][0]["matchedBy"] == "fuzzy"

    typo = await search(migrated_url, "etherium")
    assert "'ethereum'" in typo["widenedQuery"]
    assert set(ids_of(typo)) >= {corpus["0x01"], corpus["0x03"], corpus["t3_07"]}
    assert "<mark>" in typo["results"][0]["headline"]

    two = await search(migrated_url, "solanna validaters")
    assert ids_of(two) == [corpus["0x04"]]

    assert (await search(migrated_url, "etherium", mode="text"))["results"] == []  # text mode: no widening


async def test_finds_by_tag(migrated_url: str, corpus: dict[str, int]) -> None:
    for q, key in (
        ("#ethereum", "0x01"),
        ("$ETH", "0x01"),
        ("$sol", "0x04"),
        ("@dwr.eth", "0x06"),
        ("zora.co", "0x06"),
        ("domain:etherscan.io", "0x01"),
    ):
        answer = await search(migrated_url, q, mode="tag")
        assert ids_of(answer) == [corpus[key]], q
        assert answer["results"][0]["matchedBy"] == "tag"
    # auto: the tagged post first, then posts that merely use the word
    auto = await search(migrated_url, "#ethereum")
    assert ids_of(auto)[0] == corpus["0x01"]
    assert {r["matchedBy"] for r in auto["results"][1:]} == {"text"}
    # a page filled by the tag: no search by words, exact or widened
    page = await search(migrated_url, "#ethereum", limit=1)
    assert [(r["id"], r["matchedBy"]) for r in page["results"]] == [(corpus["0x01"], "tag")]
    assert "tsquery" not in page and "widenedQuery" not in page
    both = await search(migrated_url, "#ethereum $eth", mode="tag")
    assert ids_of(both) == [corpus["0x01"]]


async def test_profiles_by_name_bio_and_typo(migrated_url: str, corpus: dict[str, int]) -> None:
    assert [r["username"] for r in (await search(migrated_url, "romero", kind="profiles"))["results"]] == ["dwr.eth"]
    typo = await search(migrated_url, "farcastr", kind="profiles")
    assert [r["username"] for r in typo["results"]] == ["dwr.eth"]
    assert [r["username"] for r in (await search(migrated_url, "ethereum", kind="profiles"))["results"]] == [
        "vitalik.eth"
    ]


async def test_index_follows_edits_and_deletes(migrated_url: str, corpus: dict[str, int]) -> None:
    assert index(migrated_url) == 0  # nothing changed: nothing re-indexed
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE external_posts SET body = 'Now it is about bitcoin #btc', updated_at = now() "
            "WHERE external_id = '0x05'"
        )
        conn.execute("DELETE FROM external_posts WHERE external_id = '0x04'")
    assert index(migrated_url) == 1
    assert ids_of(await search(migrated_url, "kitten")) == []
    assert ids_of(await search(migrated_url, "bitcoin", mode="text")) == [corpus["0x05"]]
    assert ids_of(await search(migrated_url, "#btc", mode="tag")) == [corpus["0x05"]]
    assert ids_of(await search(migrated_url, "$sol", mode="tag")) == []
    assert ids_of(await search(migrated_url, "validators", mode="text")) == []


def test_a_late_commit_is_not_skipped(migrated_url: str) -> None:
    """A writer's rows carry its transaction's start time: a transaction that began before the
    indexer's cursor moved, and commits after, must still be indexed."""
    seed(migrated_url)
    with psycopg.connect(migrated_url) as slow:
        slow.execute(
            "INSERT INTO external_posts (platform, external_id, body, created_at) "
            "VALUES ('farcaster', '0xlate', 'a slow writer mentions avalanche', now())"
        )
        with psycopg.connect(migrated_url, autocommit=True) as fast:
            fast.execute(
                "INSERT INTO external_posts (platform, external_id, body, created_at) "
                "VALUES ('farcaster', '0xfast', 'a quick writer mentions polkadot', now())"
            )
        indexed = index(migrated_url)
        assert indexed == len(PROFILES) + len(POSTS)  # neither row past the open transaction's start
        slow.commit()
    assert index(migrated_url) == 2
    with psycopg.connect(migrated_url) as conn:
        bodies = {
            r[0] for r in conn.execute("SELECT p.body FROM search_posts s JOIN external_posts p ON p.id = s.post_id")
        }
    assert {"a slow writer mentions avalanche", "a quick writer mentions polkadot"} <= bodies


def test_small_batches_resume_from_the_cursor(migrated_url: str) -> None:
    seed(migrated_url)
    assert index(migrated_url, batch_size=3) == len(POSTS) + len(PROFILES)
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM search_posts").fetchone() == (len(POSTS),)
        cursors = dict(conn.execute("SELECT cursor_key, value->>'id' FROM sync_cursors WHERE worker_name = 'search'"))
    assert cursors == {"posts": str(len(POSTS)), "profiles": str(len(PROFILES))}


def test_every_path_ranks_the_same_recent_matches(migrated_url: str, corpus: dict[str, int]) -> None:
    """search_posts takes the matches among the newest `scan` posts by walking them (dense
    queries) or from the GIN and recency indexes together, and all matches from the GIN index
    when the newest posts fall short: each path must rank the same posts the same way."""
    statement = queries_from("search.sql")["search_posts"]

    def ranked(tsquery: str, walk: bool, dense: bool, scan: int) -> list[tuple[int, float]]:
        params = {"q": tsquery, "walk": walk, "dense": dense, "scan": scan, "window": 100, "limit": 2, "exclude": []}
        with psycopg.connect(migrated_url) as conn:
            return [(row[0], row[9]) for row in conn.execute(statement, params)]

    for tsquery in ("'ethereum'", "'gas' | 'fee'", "'ethereum' | 'eth':*"):
        everything = ranked(tsquery, walk=False, dense=False, scan=len(POSTS))
        assert everything, tsquery  # each query matches some posts
        assert ranked(tsquery, walk=True, dense=True, scan=len(POSTS)) == everything
        assert ranked(tsquery, walk=True, dense=False, scan=len(POSTS)) == everything
        # only the 4 newest posts are ranked when they hold a page (else all matches), found either way
        newest = ranked(tsquery, walk=True, dense=True, scan=4)
        assert ranked(tsquery, walk=True, dense=False, scan=4) == newest
        assert {post for post, _ in newest} <= set(list(corpus.values())[-4:]) or newest == everything
    # two of the 4 newest posts say "ethereum": a page of them
    assert [post for post, _ in ranked("'ethereum'", walk=True, dense=False, scan=4)] == [
        corpus["t3_07"],
        corpus["0x08"],
    ]


# The parts' queries with the estimates that steer search_posts (as search_posts_text computes them).
ESTIMATES = {
    "exact_query": "SELECT websearch_to_tsquery('english', %(q)s)::text, e.expected, e.expected >= %(window)s "
    "FROM search_expected_recent(%(q)s, %(scan)s) AS e (expected)",
    "widened_query": "SELECT w.query::text, w.expected_recent, "
    "w.expected_recent >= %(window)s OR w.expected_matches >= %(scan)s "
    "FROM search_widen(%(q)s, %(prefix_last)s, %(scan)s) AS w",
}


def test_one_statement_search_equals_its_parts(migrated_url: str, corpus: dict[str, int]) -> None:
    """search_posts_text (one statement: exact words, then the widened query when they found too
    few) gives the rows, ranking and queries of its parts run one statement at a time: exact_query,
    search_posts, widened_query, search_posts again without the posts already found."""
    statements = queries_from("search.sql")

    def by_parts(conn: psycopg.Connection[Any], q: str, limit: int, scan: int) -> list[tuple[Any, ...]]:
        steering = {"q": q, "scan": scan, "limit": limit, "window": 100, "prefix_last": True}
        out: list[tuple[Any, ...]] = []
        for found_by, name in (("text", "exact_query"), ("fuzzy", "widened_query")):
            row = conn.execute(ESTIMATES[name], steering).fetchone()
            assert row is not None
            tsquery, expected, dense = row
            out.append((found_by, tsquery, None, None))
            if found_by == "text" or tsquery != out[0][1]:
                found = [r[2] for r in out if r[2] is not None]
                params = {
                    "q": tsquery,
                    "walk": expected is None or expected >= limit,
                    "dense": expected is None or bool(dense),
                    "scan": scan,
                    "window": 100,
                    "limit": limit - len(found),
                    "exclude": found,
                }
                out += [(found_by, tsquery, r[0], r[9]) for r in conn.execute(statements["search_posts"], params)]
            if len([r for r in out if r[2] is not None]) >= min(limit, 3):
                break  # enough exact results: not widened
        return out

    with psycopg.connect(migrated_url) as conn:
        for q in ("ethereum", "gas fees", "etherium", "vita", "solanna validaters", "eth", "the"):
            for limit, scan in ((20, 5000), (2, 4), (4, 4)):
                one = conn.execute(
                    statements["search_posts_text"],
                    {"q": q, "exact": True, "widen_below": min(limit, 3), "limit": limit, "exclude": []}
                    | {"scan": scan, "window": 100},
                ).fetchall()
                assert [(r[0], r[1], r[2], r[11]) for r in one] == by_parts(conn, q, limit, scan), (q, limit, scan)
        # the widened query alone (mode fuzzy) and the exact words alone (mode text)
        fuzzy = conn.execute(
            statements["search_posts_text"],
            {
                "q": "ethereum",
                "exact": False,
                "widen_below": 20,
                "limit": 20,
                "exclude": [],
                "scan": 5000,
                "window": 100,
            },
        ).fetchall()
        assert [r[0] for r in fuzzy[:2]] == ["text", "fuzzy"] and {r[0] for r in fuzzy[2:]} == {"fuzzy"}
        assert {r[2] for r in fuzzy[2:]} >= {corpus[k] for k in ("0x01", "0x02", "0x03", "t3_07", "0x08")}
        text = conn.execute(
            statements["search_posts_text"],
            {"q": "etherium", "exact": True, "widen_below": 0, "limit": 20, "exclude": [], "scan": 5000, "window": 100},
        ).fetchall()
        assert [(r[0], r[2]) for r in text] == [("text", None)]


async def test_one_off_words_wait_for_their_trigrams(migrated_url: str) -> None:
    """In a large lexicon (here: any) a word seen in one document gets its trigrams, the typo
    search's candidates, only once a second document has it; an edit notes only the words it adds."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION search_trigrams_wait_from() RETURNS bigint LANGUAGE sql IMMUTABLE "
            "AS $$ SELECT 0::bigint $$"
        )
        ids = seed(migrated_url)
        index(migrated_url)

        def lexeme(word: str) -> tuple[int, int, int] | None:
            return conn.execute(  # type: ignore[return-value]
                "SELECT ndoc, ntrigrams, (SELECT count(*)::int FROM search_lexeme_trigrams t WHERE t.lexeme_id = l.id) "
                "FROM search_lexemes l WHERE lexeme = %s",
                (word,),
            ).fetchone()

        assert lexeme("ethereum") == (6, 9, 9)  # five posts and a profile
        assert lexeme("kitten") == (1, 0, 0)  # one document: waits
        assert (await search(migrated_url, "kiten"))["results"] == []  # no candidate yet

        conn.execute(
            "INSERT INTO external_posts (platform, external_id, body, created_at) "
            "VALUES ('farcaster', '0x09', 'a kitten asleep on the keyboard', now())"
        )
        conn.execute(
            "UPDATE external_posts SET body = body || ', whiskers', updated_at = now() WHERE id = %s", (ids["0x05"],)
        )
        assert index(migrated_url) == 2
        assert lexeme("kitten") == (2, 7, 7)  # seen again: its trigrams; the edit did not count it again
        assert lexeme("whisker") == (1, 0, 0)  # the edit's new word
        assert lexeme("garden") == (1, 0, 0)
        typo = await search(migrated_url, "kiten")
        assert "'kitten'" in typo["widenedQuery"]
        assert len(typo["results"]) == 2


WORDS = [
    "ethereum",
    "gas",
    "fees",
    "rollup",
    "blobs",
    "kitten",
    "garden",
    "staking",
    "validators",
    "solana",
    "merge",
    "bridge",
    "wallet",
    "degen",
]


def seed_many(url: str, n: int) -> None:
    """`n` posts from a small vocabulary with a few misspellings (one-off words), in one statement."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO external_posts (platform, external_id, body, created_at) "
            "SELECT 'farcaster', 'm' || i, "
            "       (SELECT string_agg(w[1 + (i * k * 7 + k) %% cardinality(w)], ' ') FROM generate_series(1, 3 + i %% 9) AS k)"
            "       || CASE WHEN i %% 17 = 0 THEN ' etherium' || i ELSE '' END || ' #tag' || i %% 5, "
            "       now() - make_interval(secs => %s - i) "
            "FROM generate_series(1, %s) AS i, (SELECT %s::text[] AS w) AS v",
            (n, n, WORDS),
        )


def lexicon(url: str) -> list[tuple[Any, ...]]:
    """The whole lexicon by lexeme: counts, trigrams and variants (ids differ between builds)."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT l.lexeme, l.ndoc, l.ntrigrams, "
            "       ARRAY(SELECT t.trigram FROM search_lexeme_trigrams t WHERE t.lexeme_id = l.id ORDER BY 1), "
            "       ARRAY(SELECT v.variant FROM search_lexeme_variants v WHERE v.lexeme_id = l.id ORDER BY 1) "
            "FROM search_lexemes l ORDER BY l.lexeme"
        ).fetchall()


def reset_index(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE search_posts, search_profiles, post_tags, search_lexemes, search_lexeme_trigrams, "
            "search_lexeme_variants, search_lexeme_pending"
        )
        conn.execute("DELETE FROM sync_cursors WHERE worker_name = 'search'")


def test_lanes_build_the_same_index_and_lexicon(migrated_url: str) -> None:
    """A batch split over two connections (and the lexicon folded in two parts at once) gives the
    same documents, tags and word counts as one connection, with the cursor past every row."""
    seed_many(migrated_url, 400)
    with psycopg.connect(migrated_url, autocommit=True) as conn:  # one-off words wait, as in a large lexicon
        conn.execute(
            "CREATE OR REPLACE FUNCTION search_trigrams_wait_from() RETURNS bigint LANGUAGE sql IMMUTABLE "
            "AS $$ SELECT 0::bigint $$"
        )
    snapshot = (
        "SELECT (SELECT array_agg(post_id::text || ':' || tsv::text ORDER BY post_id) FROM search_posts), "
        "       (SELECT array_agg(kind || ':' || tag || ':' || post_id ORDER BY kind, tag, post_id) FROM post_tags), "
        "       (SELECT value->>'id' FROM sync_cursors WHERE worker_name = 'search' AND cursor_key = 'posts')"
    )
    assert index(migrated_url, index_connections=1, batch_size=150) == 400
    with psycopg.connect(migrated_url) as conn:
        serial = conn.execute(snapshot).fetchone()
    serial_lexicon = lexicon(migrated_url)
    assert any(ndoc == 1 and ntrigrams == 0 for _, ndoc, ntrigrams, _, _ in serial_lexicon)  # one-off words wait
    reset_index(migrated_url)
    assert index(migrated_url, index_connections=2, lane_min_rows=1, batch_size=150) == 400
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute(snapshot).fetchone() == serial
    assert lexicon(migrated_url) == serial_lexicon
    assert index(migrated_url, index_connections=2, lane_min_rows=1) == 0  # nothing left behind the cursor
    # folded in the background every 100 rows while the next batches are indexed: the same lexicon
    reset_index(migrated_url)
    assert index(migrated_url, index_connections=2, lane_min_rows=1, batch_size=50, lexicon_fold_rows=100) == 400
    assert lexicon(migrated_url) == serial_lexicon


def test_a_lane_that_fails_is_redone_before_the_cursor_moves(migrated_url: str, corpus: dict[str, int]) -> None:
    """A bad row in a later range rolls back that lane's transaction; the worker's transaction
    indexes the range again row by row (skipping and recording the bad row) before it moves the
    cursor past the batch, so no row is skipped."""
    reset_index(migrated_url)
    bad = corpus["0x06"]  # in the later of the two ranges (posts 5-8)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_post() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.post_id = {bad} THEN RAISE EXCEPTION 'refused post %', NEW.post_id; END IF; RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON search_posts FOR EACH ROW EXECUTE FUNCTION refuse_post()")
    assert index(migrated_url, index_connections=2, lane_min_rows=1) == len(POSTS) - 1 + len(PROFILES)
    with psycopg.connect(migrated_url) as conn:
        indexed = {r[0] for r in conn.execute("SELECT post_id FROM search_posts")}
        errors = conn.execute("SELECT item_key, message FROM worker_errors WHERE worker_name = 'search'").fetchall()
        cursor = conn.execute(
            "SELECT value->>'id' FROM sync_cursors WHERE worker_name = 'search' AND cursor_key = 'posts'"
        ).fetchone()
    assert indexed == set(corpus.values()) - {bad}
    assert [key for key, _ in errors] == [f"post {bad}"] and "refused post" in errors[0][1]
    assert cursor == (str(max(corpus.values())),)


async def test_an_edit_that_keeps_the_text_keeps_document_and_tags(migrated_url: str, corpus: dict[str, int]) -> None:
    """A post whose updated_at moved with its score alone is not indexed again (its document and
    tag rows are the same row versions); one whose text changed is, tags included."""
    post = corpus["0x01"]
    versions = (
        "SELECT (SELECT xmin::text FROM search_posts WHERE post_id = %(id)s), "
        "       (SELECT array_agg(xmin::text || tag ORDER BY tag) FROM post_tags WHERE post_id = %(id)s)"
    )
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        before = conn.execute(versions, {"id": post}).fetchone()
        conn.execute("UPDATE external_posts SET score = 42, updated_at = now() WHERE id = %s", (post,))
        assert index(migrated_url) == 1  # read and checked
        assert conn.execute(versions, {"id": post}).fetchone() == before
        conn.execute("UPDATE external_posts SET body = body || ' #gm', updated_at = now() WHERE id = %s", (post,))
        assert index(migrated_url) == 1
        document, tags = conn.execute(versions, {"id": post}).fetchone() or (None, None)
    assert document != before[0] and len(tags) == len(before[1]) + 1
    assert ids_of(await search(migrated_url, "#gm", mode="tag")) == [post]


def test_a_stop_cancels_the_background_fold_and_keeps_its_counts_pending(migrated_url: str) -> None:
    """SIGTERM does not wait for a long background fold (it could outlast the manager's stop
    timeout): the fold is cancelled, its transaction rolls back, and the counts it was folding
    stay noted for the next fold."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO search_lexeme_pending (bucket, lexemes, ndocs) "
            "VALUES (search_lexeme_bucket('zyzzyva'), '{zyzzyva}', '{1}')"
        )
    worker = SearchWorker(name="search", config={}, database_url=migrated_url)

    def slow_fold(conn: psycopg.Connection[Any]) -> None:
        worker._fold_part(0, 1, conn)
        conn.execute("SELECT pg_sleep(60)")  # a fold far longer than any stop timeout

    try:
        folding = worker._folding = worker._folder.start([slow_fold])
        with psycopg.connect(migrated_url, autocommit=True) as conn:
            for _ in range(300):  # until the fold sleeps (bounded: 30 s)
                if conn.execute("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'").fetchone():
                    break
                conn.execute("SELECT pg_sleep(0.1)")
            else:
                pytest.fail("the background fold never started")
        worker.request_stop()
        worker._await_fold()
        assert [f.result() for f in folding] == [False]  # cancelled and rolled back, not run to its end
    finally:
        worker.close()
        for conn in (worker._data, worker._control):
            if conn is not None:
                conn.close()
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT lexemes, ndocs FROM search_lexeme_pending").fetchall() == [(["zyzzyva"], [1])]
        assert conn.execute("SELECT 1 FROM search_lexemes WHERE lexeme = 'zyzzyva'").fetchone() is None
