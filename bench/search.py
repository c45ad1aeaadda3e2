"""Search and AI throughput over a large synthetic corpus.

1. Indexing rate: the search worker's own code path (`SearchWorker.run_cycle`) over a backlog of
   `BENCH_SEARCH_POSTS` posts (default 1,000,000; bench/search_corpus.py), then new posts,
   edits of the text and edits of the score alone (updated_at moves, the text does not) arriving
   on the built index at the worker's default batch size.
2. Search latency, p50/p99 per query class, through the API's code path (`Search(...).run()`,
   mode auto: exact words, then typo/prefix widening when short of a page, or the tag index),
   and in the same run each query's tsquery as the naive ranked query (`ts_rank` over every
   match, top 20, same highlights), with the ratio naive/ours.
3. Embedding throughput against the OpenAI stand-in in its own process: raw requests of 10 and 100
   texts, and the ai worker's batches (embeddings only, then with summaries).

Runs on `DATABASE_URL`'s server when set, else an embedded Postgres in a temporary directory.
`BENCH_SEARCH_POSTS` sets the corpus size, `BENCH_SEARCH_REPS` the repetitions per query (10).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import psycopg

from bench.search_corpus import Corpus
from bench.stats import percentile, table
from devnet.http_stub import StubProcess
from sql import apply_migrations, queries_from
from tests.support.postgres import fresh_database, postgres_server
from workers.ai import AiWorker
from workers.ai.client import SUMMARY_PROMPT
from workers.ai.worker import AiWorkerSettings
from workers.base import CycleResult
from workers.search import SearchWorker
from workers.search.query import Search

POSTS = int(os.environ.get("BENCH_SEARCH_POSTS", "1000000"))
PARTS = set(os.environ.get("BENCH_SEARCH_PARTS", "index,latency,ai").split(","))
REPS = int(os.environ.get("BENCH_SEARCH_REPS", "10"))
NAIVE_REPS = 3
EMBED_TEXTS = 2000
CHAT_TEXTS = 600
QUERIES_PER_CLASS = 10
BACKFILL_BATCH = 2000
DAY = 86400.0
INTENDED: dict[str, str] = {}  # misspelt query -> the lexeme it was made from


def _close(worker: Any) -> None:
    for conn in (worker._data, worker._control):
        if conn is not None:
            conn.close()


def index_all(url: str, batch_size: int) -> tuple[int, float]:
    worker = SearchWorker(name="search", config={"batch_size": batch_size, "max_cycle_s": 1e9}, database_url=url)
    started = time.perf_counter()
    try:
        items = worker.run_cycle().items
    finally:
        worker.close()  # its lanes' connections
        _close(worker)
    return items, time.perf_counter() - started


def indexing(url: str, corpus: Corpus) -> list[list[object]]:
    rows: list[list[object]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        now = time.time()
        load_s = corpus.load(conn, POSTS, now - 365 * DAY, now - DAY)
        print(f"corpus: {POSTS:,} posts COPYed in {load_s:.1f} s", flush=True)
        conn.execute("VACUUM ANALYZE external_posts")
        items, seconds = index_all(url, BACKFILL_BATCH)
        rows.append(
            [
                f"backlog of {POSTS:,} posts, batch {BACKFILL_BATCH}",
                f"{items:,}",
                f"{seconds:.1f}",
                f"{items / seconds:,.0f}",
            ]
        )
        print(f"indexed the backlog: {items:,} rows in {seconds:.1f} s", flush=True)
        for name in ("search_posts", "post_tags", "search_lexemes", "search_lexeme_trigrams", "search_profiles"):
            conn.execute(f"VACUUM ANALYZE {name}")

        corpus.load(conn, 20_000, now - DAY, now)
        items, seconds = index_all(url, 500)
        rows.append(
            ["20,000 new posts, batch 500 (the default)", f"{items:,}", f"{seconds:.1f}", f"{items / seconds:,.0f}"]
        )
        conn.execute(
            "UPDATE external_posts SET body = body || ' edited', updated_at = now() WHERE id %% %s = 7",
            (max(1, POSTS // 10_000),),
        )
        items, seconds = index_all(url, 500)
        rows.append(["10,000 edited old posts, batch 500", f"{items:,}", f"{seconds:.1f}", f"{items / seconds:,.0f}"])
        conn.execute(  # updated_at moves with the score alone: the text, so the document and tags, stay
            "UPDATE external_posts SET score = coalesce(score, 0) + 1, updated_at = now() WHERE id %% %s = 3",
            (max(1, POSTS // 10_000),),
        )
        items, seconds = index_all(url, 500)
        rows.append(
            ["10,000 re-scored old posts, batch 500", f"{items:,}", f"{seconds:.1f}", f"{items / seconds:,.0f}"]
        )
        conn.execute("VACUUM ANALYZE search_posts")
        copy_rate = copy_limit(conn)
        print(
            f"COPY of the built rows into tables like search_posts and post_tags: {copy_rate:,.0f} posts/s", flush=True
        )
        for row in rows:
            row.append(f"{float(str(row[3]).replace(',', '')) / copy_rate:.2f}")
        rows.append(["COPY of the same rows (the limit)", "", "", f"{copy_rate:,.0f}", "1.00"])
        sizes = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('search_posts')), "
            "pg_size_pretty(pg_relation_size('search_posts_tsv_idx')), "
            "pg_size_pretty(pg_total_relation_size('post_tags')), "
            "pg_size_pretty(pg_total_relation_size('search_lexemes') + pg_total_relation_size('search_lexeme_trigrams')), "
            "(SELECT count(*) FROM search_lexemes)"
        ).fetchone()
        assert sizes is not None
        print(
            f"sizes: search_posts {sizes[0]} (GIN {sizes[1]}), post_tags {sizes[2]}, lexicon {sizes[3]} "
            f"({sizes[4]:,} lexemes)"
        )
    return rows


def copy_limit(conn: psycopg.Connection[Any]) -> float:
    """Posts/s of COPYing the finished index rows (documents and tags) into tables like
    search_posts and post_tags, with the same indexes and foreign keys (if any): the rate indexing is
    measured against (it also computes the documents; COPY only stores them)."""
    docs = conn.execute("SELECT count(*) FROM search_posts").fetchone()
    assert docs is not None
    buffers: dict[str, bytes] = {}
    for table_name in ("search_posts", "post_tags"):
        with conn.cursor().copy(f"COPY {table_name} TO STDOUT (FORMAT BINARY)") as out:
            buffers[table_name] = b"".join(bytes(chunk) for chunk in out)
        conn.execute(f"DROP TABLE IF EXISTS bench_{table_name}")
        conn.execute(f"CREATE TABLE bench_{table_name} (LIKE {table_name} INCLUDING ALL)")
        for (definition,) in conn.execute(  # the table's foreign keys, if it has any (0029 dropped them)
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            (table_name,),
        ).fetchall():
            conn.execute(f"ALTER TABLE bench_{table_name} ADD {definition}")
    started = time.perf_counter()
    with conn.transaction():
        for table_name, data in buffers.items():
            with conn.cursor().copy(f"COPY bench_{table_name} FROM STDIN (FORMAT BINARY)") as into:
                into.write(data)
    seconds = time.perf_counter() - started
    for table_name in buffers:
        conn.execute(f"DROP TABLE bench_{table_name}")
    return int(docs[0]) / seconds


def query_classes(conn: psycopg.Connection[Any], corpus: Corpus) -> dict[str, list[str]]:
    rnd = random.Random(7)

    def lexemes(lo: int, hi: int, n: int, min_len: int = 3) -> list[str]:
        found = [
            r[0]
            for r in conn.execute(
                "SELECT lexeme FROM search_lexemes WHERE ndoc BETWEEN %s AND %s AND length(lexeme) >= %s ORDER BY lexeme",
                (lo, hi, min_len),
            )
        ]
        return rnd.sample(found, min(n, len(found)))

    n = QUERIES_PER_CLASS
    typos: list[str] = []
    for word in lexemes(500, 100_000, 5 * n, min_len=6):
        bad = corpus.typo(word)
        if bad != word and not conn.execute("SELECT 1 FROM search_lexemes WHERE lexeme = %s", (bad,)).fetchone():
            typos.append(bad)
            INTENDED[bad] = word
    prefixes = [w[:5] for w in lexemes(1_000, 20_000, 5 * n, min_len=8)]
    prefixes = [
        p for p in prefixes if not conn.execute("SELECT 1 FROM search_lexemes WHERE lexeme = %s", (p,)).fetchone()
    ]
    tags = [
        ("#" if kind == "hashtag" else "$") + tag
        for kind, tag in conn.execute(
            "SELECT kind, tag FROM (SELECT kind, tag, count(*) AS n FROM post_tags WHERE kind IN ('hashtag', 'cashtag') "
            "GROUP BY 1, 2) t WHERE n >= 100 ORDER BY n DESC, tag LIMIT 40"
        )
    ]
    return {
        "common word (20k-100k docs)": lexemes(20_000, 100_000, n),
        "mid word (1k-20k docs)": lexemes(1_000, 20_000, n),
        "rare word (10-1k docs)": lexemes(10, 1_000, n),
        "two words": [f"{a} {b}" for a, b in zip(lexemes(5_000, 100_000, n), lexemes(5_000, 100_000, n), strict=False)],
        "misspelt word": typos[:n],
        "prefix (5 letters)": prefixes[:n],
        "tag (#, $)": rnd.sample(tags, min(n, len(tags))),
    }


async def _timed_search(conn: psycopg.AsyncConnection[Any], q: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = await Search(conn, q, limit=20).run()
    return time.perf_counter() - started, answer


def _used_tsquery(answer: dict[str, Any], q: str) -> str:
    """The tsquery the answer's results came from (for tags: the tag's word)."""
    matched = {r["matchedBy"] for r in answer["results"]}
    if "fuzzy" in matched and answer.get("widenedQuery"):
        return str(answer["widenedQuery"])
    if answer.get("tsquery"):
        return str(answer["tsquery"])
    return q.lstrip("#$")


async def latency(url: str, classes: dict[str, list[str]]) -> list[list[object]]:
    naive_sql = queries_from("search.sql")["search_posts_naive"]
    naive_widened_sql = queries_from("search.sql")["search_posts_naive_widened"]
    out: list[list[object]] = []
    all_ours: list[float] = []
    all_naive: list[float] = []
    all_widening: list[float] = []
    corrected: list[bool] = []
    exact_ours: list[float] = []  # the single-word classes: the exact-word p50 the others are measured against
    p50s: list[float] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for name, queries in classes.items():
            if not queries:
                continue  # a small corpus has no words that common
            ours: list[float] = []
            naive: list[float] = []
            widening: list[float] = []  # naive, widening the query itself where ours widened it
            matches: list[int] = []
            counts: list[int] = []
            for q in queries:
                _, answer = await _timed_search(conn, q)  # warm
                for _ in range(REPS):
                    seconds, answer = await _timed_search(conn, q)
                    ours.append(seconds)
                counts.append(len(answer["results"]))
                tsquery = _used_tsquery(answer, q)
                cur = await conn.execute("SELECT count(*) FROM search_posts WHERE tsv @@ %s::tsquery", (tsquery,))
                matches.append(int((await cur.fetchone() or (0,))[0]))
                widened = tsquery == answer.get("widenedQuery")
                await conn.execute(naive_sql, {"q": tsquery, "limit": 20})  # warm
                if widened:
                    await conn.execute(naive_widened_sql, {"typed": q, "limit": 20})
                for _ in range(NAIVE_REPS):
                    started = time.perf_counter()
                    cur = await conn.execute(naive_sql, {"q": tsquery, "limit": 20})
                    await cur.fetchall()
                    naive.append(time.perf_counter() - started)
                    if widened:  # the naive query had its tsquery widened for free; widening it too:
                        started = time.perf_counter()
                        cur = await conn.execute(naive_widened_sql, {"typed": q, "limit": 20})
                        await cur.fetchall()
                        widening.append(time.perf_counter() - started)
                    else:
                        widening.append(naive[-1])
                if q in INTENDED:
                    corrected.append(f"'{INTENDED[q]}'" in str(answer.get("widenedQuery")))
            all_ours += ours
            all_naive += naive
            if name.split(" (")[0] in ("common word", "mid word", "rare word"):
                exact_ours += ours
            p50s.append(percentile(ours, 50))
            all_widening += widening
            out.append(
                _latency_row(
                    name, len(queries), statistics.median(matches), statistics.mean(counts), ours, naive, widening
                )
            )
            print(f"  {name}: done", flush=True)
    out.append(
        _latency_row(
            "all queries", sum(len(q) for q in classes.values()), None, None, all_ours, all_naive, all_widening
        )
    )
    exact = percentile(exact_ours, 50)
    for row, p50 in zip(out, [*p50s, percentile(all_ours, 50)], strict=True):
        row.append(f"{p50 / exact:.2f}")
    print(f"exact-word p50 (common, mid and rare single words): {exact * 1000:.1f} ms", flush=True)
    if corrected:
        print(
            f"typo correction: the intended word is among the alternatives for {sum(corrected)} of "
            f"{len(corrected)} misspelt queries",
            flush=True,
        )
    return out


def _latency_row(
    name: str,
    n: int,
    matches: float | None,
    results: float | None,
    ours: list[float],
    naive: list[float],
    widening: list[float],
) -> list[object]:
    o50, o99 = percentile(ours, 50) * 1000, percentile(ours, 99) * 1000
    n50, n99 = percentile(naive, 50) * 1000, percentile(naive, 99) * 1000
    return [
        name,
        n,
        "" if matches is None else f"{matches:,.0f}",
        "" if results is None else f"{results:.1f}",
        f"{o50:.1f}",
        f"{o99:.1f}",
        f"{n50:.1f}",
        f"{n99:.1f}",
        f"{n50 / o50:.1f}x",
        f"{n99 / o99:.1f}x",
        f"{percentile(widening, 50) * 1000 / o50:.1f}x",
    ]


def _raw_rate(call: Any, batches: list[list[str]], concurrency: int) -> tuple[float, float]:
    """(seconds, texts/s) of `call(batch)` for every batch, `concurrency` requests in flight."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, batches))
    seconds = time.perf_counter() - started
    return seconds, sum(len(b) for b in batches) / seconds


