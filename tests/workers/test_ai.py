"""The ai worker against the OpenAI stand-in (in-process, loopback) and a real Postgres with pgvector;
and GET /api/search with semantic results through a booted manager."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

from devnet.openai_api import REFUSED_MARKER, REFUSED_MESSAGE, OpenAIStub, embed
from tests.support.db import rows
from tests.support.waiting import wait_for
from workers.ai.calls import CallPool
from workers.ai.client import AiSettings, parse_summary, retry_after_s
from workers.ai.topics import topic_label
from workers.ai.worker import AiWorker
from workers.base import CycleResult
from workers.errors import BudgetSpent, NotConfigured, RateLimited, UpstreamError
from workers.pacing import Pacer
from workers.search.query import Search

KEY = "sk-devnet-test"
GAS = "Gas fees on ethereum keep dropping, I love it"
POSTS = [  # external_id, title, body
    ("0x01", "Ethereum gas", "Ethereum gas fees are low today, great time to mint"),
    ("0x02", None, GAS),
    ("0x03", None, "Solana validators restarted again after a terrible outage"),
    ("0x04", None, "My cat chased a kitten around the garden"),
    ("0x05", None, GAS),  # a repost: the same text
    ("0x06", None, ""),  # nothing to embed or summarise
    ("0x07", None, "The kitten and the cat sleep in the garden"),
]
PROFILES = [
    ("3", "dwr.eth", "Dan Romero", "Working on Farcaster, a sufficiently decentralized social network"),
    ("4", "v", "Varun", "Building Farcaster, a decentralized social network"),
    ("5", "cats", "Cat pictures", "Cats and kittens, every day"),
]


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch, stub: OpenAIStub) -> Iterator[None]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield
    stub.clear_faults()


@pytest.fixture
def seeded(migrated_url: str) -> dict[str, int]:
    ids = {}
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('ai_posts')").fetchone() == (None,):
            pytest.skip("this Postgres server has no pgvector (DATABASE_URL pointing elsewhere?)")
        for external_id, title, body in POSTS:
            row = conn.execute(
                "INSERT INTO external_posts (platform, external_id, title, body, created_at) "
                "VALUES ('farcaster', %s, %s, %s, now()) RETURNING id",
                (external_id, title, body),
            ).fetchone()
            assert row is not None
            ids[external_id] = row[0]
        for external_id, username, name, bio in PROFILES:
            row = conn.execute(
                "INSERT INTO profiles (platform, external_id, username, display_name, bio) "
                "VALUES ('farcaster', %s, %s, %s, %s) RETURNING id",
                (external_id, username, name, bio),
            ).fetchone()
            assert row is not None
            ids[f"fid:{external_id}"] = row[0]
    return ids


def make_worker(url: str, stub: OpenAIStub, **config: Any) -> AiWorker:
    worker = AiWorker(name="ai", config={"base_url": stub.base_url, "max_retries": 0, **config}, database_url=url)
    worker.heartbeat("starting")
    return worker


def calls(stub: OpenAIStub) -> tuple[int, int]:
    return stub.request_count("/v1/embeddings"), stub.request_count("/v1/chat/completions")


def test_posts_and_profiles_get_embeddings_summaries_topics_and_recommendations(
    migrated_url: str, stub: OpenAIStub, seeded: dict[str, int]
) -> None:
    before = calls(stub)
    result = make_worker(migrated_url, stub).run_cycle()
    assert result.items == len(POSTS) + len(PROFILES) and result.item_errors == 0
    embeddings, chats = (after - first for after, first in zip(calls(stub), before, strict=True))
    # one request per batch (posts, profiles); 5 distinct post texts -> 5 chats, the repost reuses
    assert (embeddings, chats) == (2, 5)

    posts = {
        r[0]: r[1:]
        for r in rows(
            migrated_url,
            "SELECT p.external_id, vector_dims(a.embedding), a.embedding::text, a.summary, a.sentiment, a.topic_id, a.meta "
            "FROM ai_posts a JOIN external_posts p ON p.id = a.post_id",
        )
    }
    assert set(posts) == {p[0] for p in POSTS}
    dims, vector, summary, sentiment, _topic, meta = posts["0x02"]
    assert dims == 256
    assert np.allclose(np.array(vector.strip("[]").split(","), dtype=float), embed(GAS), atol=1e-6)
    assert summary and sentiment == "positive" and meta["embedding"] == "api" and meta["summary"] == "api"
    assert posts["0x03"][3] == "negative"
    repost = posts["0x05"]
    assert repost[1] == vector and repost[2] == summary
    assert repost[5]["embedding"] == "cache" and repost[5]["summary"] == "reused"
    assert posts["0x06"][0] is None and posts["0x06"][5]["embedding"].startswith("skipped")

    # topics: ethereum posts together, cat posts together, apart from each other
    topic_of = {key: value[4] for key, value in posts.items()}
    assert topic_of["0x01"] == topic_of["0x02"] == topic_of["0x05"]
    assert topic_of["0x04"] == topic_of["0x07"] != topic_of["0x01"]
    labels = dict(rows(migrated_url, "SELECT id, label FROM ai_topics"))
    assert "garden" in labels[topic_of["0x04"]] and "ethereum" in labels[topic_of["0x01"]]

    # recommendations, both ways: the first post learns about the ones processed after it
    similar = rows(migrated_url, "SELECT post_id, similar_post_id, rank FROM ai_similar_posts ORDER BY 1, 3")
    assert (seeded["0x04"], seeded["0x07"], 1) in similar and (seeded["0x07"], seeded["0x04"], 1) in similar
    assert (seeded["0x01"], seeded["0x02"], 1) in similar or (seeded["0x01"], seeded["0x05"], 1) in similar
    assert not [s for s in similar if {s[0], s[1]} == {seeded["0x02"], seeded["0x05"]}]  # copies are not recommended
    profile_pairs = rows(migrated_url, "SELECT profile_id, similar_profile_id FROM ai_similar_profiles WHERE rank = 1")
    assert (seeded["fid:3"], seeded["fid:4"]) in profile_pairs and (seeded["fid:4"], seeded["fid:3"]) in profile_pairs

    usage = rows(migrated_url, "SELECT operation, items, prompt_tokens, completion_tokens, cost_usd FROM ai_usage")
    assert sorted((u[0], u[1]) for u in usage) == [("chat", 1)] * 5 + [("embeddings", 3), ("embeddings", 5)]
    assert all(u[2] > 0 and u[4] > 0 for u in usage)
    assert all(u[3] > 0 for u in usage if u[0] == "chat")
    cursors = dict(
        rows(migrated_url, "SELECT cursor_key, (value->>'id')::int FROM sync_cursors WHERE worker_name = 'ai'")
    )
    assert cursors == {"posts": seeded["0x07"], "profiles": seeded["fid:5"]}


async def test_stored_posts_are_searchable_before_the_hnsw_index_takes_them(
    migrated_url: str, stub: OpenAIStub, seeded: dict[str, int]
) -> None:
    worker = make_worker(migrated_url, stub, summaries=False, vector_batch=3)
    total = CycleResult()
    while worker.posts_batch(total):
        pass
    assert total.items == len(POSTS)
    waiting = "SELECT count(*) FROM ai_posts WHERE NOT vector_indexed AND embedding IS NOT NULL"
    assert rows(migrated_url, waiting) == [(len(POSTS) - 1,)]  # all but the post without text
    assert rows(migrated_url, "SELECT count(*) FROM ai_similar_posts") == [(0,)]

    async def semantic() -> list[int]:
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:

            async def embedder(text: str) -> np.ndarray:
                return embed(text)

            answer = await Search(conn, GAS, mode="semantic", embedder=embedder, dims=256).run()
            return [r["id"] for r in answer["results"]]

    before = await semantic()  # from the exact scan of the posts not indexed yet
    assert before[0] in (seeded["0x02"], seeded["0x05"])

    assert worker.vectors_batch(CycleResult())  # a full batch of 3: more may be waiting
    assert rows(migrated_url, waiting) == [(len(POSTS) - 4,)]
    while worker.vectors_batch(CycleResult()):
        pass
    assert rows(migrated_url, waiting) == [(0,)]
    assert await semantic() == before  # the same answer from the HNSW index
    similar = rows(migrated_url, "SELECT post_id, similar_post_id, rank FROM ai_similar_posts")
    assert (seeded["0x04"], seeded["0x07"], 1) in similar and (seeded["0x07"], seeded["0x04"], 1) in similar


def test_unchanged_content_costs_nothing_and_edits_are_reprocessed(
    migrated_url: str, stub: OpenAIStub, seeded: dict[str, int]
) -> None:
    worker = make_worker(migrated_url, stub, batch_size=3)
    assert worker.run_cycle().items == len(POSTS) + len(PROFILES)
    before = calls(stub)
    assert worker.run_cycle().items == 0 and calls(stub) == before
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("UPDATE external_posts SET updated_at = now() WHERE external_id = '0x01'")  # touched only
        conn.execute(
            "UPDATE external_posts SET body = 'Bitcoin fees are terrible', updated_at = now() "
            "WHERE external_id = '0x04'"
        )
    assert worker.run_cycle().items == 2
    assert tuple(a - b for a, b in zip(calls(stub), before, strict=True)) == (1, 1)  # only the edited text
    ((sentiment, meta),) = rows(
        migrated_url, "SELECT sentiment, meta FROM ai_posts WHERE post_id = %s", (seeded["0x04"],)
    )
    assert sentiment == "negative" and meta["embedding"] == "api"
    ((meta,),) = rows(migrated_url, "SELECT meta FROM ai_posts WHERE post_id = %s", (seeded["0x01"],))
    assert meta["embedding"] == "cache" and meta["summary"] == "reused"


def test_rate_limit_stops_the_cycle_keeps_finished_items_and_resumes(
    migrated_url: str, stub: OpenAIStub, seeded: dict[str, int]
) -> None:
    worker = make_worker(migrated_url, stub, concurrency=1)  # one call at a time: "the third call" is one post
    stub.inject_fault("429", count=1, path_prefix="/v1/embeddings", retry_after=7)
    with pytest.raises(RateLimited) as first:
        worker.run_cycle()
    assert first.value.retry_after_s == pytest.approx(7)
    assert rows(migrated_url, "SELECT count(*) FROM ai_posts") == [(0,)]

    # the provider refuses the third chat call: the two posts before it are committed, the cursor stops there
    real, made = worker.client.summarize, []

    def summarize(text: str) -> Any:
        made.append(text)
        if len(made) == 3:
            stub.inject_fault("429", count=1, path_prefix="/v1/chat/completions", retry_after=0.5)
        return real(text)

    worker.client.summarize = summarize  # type: ignore[method-assign]
    with pytest.raises(RateLimited):
        worker.run_cycle()
    done = [r[0] for r in rows(migrated_url, "SELECT post_id FROM ai_posts ORDER BY 1")]
    cursor = rows(
        migrated_url, "SELECT (value->>'id')::int FROM sync_cursors WHERE worker_name = 'ai' AND cursor_key = 'posts'"
    )
    assert done == [seeded["0x01"], seeded["0x02"]] and cursor == [(seeded["0x02"],)]

    worker.run_cycle()  # the limit has passed: everything is processed, nothing twice
    assert rows(migrated_url, "SELECT count(*), count(DISTINCT post_id) FROM ai_posts") == [(len(POSTS), len(POSTS))]
    # five distinct texts were summarised once each; the refused call was not recorded as spent
    assert rows(migrated_url, "SELECT count(*) FROM ai_usage WHERE operation = 'chat'") == [(5,)]


def test_a_429_among_concurrent_calls_commits_a_prefix_and_pays_nothing_twice(
    migrated_url: str, stub: OpenAIStub, seeded: dict[str, int]
) -> None:
    worker = make_worker(migrated_url, stub, concurrency=4)
    stub.inject_fault("429", count=1, path_prefix="/v1/chat/completions", retry_after=0.2)
    with pytest.raises(RateLimited):
        worker.run_cycle()
    in_order = [seeded[p[0]] for p in POSTS]
    done = [r[0] for r in rows(migrated_url, "SELECT post_id FROM ai_posts ORDER BY 1")]
    assert done == in_order[: len(done)] and len(done) < len(POSTS)  # a prefix, short of the refused text
    cursor = rows(
        migrated_url, "SELECT (value->>'id')::int FROM sync_cursors WHERE worker_name = 'ai' AND cursor_key = 'posts'"
    )
    assert cursor == ([(done[-1],)] if done else [])
    worker.run_cycle()
    assert rows(migrated_url, "SELECT count(*) FROM ai_posts") == [(len(POSTS),)]
    # the answers that came back beside the 429 were cached, not bought again
    assert rows(migrated_url, "SELECT count(*) FROM ai_usage WHERE operation = 'chat'") == [(5,)]
    assert rows(migrated_url, "SELECT count(*) FROM ai_summary_cache") == [(5,)]


def test_call_pool_keeps_order_and_the_prefix_before_a_failure() -> None:
    pool = CallPool(3, Pacer())
    try:

        def call(n: int) -> int:
            if n == 2:
                raise UpstreamError("boom")
            return n * 10

        outcome = pool.run(call, [0, 1, 2, 3], on_wait=lambda: None, stopping=lambda: False, wait_s=0.05)
        assert outcome.done == [0, 10] and str(outcome.error) == "boom"
        assert set(outcome.paid) <= {0, 10, 30} and {0, 10} <= set(outcome.paid)
        asked: list[int] = []

        def stop_after_first(n: int) -> int:
            asked.append(n)
            return n

        stopped = pool.run(
            stop_after_first, list(range(10)), on_wait=lambda: None, stopping=lambda: bool(asked), wait_s=0.05
        )
        assert stopped.error is None and stopped.done == sorted(asked) and len(asked) <= 3  # sent ones finish
    finally:
        pool.close()


def test_a_refused_item_is_logged_and_skipped(migrated_url: str, stub: OpenAIStub, seeded: dict[str, int]) -> None:
    # The stand-in's content filter answers the summary request for this post with HTTP 400.
    ((refused_id,),) = rows(
        migrated_url,
        "INSERT INTO external_posts (platform, external_id, body, created_at) "
        f"VALUES ('farcaster', '0x08', 'a post about the {REFUSED_MARKER} of the week', now()) RETURNING id",
    )
    worker = make_worker(migrated_url, stub)
    worker.validate()
    assert worker.run_cycle().items == len(POSTS) + 1 + len(PROFILES)
    ((summary, embedding, meta),) = rows(
        migrated_url, "SELECT summary, embedding IS NOT NULL, meta FROM ai_posts WHERE post_id = %s", (refused_id,)
    )
    assert summary is None and embedding and meta["summary"].startswith("refused")
    errors = rows(migrated_url, "SELECT item_key, message FROM worker_errors WHERE worker_name = 'ai'")
    assert errors == [(f"post {refused_id}", f"summary refused: {REFUSED_MESSAGE}")]


def test_embedding_size_is_configurable(migrated_url: str, stub: OpenAIStub, seeded: dict[str, int]) -> None:
    make_worker(migrated_url, stub, dimensions=64, summaries=False).run_cycle()
    assert rows(
        migrated_url, "SELECT DISTINCT vector_dims(embedding), dims FROM ai_posts WHERE embedding IS NOT NULL"
    ) == [(64, 64)]
    indexes = {r[0] for r in rows(migrated_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'ai_posts'")}
    assert {"ai_posts_embedding_64_idx", "ai_posts_embedding_256_idx"} <= indexes
    assert rows(migrated_url, "SELECT count(*) FROM ai_usage WHERE operation = 'chat'") == [(0,)]


def test_missing_base_url_or_key_is_reported_not_crashed(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = AiWorker(name="ai", config={}, database_url=migrated_url)
    with pytest.raises(NotConfigured, match="base_url"):
        worker.validate()
    monkeypatch.delenv("OPENAI_API_KEY")
    worker = AiWorker(name="ai", config={"base_url": "http://127.0.0.1:9/v1"}, database_url=migrated_url)
    with pytest.raises(NotConfigured, match="OPENAI_API_KEY"):
        worker.validate()


def test_budget_cap_waits(migrated_url: str, stub: OpenAIStub, seeded: dict[str, int]) -> None:
    worker = make_worker(migrated_url, stub, max_cost_per_day_usd=0.0001)
    worker.run_cycle()
    with pytest.raises(BudgetSpent, match=r"of \$0\.0001 in the last 24 h; raise workers\.ai\.max_cost_per_day_usd"):
        worker.validate()


def test_reply_parsing_and_retry_headers() -> None:
    assert parse_summary('{"summary": "Fees fell.", "sentiment": "Positive"}') == ("Fees fell.", "positive")
    assert parse_summary("Sentiment: negative\nSummary: It broke.") == ("It broke.", "negative")
    assert parse_summary("just text") == ("just text", None)
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"Retry-After": "3"}) == 3
    assert retry_after_s({"x-ratelimit-reset-requests": "1m30s", "x-ratelimit-reset-tokens": "20ms"}) == 90
    assert topic_label(["Ethereum gas fees", "gas on ethereum", "the gas"]) == "gas, ethereum, fees"
    settings = AiSettings.from_config(
        {"base_url": "http://x/v1", "chat_input_price_per_1k": 1, "chat_output_price_per_1k": 2},
        {"OPENAI_API_KEY": "k"},
    )
    assert settings.chat_cost(1000, 500) == pytest.approx(2.0)


def test_semantic_search_through_the_manager(
    boot_manager: Any, stub: OpenAIStub, migrated_url: str, seeded: dict[str, int]
) -> None:
    # A generous first-heartbeat timeout: under load, importing openai can outlast the fast 10 s,
    # and this test is about search, not hung detection.
    fast = {"interval_ms": 300, "heartbeat_interval_ms": 200, "heartbeat_timeout_s": 30}
    manager = boot_manager(
        workers={
            "ai": {"module": "workers.ai", "base_url": stub.base_url, **fast},
            "ai_unconfigured": {"module": "workers.ai", "env": {"OPENAI_BASE_URL": ""}, **fast},
            "search": {"module": "workers.search", **fast},
        },
        env={"OPENAI_API_KEY": KEY},
    )
    wait_for(
        lambda: (
            manager.sql("SELECT count(*) FROM ai_posts")[0][0] == len(POSTS)
            and manager.sql("SELECT count(*) FROM search_posts")[0][0] == len(POSTS)
        ),
        timeout=60,
        what="indexed",
    )

    assert manager.api("GET", "/api/search?q=kitten", token=None).status_code == 401
    text = manager.api("GET", "/api/search?q=kitten").json()
    assert [r["id"] for r in text["results"]] == [seeded["0x04"], seeded["0x07"]] or [
        r["id"] for r in text["results"]
    ] == [seeded["0x07"], seeded["0x04"]]

    usage_before = manager.sql("SELECT count(*) FROM ai_usage WHERE caller = 'search-api'")[0][0]
    semantic = manager.api("GET", "/api/search?q=cheap+ethereum+gas&mode=semantic&limit=3").json()
    assert semantic["semantic"] == "used"
    assert semantic["results"][0]["id"] in (seeded["0x02"], seeded["0x05"], seeded["0x01"])
    assert {r["matchedBy"] for r in semantic["results"]} == {"semantic"}
    manager.api("GET", "/api/search?q=cheap+ethereum+gas&mode=semantic&limit=3")  # cached: no second call
    assert manager.sql("SELECT count(*) FROM ai_usage WHERE caller = 'search-api'")[0][0] == usage_before + 1

    hybrid = manager.api("GET", "/api/search?q=kitten&mode=hybrid&limit=3").json()
    assert "text+semantic" in {r["matchedBy"] for r in hybrid["results"]}
    profiles = manager.api("GET", "/api/search?q=decentralised+social&kind=profiles&mode=semantic&limit=2").json()
    assert {r["username"] for r in profiles["results"]} == {"dwr.eth", "v"}
    untagged = manager.api("GET", "/api/search?q=gm&mode=tag").json()
    assert untagged["results"] == [] and "needs a #hashtag" in untagged["note"]

    unconfigured = manager.wait_worker("ai_unconfigured", lambda w: w["lastError"], what="lastError")
    assert "base_url" in unconfigured["lastError"]
    assert unconfigured["state"] == "running" and unconfigured["restartCount"] == 0
