"""Claim throughput of replicas (issue 11): `FOR UPDATE SKIP LOCKED` claims (workers/claims.py) with
1, 2 and 4 replicas against the naive patterns, over one queue of ITEMS items, in one run:

- `naive`: `SELECT ... LIMIT n` then `UPDATE ... SET state = 'claimed'` (no lock): replicas read the
  same rows before either marks them, so items are processed more than once (`dupes`);
- `for update, one tx`: the SELECT `FOR UPDATE` without SKIP LOCKED, the rows locked through the
  work until the results commit: no duplicates, but every replica queues behind the one holding the
  oldest rows (`claim wait`), so replicas add nothing; a waiter that wakes finds its rows done and
  gets a short or empty batch.

Each replica is a thread with its own connection; a batch is: claim BATCH items, "process" them
outside any transaction (WORK_MS per batch, as provider calls would take), then write one result
row per item and complete the claims in one transaction. Then, unless BENCH_AI_ITEMS=0, three `ai`
replicas over 10,000 posts against the OpenAI stand-in, checked exactly once per post.

`python -m bench claims` (env BENCH_CLAIM_ITEMS, default 20000; BENCH_AI_ITEMS, default 10000).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.stats import percentile, table
from sql import apply_migrations
from tests.support.postgres import fresh_database, postgres_server
from workers.claims import Claim, ClaimQueue

ITEMS = int(os.environ.get("BENCH_CLAIM_ITEMS", "20000"))
AI_ITEMS = int(os.environ.get("BENCH_AI_ITEMS", "10000"))
BATCH = 100
WORK_MS = 20.0
QUEUE = "bench:items"

NAIVE_SELECT = (
    "SELECT item_id, attempts, version FROM work_queue WHERE queue = %s AND state = 'ready' "
    "ORDER BY version, item_id LIMIT %s"
)
NAIVE_MARK = "UPDATE work_queue SET state = 'claimed', claimed_by = %s, attempts = attempts + 1 WHERE queue = %s AND item_id = ANY(%s)"
NAIVE_DONE = (
    "UPDATE work_queue SET state = 'done', completions = completions + 1 WHERE queue = %s AND item_id = ANY(%s)"
)
RESULT = "INSERT INTO bench_results (item_id, replica) SELECT unnest(%s::bigint[]), %s"


def _fill(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_results (item_id bigint NOT NULL, replica text NOT NULL)")
        conn.execute("TRUNCATE bench_results")
        conn.execute("DELETE FROM work_queue WHERE queue = %s", (QUEUE,))
        conn.execute(
            "INSERT INTO work_queue (queue, item_id, version) "
            "SELECT %s, i, now() + i * interval '1 ms' FROM generate_series(1, %s) AS i",
            (QUEUE, ITEMS),
        )
        conn.execute("ANALYZE work_queue")


def _timed_threads(threads: list[threading.Thread]) -> float:
    """Run the threads together; seconds until the last one ended."""
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


Claimer = Callable[[psycopg.Connection[Any], str], list[Claim]]
Completer = Callable[[psycopg.Connection[Any], str, list[Claim]], list[int]]


def _skip_locked() -> tuple[Claimer, Completer]:
    queues: dict[str, ClaimQueue] = {}

    def queue(replica: str) -> ClaimQueue:
        return queues.setdefault(replica, ClaimQueue("bench", "items", replica, lambda _c: None, timeout_s=300))

    def claim(conn: psycopg.Connection[Any], replica: str) -> list[Claim]:
        return queue(replica).claim(conn, BATCH)

    def complete(conn: psycopg.Connection[Any], replica: str, claims: list[Claim]) -> list[int]:
        return sorted(queue(replica).complete(conn, claims))

    return claim, complete


def _naive(lock: str) -> tuple[Claimer, Completer]:
    def claim(conn: psycopg.Connection[Any], replica: str) -> list[Claim]:
        with conn.transaction():
            rows = conn.execute(NAIVE_SELECT + lock, (QUEUE, BATCH)).fetchall()
            conn.execute(NAIVE_MARK, (replica, QUEUE, [r[0] for r in rows]))
        return [Claim(int(r[0]), int(r[1]) + 1, r[2]) for r in rows]

    def complete(conn: psycopg.Connection[Any], _replica: str, claims: list[Claim]) -> list[int]:
        ids = [c.item_id for c in claims]
        conn.execute(NAIVE_DONE, (QUEUE, ids))
        return ids

    return claim, complete


def _run(url: str, pattern: tuple[Claimer, Completer], replicas: int, one_tx: bool = False) -> dict[str, float]:
    """`one_tx`: claim, work and completion in one transaction (the claim's row locks held throughout)."""
    _fill(url)
    claim, complete = pattern
    waits: list[float] = []
    batches: list[int] = []
    lock = threading.Lock()

    def one_batch(conn: psycopg.Connection[Any], name: str) -> bool:
        """Claim, work, complete; False when nothing was claimable."""
        started = time.perf_counter()
        claims = claim(conn, name)
        with lock:
            waits.append(time.perf_counter() - started)
            batches.append(len(claims))
        if not claims:
            return False
        time.sleep(WORK_MS / 1000)  # the batch's work (outside any transaction unless one_tx)
        with conn.transaction():
            conn.execute(RESULT, (complete(conn, name, claims), name))
        return True

    def replica(name: str) -> None:
        empty = 0
        with psycopg.connect(url, autocommit=True) as conn:
            while empty < 3:
                with conn.transaction() if one_tx else contextlib.nullcontext():
                    found = one_batch(conn, name)
                empty = 0 if found else empty + 1
                if not found:
                    time.sleep(0.01)

    elapsed = _timed_threads([threading.Thread(target=replica, args=(f"r{i}",)) for i in range(replicas)])
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT item_id), count(*) - count(DISTINCT item_id) FROM bench_results"
        ).fetchone()
    assert row is not None
    distinct, dupes = int(row[0]), int(row[1])
    full = [b for b in batches if b]
    return {
        "items_per_s": distinct / elapsed,
        "dupes": dupes,
        "missing": ITEMS - distinct,
        "wait_p50_ms": percentile(waits, 50) * 1000,
        "wait_p99_ms": percentile(waits, 99) * 1000,
        "avg_batch": sum(full) / len(full) if full else 0.0,
    }