def embeddings(url: str) -> list[list[object]]:
    """Raw provider throughput (the limit) and the ai worker's, in the same run against the same
    stand-in; the worker runs with its default batch, request size and concurrency."""
    rows: list[list[object]] = []
    stub = StubProcess("devnet.openai_api", ["--api-key", "sk-bench"]).start()
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    concurrency = AiWorkerSettings().concurrency
    size = AiWorkerSettings().embedding_batch
    try:
        with psycopg.connect(url) as conn:
            texts = [r[0] for r in conn.execute("SELECT body FROM external_posts ORDER BY id LIMIT %s", (EMBED_TEXTS,))]
            chat_texts = [
                r[0]
                for r in conn.execute(
                    "SELECT body FROM external_posts ORDER BY id OFFSET %s LIMIT %s", (EMBED_TEXTS, CHAT_TEXTS)
                )
            ]
        client = openai.OpenAI(api_key="sk-bench", base_url=stub.url + "/v1", max_retries=0)

        def embed(batch: list[str]) -> None:
            client.embeddings.create(model="text-embedding-3-small", input=batch, dimensions=256)

        def chat(batch: list[str]) -> None:
            for text in batch:
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": text}],
                    response_format={"type": "json_object"},
                )

        embed_limit = 0.0
        for batch, parallel in ((10, 1), (100, 1), (size, concurrency)):
            seconds, rate = _raw_rate(embed, [texts[i : i + batch] for i in range(0, len(texts), batch)], parallel)
            embed_limit = max(embed_limit, rate)
            rows.append(
                [
                    f"raw: requests of {batch} texts, {parallel} in flight",
                    len(texts),
                    f"{seconds:.2f}",
                    f"{rate:,.0f}",
                    "",
                ]
            )
        embed_s, _ = _raw_rate(embed, [chat_texts[i : i + size] for i in range(0, len(chat_texts), size)], concurrency)
        chat_s, _ = _raw_rate(chat, [[t] for t in chat_texts], concurrency)
        both_limit = len(chat_texts) / (embed_s + chat_s)
        rows.append(
            [
                f"raw: chat calls + embeddings, {concurrency} in flight",
                len(chat_texts),
                f"{embed_s + chat_s:.2f}",
                f"{both_limit:,.0f}",
                "",
            ]
        )
        client.close()
        for label, count, config, limit in (
            ("ai worker, embeddings only", EMBED_TEXTS, {"summaries": False}, embed_limit),
            ("ai worker, embeddings + summaries", CHAT_TEXTS, {}, both_limit),
        ):
            worker = AiWorker(name="ai", config={"base_url": stub.url + "/v1", **config}, database_url=url)
            total = CycleResult()
            worker.validate()
            started = time.perf_counter()
            while total.items < count and worker.posts_batch(total):
                pass
            seconds = time.perf_counter() - started
            rate = total.items / seconds
            rows.append(
                [
                    f"{label}, batch {worker.settings.batch_size}",
                    total.items,
                    f"{seconds:.2f}",
                    f"{rate:,.0f}",
                    f"{rate / limit:.2f}",
                ]
            )
            rows.append(vector_index_row(url, worker, limit))
            worker.close()
            for name in ("ai", "calls"):
                worker.drop_client(name)
            _close(worker)
    finally:
        stub.stop()
    return rows


