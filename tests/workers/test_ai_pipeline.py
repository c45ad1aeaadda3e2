"""The ai worker's pipeline: batches prepared ahead (workers/ai/ahead.py) with their bookkeeping on
the keeper thread, and topics assigned a batch at a time (workers/ai/topics.py). Correctness, not
speed: batches in cursor order, a stale queue dropped, nothing paid twice across batches, every
paid call recorded and cached, topics as the documented running-mean assignment makes them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from devnet.openai_api import OpenAIStub, embed
from tests.support.db import rows
from tests.support.waiting import wait_for
from workers.ai.ahead import Ahead
from workers.ai.inflight import Answer
from workers.ai.topics import Topics
from workers.ai.worker import AiWorker, Work
from workers.base import CycleResult

KEY = "sk-devnet-pipeline"


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(api_key=KEY) as server:
        yield server


@pytest.fixture
def make(migrated_url: str, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AiWorker]]:
    """Workers on the stand-in (embeddings only, batches of 2 unless told), closed afterwards."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    if rows(migrated_url, "SELECT to_regclass('ai_posts')") == [(None,)]:
        pytest.skip("this Postgres server has no pgvector (DATABASE_URL pointing elsewhere?)")
    made: list[AiWorker] = []

    def worker(**config: Any) -> AiWorker:
        config = {"base_url": stub.base_url, "max_retries": 0, "summaries": False, "batch_size": 2, **config}
        made.append(AiWorker(name="ai", config=config, database_url=migrated_url))
        made[-1].heartbeat("starting")
        return made[-1]

    yield worker
    for one in made:
        one.close()
        for conn in (one._data, one._control):
            if conn is not None:
                conn.close()


@pytest.fixture
def worker(make: Callable[..., AiWorker]) -> AiWorker:
    return make()


def _posts(url: str, texts: list[str]) -> list[int]:
    ids: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for index, body in enumerate(texts):
            row = conn.execute(
                "INSERT INTO external_posts (platform, external_id, body, created_at) "
                "VALUES ('farcaster', %s, %s, now()) RETURNING id",
                (f"0xp{index}", body),
            ).fetchone()
            assert row is not None
            ids.append(int(row[0]))
    return ids


# ---- the queue of batches prepared ahead ---------------------------------------------------------


@dataclass
class _Batch:
    after: dict[str, Any]


def test_batches_are_prepared_in_cursor_order_and_a_stale_queue_is_dropped() -> None:
    made: list[int] = []

    def prepare(stream: str, after: dict[str, Any], publish: Callable[[dict[str, Any] | None], None]) -> _Batch:
        made.append(after["id"])
        if after["id"] == 40:
            raise RuntimeError("a bug in the job")
        publish(None if after["id"] == 20 else {"id": after["id"] + 10})  # the batch at 20 is short
        return _Batch(after)

    ahead: Ahead[_Batch] = Ahead(prepare, lambda: False, threads=2)
    try:
        ahead.extend("posts", {"id": 0}, 2)
        first = ahead.take("posts", {"id": 0}, lambda: None, 0.05)
        assert first is not None and first.after == {"id": 0}
        ahead.extend("posts", {"id": 10}, 2)  # the batch at 10 is queued already: one more, after it
        second = ahead.take("posts", {"id": 10}, lambda: None, 0.05)
        assert second is not None and second.after == {"id": 10}
        # the write of the batch at 10 failed: the cursor is still at 10, the queued batch at 20 is stale
        assert ahead.take("posts", {"id": 10}, lambda: None, 0.05) is None and ahead.queued("posts") == 0
        # each batch read after the last item of the one before it; nothing is read after a short batch
        ahead.extend("posts", {"id": 20}, 3)
        third = ahead.take("posts", {"id": 20}, lambda: None, 0.05)
        assert third is not None and third.after == {"id": 20}
        assert ahead.take("posts", {"id": 30}, lambda: None, 0.05) is None
        assert made == [0, 10, 20, 20]
        # a job's error is raised to the taker, and the queue behind it is dropped
        ahead.extend("posts", {"id": 40}, 2)
        with pytest.raises(RuntimeError, match="a bug in the job"):
            ahead.take("posts", {"id": 40}, lambda: None, 0.05)
        assert ahead.queued("posts") == 0
    finally:
        ahead.close()


