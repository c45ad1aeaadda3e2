"""Replicas that claim work (workers/claims.py): three `ai` replicas against the OpenAI stand-in and a
real Postgres share one queue; each item is written exactly once, none is missing; stuck claims are
taken over, a taken-over claim cannot complete, and an item that never completes is parked after
five attempts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devnet.openai_api import OpenAIStub
from tests.support.claims import drain, replica, seed_posts, write_counts
from tests.support.db import rows
from workers.claims import ClaimQueue, IdleBackoff

KEY = "sk-devnet-test"
ITEMS = 1000  # `python -m bench claims` runs 10,000 through three replicas


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(api_key=KEY) as server:
        yield server


def test_three_ai_replicas_process_each_item_exactly_once(
    migrated_url: str, stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    seed_posts(migrated_url, ITEMS)
    replicas = [replica(migrated_url, stub.base_url, name, 3) for name in ("ai", "ai-2", "ai-3")]
    done: dict[str, int] = {}
    errors: list[BaseException] = []
    threads = [threading.Thread(target=drain, args=(w, done, errors)) for w in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)

    assert write_counts(migrated_url) == (ITEMS, 0, 0)  # (posts, never written, written twice)
    assert sum(done.values()) == ITEMS
    assert all(done.get(w.name, 0) > 0 for w in replicas), done  # the work was shared
    queue = rows(
        migrated_url, "SELECT state, completions, count(*) FROM work_queue WHERE queue = 'ai:posts' GROUP BY 1, 2"
    )
    assert queue == [("done", 1, ITEMS)]
    embedded = rows(migrated_url, "SELECT count(*) FROM ai_posts WHERE embedding IS NOT NULL")[0][0]
    assert embedded == ITEMS
    # each replica's heartbeat row is its own
    beats = {r[0] for r in rows(migrated_url, "SELECT worker_name FROM worker_heartbeats")}
    assert {"ai", "ai-2", "ai-3"} <= beats


def _queue(url: str, replica: str, timeout_s: float = 60.0) -> ClaimQueue:
    return ClaimQueue("demo", "items", replica, fence=lambda _conn: None, timeout_s=timeout_s)


def _fill(conn: psycopg.Connection[Any], queue: ClaimQueue, count: int) -> None:
    stamps = conn.execute("SELECT now() + i * interval '1 ms' FROM generate_series(1, %s) AS i", (count,)).fetchall()
    rows_ = [(i + 1, stamp[0]) for i, stamp in enumerate(stamps)]
    assert queue.feed(conn, lambda _c, _after, _limit: rows_) == count


def test_claims_are_disjoint_and_a_taken_over_claim_cannot_complete(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as a, psycopg.connect(migrated_url, autocommit=True) as b:
        first, second = _queue(migrated_url, "demo", timeout_s=0.3), _queue(migrated_url, "demo-2", timeout_s=0.3)
        _fill(a, first, 10)
        mine, theirs = first.claim(a, 6), second.claim(b, 6)
        assert len(mine) == 6 and len(theirs) == 4
        assert not {c.item_id for c in mine} & {c.item_id for c in theirs}
        assert second.claim(b, 6) == []  # nothing due: all held

        time.sleep(0.4)  # the first replica "hung" past its claim deadline
        taken = second.claim(b, 10)
        assert {c.item_id for c in taken} == {c.item_id for c in mine} | {c.item_id for c in theirs}
        with a.transaction():
            assert first.complete(a, mine) == set()  # taken over: the hung replica writes nothing
        with b.transaction():
            assert second.complete(b, taken) == {c.item_id for c in taken}
        counts = rows(migrated_url, "SELECT state, completions, attempts, count(*) FROM work_queue GROUP BY 1, 2, 3")
        assert counts == [("done", 1, 2, 10)]


def test_an_item_that_never_completes_is_parked_after_five_attempts(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        queue = _queue(migrated_url, "demo")
        _fill(conn, queue, 1)
        for attempt in range(1, 6):
            claims = queue.claim(conn, 1)
            assert [c.attempts for c in claims] == [attempt]
            queue.release(conn, claims, f"boom {attempt}", delay_s=0)
        assert queue.claim(conn, 1) == []
        assert rows(migrated_url, "SELECT state, attempts, last_error FROM work_queue") == [("failed", 5, "boom 5")]

        # a stop or a rate limit is not the item's fault: the attempt is given back
        _fill(conn, ClaimQueue("demo", "other", "demo", lambda _c: None), 1)
        other = ClaimQueue("demo", "other", "demo", lambda _c: None)
        claims = other.claim(conn, 1)
        other.release(conn, claims, None, charge=False, delay_s=0)
        assert rows(migrated_url, "SELECT attempts, state FROM work_queue WHERE queue = 'demo:other'") == [(0, "ready")]


def test_idle_backoff_doubles_and_resets() -> None:
    backoff = IdleBackoff(0.5, 3.0)
    assert [backoff.next_wait_s() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.found_work()
    assert backoff.next_wait_s() == 0.5