def vector_index_row(url: str, worker: AiWorker, limit: float) -> list[object]:
    """The deferred half of the ai worker's write path: the posts it stored join the HNSW index
    and get their recommendations (`vectors_batch`, run after the provider streams)."""
    total = CycleResult()
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM ai_posts WHERE NOT vector_indexed AND embedding IS NOT NULL")
        waiting = int((row.fetchone() or (0,))[0])
    started = time.perf_counter()
    while worker.vectors_batch(total):
        pass
    seconds = time.perf_counter() - started
    rate = waiting / seconds if seconds else 0.0
    return [
        f"  then into the HNSW index + recommendations, batch {worker.settings.vector_batch}",
        waiting,
        f"{seconds:.2f}",
        f"{rate:,.0f}",
        f"{rate / limit:.2f}",
    ]


def main() -> None:
    print(f"search bench: {POSTS:,} posts (BENCH_SEARCH_POSTS), {REPS} runs per query", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-search-") as tmp,
        postgres_server(Path(tmp) / "pg") as admin,
        fresh_database(admin) as url,
    ):
        with psycopg.connect(url, autocommit=True) as conn:
            apply_migrations(conn)
        corpus = Corpus()
        index_rows: list[list[object]] = []
        latency_rows: list[list[object]] = []
        embed_rows: list[list[object]] = []
        if PARTS & {"index", "latency"}:
            index_rows = indexing(url, corpus)
        else:
            with psycopg.connect(url, autocommit=True) as conn:
                now = time.time()
                corpus.load(conn, POSTS, now - 365 * DAY, now - DAY)
        if "latency" in PARTS:
            with psycopg.connect(url, autocommit=True) as conn:
                classes = query_classes(conn, corpus)
            latency_rows = asyncio.run(latency(url, classes))
        if "ai" in PARTS:
            embed_rows = embeddings(url)
    print(f"load average at the end: {Path('/proc/loadavg').read_text().strip()}")
    print()
    print(table(index_rows, ["indexing (search worker)", "rows", "seconds", "rows/s", "/ COPY"]))
    print()
    print(
        table(
            latency_rows,
            [
                "query class",
                "queries",
                "median matches",
                "results",
                "ours p50 ms",
                "ours p99 ms",
                "naive p50 ms",
                "naive p99 ms",
                "naive/ours p50",
                "naive/ours p99",
                "naive+widening/ours p50",
                "p50 / exact p50",
            ],
        )
    )
    print("  ours: GET /api/search's code path (mode auto, limit 20); naive: ts_rank over every match of the same")
    print("  tsquery, top 20, same ts_headline. Times include the round trip over the unix socket.")
    print("  naive+widening: where ours widened the query, the naive query widening it too, in one statement")
    print("  (search_posts_naive_widened: search_query(q, true), then ranked as naive); the naive column gets the")
    print("  widened tsquery for free.")
    print()
    print(table(embed_rows, ["embeddings (stand-in in its own process)", "texts", "seconds", "texts/s", "/ raw"]))
    print("  / raw: the worker's rate over the best raw rate of the same calls (embeddings only: the best raw")
    print("  embeddings row; with summaries: the raw chat + embeddings row).")


if __name__ == "__main__":
    main()
