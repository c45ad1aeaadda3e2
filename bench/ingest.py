"""Ingest throughput of the social write path: casts per second into `external_posts` through
`SocialStore.write_posts` (COPY into a staging table, then one upsert per page, a transaction and a
cursor write per page, as the farcaster worker does), next to a raw COPY of the same rows straight
into the table on the same server: the floor. Also shown: re-upserting rows that did not change
(what a re-read page costs), and a whole worker cycle from the hub stand-in over loopback HTTP.

`BENCH_CASTS` (default 30000) sets the dataset size; `BENCH_PAGE` (default 1000) the page size.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.stats import table
from devnet.farcaster_hub import FarcasterHub
from devnet.http_stub import StubProcess
from sql import apply_migrations, query
from tests.support.postgres import fresh_database, postgres_server
from workers.social.farcaster import FarcasterWorker, cast_row
from workers.social.store import PostRow, SocialStore

RUNS = 5
RAW_COPY = (
    "COPY external_posts (platform, external_id, author_external_id, author_name, title, body, url, "
    "parent_external_id, root_external_id, channel, mentions, embeds, score, created_at, raw) FROM STDIN"
)


def _empty(conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE external_posts, sync_cursors")
    conn.execute("VACUUM ANALYZE external_posts")


def worker_path(conn: psycopg.Connection[Any], rows: list[PostRow], page: int) -> None:
    store = SocialStore()
    store.prepare(conn)
    for start in range(0, len(rows), page):
        with conn.transaction():
            store.write_posts(conn, rows[start : start + page])
            conn.execute(query("set_cursor"), ("bench", "fid:1", Jsonb({"casts": {"token": str(start)}})))


def raw_copy(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    with conn.transaction(), conn.cursor() as cur, cur.copy(RAW_COPY) as copy:
        for row in rows:
            copy.write_row(row)


def timed(setup: Callable[[], None], run: Callable[[], None]) -> float:
    """Median seconds of `run` over RUNS runs, each after `setup` (not timed)."""
    seconds = []
    for _ in range(RUNS):
        setup()
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    n_casts = int(os.environ.get("BENCH_CASTS", "30000"))
    page = int(os.environ.get("BENCH_PAGE", "1000"))
    print(f"seeding a hub stand-in with {n_casts} casts ...", file=sys.stderr, flush=True)
    n_fids = max(10, n_casts // 150)
    hub = FarcasterHub(seed=1, fids=n_fids, casts=n_casts)
    names = hub.usernames()
    messages = hub.all_casts()
    started = time.perf_counter()
    rows = [cast_row(m, names.get(m["data"]["fid"])) for m in messages]
    parse_s = time.perf_counter() - started
    # The raw COPY gets created_at ready-made: its conversion is not what is measured.
    raw_rows = [(*r[:13], datetime.fromtimestamp(r.created_epoch, UTC), r.raw) for r in rows]

    out: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp, postgres_server(Path(tmp) / "pg") as admin_url:
        with fresh_database(admin_url) as url, psycopg.connect(url, autocommit=True) as conn:
            apply_migrations(conn)
            conn.autocommit = True
            floor = timed(lambda: _empty(conn), lambda: raw_copy(conn, raw_rows))
            ours = timed(lambda: _empty(conn), lambda: worker_path(conn, rows, page))
            unchanged = timed(lambda: None, lambda: worker_path(conn, rows, page))  # every row already stored

            def rate(seconds: float) -> str:
                return f"{len(rows) / seconds:,.0f}"

            out.append(
                ["raw COPY into external_posts (one transaction)", len(rows), f"{floor:.3f}", rate(floor), "1.00x"]
            )
            out.append(
                [
                    f"worker write path (COPY→stage + upsert, {page}/page, cursor per page)",
                    len(rows),
                    f"{ours:.3f}",
                    rate(ours),
                    f"{floor / ours:.2f}x",
                ]
            )
            out.append(
                [
                    "  the same rows again, unchanged (a re-read page)",
                    len(rows),
                    f"{unchanged:.3f}",
                    rate(unchanged),
                    f"{floor / unchanged:.2f}x",
                ]
            )
            out.append(
                ["  parsing hub messages into rows (Python, no I/O)", len(rows), f"{parse_s:.3f}", rate(parse_s), ""]
            )

        # The hub in its own process (as under --devnet), so its JSON work is not billed to the worker.
        served = StubProcess("devnet.farcaster_hub", ["--seed", "1", "--fids", str(n_fids), "--casts", str(n_casts)])
        with fresh_database(admin_url) as url, served:
            with psycopg.connect(url) as conn:
                apply_migrations(conn)
            config = {"hub_url": served.url, "fids": hub.fids, "page_size": page}
            worker = FarcasterWorker(name="farcaster", database_url=url, config=config)
            started = time.perf_counter()
            result = worker.run_cycle()
            cycle = time.perf_counter() - started
            worker.close()
            label = f"whole worker cycle, hub over loopback HTTP ({result.items} rows incl. reactions etc.; 1 run)"
            out.append([label, len(rows), f"{cycle:.3f}", rate(cycle), f"{floor / cycle:.2f}x"])
    print(table(out, ["measure", "casts", "seconds", "casts/s", "vs raw COPY"]))


if __name__ == "__main__":
    main()