def _claims_table(url: str) -> None:
    patterns = [
        ("skip locked", _skip_locked, (1, 2, 4)),
        ("naive select+update", lambda: _naive(""), (2, 4)),
        ("for update, one tx", lambda: _naive(" FOR UPDATE"), (2, 4)),
        ("skip locked, one tx", _skip_locked, (4,)),
    ]
    results: list[tuple[str, int, dict[str, float]]] = []
    for label, make, counts in patterns:
        for n in counts:
            results.append((label, n, _run(url, make(), n, one_tx="one tx" in label)))
    base = results[0][2]["items_per_s"]
    print(
        table(
            [
                (
                    label,
                    n,
                    f"{r['items_per_s']:.0f}",
                    f"{r['items_per_s'] / base:.2f}x",
                    int(r["dupes"]),
                    int(r["missing"]),
                    f"{r['wait_p50_ms']:.1f} / {r['wait_p99_ms']:.1f}",
                    f"{r['avg_batch']:.0f}",
                )
                for label, n, r in results
            ],
            [
                "pattern",
                "replicas",
                "items/s",
                "vs 1 replica",
                "dupes",
                "missing",
                "claim wait p50/p99 ms",
                "avg batch",
            ],
        )
    )
    print(f"({ITEMS} items, batches of {BATCH}, {WORK_MS:g} ms of work per batch outside the transaction)")


def _ai(url: str) -> None:
    """Three ai replicas over AI_ITEMS posts against the stand-in: time, and exactly once per post."""
    from devnet.openai_api import OpenAIStub
    from tests.support.claims import drain, replica, seed_posts, write_counts

    os.environ["OPENAI_API_KEY"] = "sk-bench"
    seed_posts(url, AI_ITEMS)
    with OpenAIStub(api_key="sk-bench") as stub:
        workers = [replica(url, stub.base_url, name, 3) for name in ("ai", "ai-2", "ai-3")]
        done: dict[str, int] = {}
        errors: list[BaseException] = []
        elapsed = _timed_threads([threading.Thread(target=drain, args=(w, done, errors)) for w in workers])
    posts, missing, twice = write_counts(url)
    print(
        f"ai, 3 replicas: {posts} posts in {elapsed:.1f} s ({posts / elapsed:.0f}/s); per replica {done}; "
        f"never written {missing}, written twice {twice}; errors {len(errors)}"
    )


def main() -> None:
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with (
        tempfile.TemporaryDirectory() as workdir,
        postgres_server(Path(workdir)) as admin,
        fresh_database(admin) as url,
    ):
        with psycopg.connect(url, autocommit=True) as conn:
            apply_migrations(conn)
        _claims_table(url)
        if AI_ITEMS:
            _ai(url)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