# ---- nothing paid twice, everything paid recorded and cached ----------------------------------------


def test_a_text_another_batch_is_buying_is_waited_for_not_bought(worker: AiWorker, stub: OpenAIStub) -> None:
    """Batches prepared ahead overlap: a text claimed by one (its request out, its vector not
    yet in the cache table) is taken from that batch's answer by the other."""
    now = datetime.now(UTC)
    text, other = "Validators restarted after the outage", "A kitten in the garden"
    same, new = Work("post", 2, now, text), Work("post", 3, now, other)
    assert same.hash is not None
    with worker._inflight.looking_up() as claim:
        mine, _ = claim([same.hash])  # another batch is buying it
    requests = stub.request_count("/v1/embeddings")
    worker.client  # noqa: B018 - validated here, not in the thread
    with ThreadPoolExecutor(1) as pool:
        embedding = pool.submit(worker.embed, [same, new], worker.db)
        wait_for(lambda: stub.request_count("/v1/embeddings") == requests + 1, timeout=10)
        assert not embedding.done()  # waiting for the other batch's answer
        theirs = np.full(256, 0.0625, dtype=np.float32)  # not the stand-in's vector: it must come from the answer
        worker._inflight.settle(mine, {same.hash: Answer(vector=theirs)}, None)
        settled, done = embedding.result(timeout=10)
    assert settled is not None and done == 2
    settled.result()
    assert stub.request_count("/v1/embeddings") == requests + 1
    assert same.meta["embedding"] == "cache" and np.array_equal(same.embedding, theirs)  # type: ignore[arg-type]
    assert new.meta["embedding"] == "api" and np.array_equal(new.embedding, embed(other, 256))  # type: ignore[arg-type]
    # the keeper recorded the one text paid for and cached its vector, then released its claim
    assert rows(worker.database_url, "SELECT sum(items) FROM ai_usage WHERE operation = 'embeddings'") == [(1,)]
    assert rows(worker.database_url, "SELECT count(*) FROM ai_embedding_cache") == [(1,)]
    worker._inflight.release(mine)
    assert len(worker._inflight) == 0


def test_the_texts_of_one_claim_share_one_answer_each_text_its_own() -> None:
    """One lookup's claims are answered together: a text that got a vector, a refused one, and one
    left without an answer by a 429 (its waiter gets the 429); only the vector's claim stays."""
    from workers.ai.inflight import Inflight
    from workers.errors import RateLimited

    inflight = Inflight()
    with inflight.looking_up() as claim:
        mine, theirs = claim([b"a", b"b", b"c", b"a"])
    assert mine == [b"a", b"b", b"c"] and theirs == {}
    with inflight.looking_up() as claim:
        again, waiting = claim([b"a", b"c", b"d"])
    assert again == [b"d"] and set(waiting) == {b"a", b"c"} and waiting[b"a"] is waiting[b"c"]
    vector, limited = np.ones(4, dtype=np.float32), RateLimited("429", 1.0)
    inflight.settle(mine, {b"a": Answer(vector=vector), b"b": Answer(refused="too long")}, limited)
    inflight.settle(mine, {}, None)  # answered already: no change
    assert np.array_equal(waiting[b"a"].result().answer(b"a").vector, vector)  # type: ignore[arg-type]
    with pytest.raises(RateLimited):
        waiting[b"c"].result().answer(b"c")
    assert len(inflight) == 2  # a (its vector, until released) and d (not settled yet)
    inflight.settle(again, {}, None)
    assert len(inflight) == 1
    inflight.release([b"a"])
    assert len(inflight) == 0


def test_repeated_texts_across_batches_prepared_ahead_are_paid_once_and_all_recorded(
    worker: AiWorker, stub: OpenAIStub
) -> None:
    texts = [f"post about topic {i % 5} number {i // 5 % 2}" for i in range(14)]  # ten distinct, repeated
    _posts(worker.database_url, texts)
    requests = stub.request_count("/v1/embeddings")
    assert worker.run_cycle().items == len(texts)
    worker.close()  # waits for the keeper

    distinct = len(set(texts))
    made = stub.request_count("/v1/embeddings") - requests
    assert rows(worker.database_url, "SELECT count(*), sum(items) FROM ai_usage WHERE operation = 'embeddings'") == [
        (made, distinct)
    ]
    assert rows(worker.database_url, "SELECT count(*) FROM ai_embedding_cache") == [(distinct,)]
    stored = rows(
        worker.database_url,
        "SELECT p.body, a.embedding::text FROM ai_posts a JOIN external_posts p ON p.id = a.post_id",
    )
    assert len(stored) == len(texts)
    for body, vector in stored:
        assert np.allclose(json.loads(vector), embed(body, 256), atol=1e-6)


