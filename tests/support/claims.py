"""Replicas of the ai worker in one process, over seeded posts: shared by tests/workers/test_claims.py
and `python -m bench claims`."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from workers.ai.worker import AiWorker


def seed_posts(url: str, count: int) -> None:
    """`count` posts, and a trigger counting every write of an item's ai results in `ai_post_writes`."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('ai_posts')").fetchone() == (None,):
            raise RuntimeError("this Postgres server has no pgvector")
        conn.execute(
            "INSERT INTO external_posts (platform, external_id, body, created_at, updated_at) "
            "SELECT 'farcaster', 'c' || i, 'post number ' || i || ' about ' || (ARRAY['gas','cats','solana','rust'])[1 + i %% 4], "
            "now() - interval '1 hour', now() - interval '1 hour' + i * interval '1 ms' "
            "FROM generate_series(1, %s) AS i",
            (count,),
        )
        # an independent count of every write of an item's results, outside the code under test
        conn.execute("CREATE TABLE ai_post_writes (post_id bigint NOT NULL, at timestamptz DEFAULT clock_timestamp())")
        conn.execute(
            "CREATE FUNCTION count_ai_post_write() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO ai_post_writes (post_id) VALUES (NEW.post_id); RETURN NEW; END $$"
        )
        # Writing results sets processed_at; taking a stored post into the HNSW index later (the
        # vectors step) flips only vector_indexed, which is not a second write of its results.
        conn.execute(
            "CREATE TRIGGER ai_post_inserts AFTER INSERT ON ai_posts "
            "FOR EACH ROW EXECUTE FUNCTION count_ai_post_write()"
        )
        conn.execute(
            "CREATE TRIGGER ai_post_updates AFTER UPDATE ON ai_posts "
            "FOR EACH ROW WHEN (OLD.processed_at IS DISTINCT FROM NEW.processed_at) "
            "EXECUTE FUNCTION count_ai_post_write()"
        )


def replica(url: str, base_url: str, name: str, replicas: int, **config: Any) -> AiWorker:
    """One `ai` replica in this process (embeddings only: the claims are what is tested)."""
    settings = {
        "base_url": base_url,
        "max_retries": 0,
        "replicas": replicas,
        "summaries": False,
        "recommendations": 0,
        "batch_size": 100,
        **config,
    }
    if name != "ai":
        settings["replica_of"] = "ai"
    worker = AiWorker(name=name, config=settings, database_url=url)
    worker.heartbeat("starting")
    return worker


def drain(worker: AiWorker, done: dict[str, int], errors: list[BaseException]) -> None:
    """Cycles, as the worker's loop runs them, until nothing is left to claim or feed."""
    try:
        while True:
            result = worker.run_cycle()
            done[worker.name] = done.get(worker.name, 0) + result.items
            if not result.items and not result.more_pending:
                if worker.claims.rows_waiting() == 0:
                    return
                time.sleep(min(result.wait_s or 0.05, 0.05))  # others hold the rest (or the feed)
    except BaseException as exc:  # reported by the test
        errors.append(exc)
    finally:
        worker.close()


def write_counts(url: str) -> tuple[int, int, int]:
    """(posts, posts never written, posts written more than once), from `ai_post_writes`."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE w.n IS NULL), count(*) FILTER (WHERE w.n > 1) "
            "FROM external_posts p LEFT JOIN (SELECT post_id, count(*) AS n FROM ai_post_writes GROUP BY 1) w "
            "ON w.post_id = p.id"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])