def test_a_stop_during_the_embedding_calls_commits_the_items_before_the_first_text_not_sent(
    make: Callable[..., AiWorker],
) -> None:
    worker = make(batch_size=6, embedding_batch=1, concurrency=1)
    ids = _posts(
        worker.database_url, [f"post number {word}" for word in ("one", "two", "three", "four", "five", "six")]
    )
    real, sent = worker.client.embed, []

    def embed(texts: list[str]) -> Any:
        sent.append(texts)
        if len(sent) == 2:
            worker.request_stop()  # SIGTERM while the second request is out: no third is sent
        return real(texts)

    worker.client.embed = embed  # type: ignore[method-assign]
    assert worker.posts_batch(CycleResult()) is False
    assert len(sent) == 2
    # the two posts whose vectors came back are stored; the rest are not stored without one
    stored = rows(
        worker.database_url, "SELECT post_id, embedding IS NOT NULL, meta->>'embedding' FROM ai_posts ORDER BY 1"
    )
    assert stored == [(ids[0], True, "api"), (ids[1], True, "api")]
    cursor = "SELECT (value->>'id')::int FROM sync_cursors WHERE worker_name = 'ai' AND cursor_key = 'posts'"
    assert rows(worker.database_url, cursor) == [(ids[1],)]

    after_restart = make(batch_size=6, embedding_batch=1, concurrency=1)
    assert after_restart.run_cycle().items == 4
    assert rows(worker.database_url, "SELECT count(*) FROM ai_posts WHERE embedding IS NOT NULL") == [(6,)]
    assert rows(worker.database_url, "SELECT sum(items) FROM ai_usage WHERE operation = 'embeddings'") == [(6,)]


def test_a_post_deleted_during_its_calls_is_skipped_and_the_rest_of_the_batch_is_written_item_by_item(
    make: Callable[..., AiWorker],
) -> None:
    """The set-based write fails for the whole batch (the deleted post's row breaks its foreign
    key), so the batch is written again item by item in the same transaction, through the same
    staging table: each item alone, the deleted one logged and skipped, the cursor past all."""
    worker = make(batch_size=4, prefetch_batches=0)
    ids = _posts(worker.database_url, [f"a post about {word}" for word in ("tides", "gulls", "nets", "rope")])
    real = worker.client.embed

    def embed(texts: list[str]) -> Any:
        with psycopg.connect(worker.database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM external_posts WHERE id = %s", (ids[1],))
        return real(texts)

    worker.client.embed = embed  # type: ignore[method-assign]
    total = CycleResult()
    worker.posts_batch(total)
    assert (total.items, total.item_errors) == (3, 1)
    stored = rows(worker.database_url, "SELECT post_id, embedding IS NOT NULL FROM ai_posts ORDER BY 1")
    assert stored == [(ids[0], True), (ids[2], True), (ids[3], True)]
    cursor = "SELECT (value->>'id')::int FROM sync_cursors WHERE worker_name = 'ai' AND cursor_key = 'posts'"
    assert rows(worker.database_url, cursor) == [(ids[3],)]


# ---- topics ---------------------------------------------------------------------------------------------


def _reference(vectors: list[np.ndarray], threshold: float, max_topics: int) -> tuple[list[int], list[np.ndarray]]:
    """The documented assignment, item by item: the nearest unit centroid, a running mean of its
    members kept on the unit sphere; a new topic below `threshold` while there are fewer than
    `max_topics`."""
    centroids: list[np.ndarray] = []
    sizes: list[int] = []
    out: list[int] = []
    for vector in vectors:
        v = vector.astype(np.float64) / np.linalg.norm(vector.astype(np.float64))
        sims = np.stack(centroids) @ v if centroids else np.zeros(0)
        best = int(np.argmax(sims)) if centroids else -1
        if best < 0 or (sims[best] < threshold and len(centroids) < max_topics):
            centroids.append(v)
            sizes.append(1)
            out.append(len(centroids) - 1)
        else:
            moved = centroids[best] * sizes[best] + v
            centroids[best] = moved / np.linalg.norm(moved)
            sizes[best] += 1
            out.append(best)
    return out, centroids


def _first_seen(labels: list[Any]) -> list[int]:
    order: dict[Any, int] = {}
    return [order.setdefault(label, len(order)) for label in labels]


def test_topics_of_two_batches_are_those_of_the_item_by_item_assignment(migrated_url: str) -> None:
    rng = np.random.default_rng(15)
    centers = rng.normal(size=(6, 32))
    vectors = [(centers[i % 6] + rng.normal(scale=0.6, size=32)).astype(np.float32) for i in range(90)]
    expected, centroids = _reference(vectors, 0.55, 5)
    with psycopg.connect(migrated_url) as conn:
        if conn.execute("SELECT to_regclass('ai_topics')").fetchone() == (None,):
            pytest.skip("this Postgres server has no pgvector (DATABASE_URL pointing elsewhere?)")
        register_vector(conn)
        topics = Topics(conn, "m", 32)
        first = topics.assign(conn, [*vectors[:40], None], 0.55, 5)
        topics.save(conn)
        second = topics.assign(conn, vectors[40:], 0.55, 5)
        topics.save(conn)
        conn.commit()
    assert first[40] is None
    ids = first[:40] + second
    assert _first_seen(ids) == _first_seen(expected)
    saved = dict(rows(migrated_url, "SELECT id, centroid::text FROM ai_topics WHERE model = 'm' AND dims = 32"))
    assert set(saved) == set(ids) and len(saved) == len(centroids) == 5
    for topic_id, position in zip(ids, expected, strict=True):
        assert np.allclose(json.loads(saved[topic_id]), centroids[position], atol=1e-6)


def test_an_embedding_decodes_from_base64_or_from_a_list_of_floats():
    """The worker asks for base64 (the stand-in and the real API answer so); a provider that
    ignores `encoding_format` sends floats, which must give the same vector."""
    import base64

    from workers.ai.client import _vector

    floats = np.array([0.25, -1.5, 3.0e-8, 7.0], dtype="<f4")
    from_base64 = _vector(base64.b64encode(floats.tobytes()).decode())
    from_list = _vector([0.25, -1.5, 3.0e-8, 7.0])
    assert from_base64.dtype == from_list.dtype == np.float32
    assert from_base64.tolist() == from_list.tolist() == floats.tolist()


def test_a_batch_of_embeddings_is_the_stand_in_s_vectors_in_order_and_a_bad_reply_is_an_upstream_error(
    stub: OpenAIStub,
) -> None:
    """The worker reads the embeddings reply as plain JSON (not through the client's typed
    models): the matrix must hold exactly the stand-in's vectors, in input order; a truncated
    body, or a reply of the wrong count or size, is the provider's failure, not a crash."""
    from workers.ai.client import AiClient, AiSettings, embedding_matrix
    from workers.errors import UpstreamError

    client = AiClient(AiSettings(base_url=stub.base_url, api_key=KEY, dimensions=64))
    try:
        texts = [f"post {i} about the harbour and its boats" for i in range(7)]
        matrix, usage = client.embed(texts)
        assert matrix.shape == (7, 64) and matrix.dtype == np.float32
        assert np.array_equal(matrix, np.stack([embed(t, 64) for t in texts]))
        assert usage.items == 7 and usage.prompt_tokens > 0 and usage.cost_usd > 0
        stub.inject_fault("truncated", count=1, path_prefix="/v1/embeddings")
        with pytest.raises(UpstreamError, match="unexpected reply"):
            client.embed(texts)
    finally:
        stub.clear_faults()
        client.close()
    floats = {"data": [{"index": 1, "embedding": [1.0, 2.0]}, {"index": 0, "embedding": [3.0, 4.0]}]}
    assert embedding_matrix(floats, 2, 2).tolist() == [[3.0, 4.0], [1.0, 2.0]]
    for count, dims in ((3, 2), (2, 3)):
        with pytest.raises(UpstreamError, match="returned 2 embeddings"):
            embedding_matrix(floats, count, dims)
