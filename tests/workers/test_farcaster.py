"""The farcaster worker against the hub stand-in over loopback, writing into a real Postgres."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from devnet.farcaster_hub import CAST_ADD, NETWORK, FarcasterHub, make_message, unix_time
from tests.support.db import last_cycle, rows
from tests.support.manager import TOKEN
from tests.support.waiting import wait_for
from tests.support.workers import kill_mid_sync, resume_matches_fresh_run, start_worker
from workers.errors import NotConfigured, UpstreamError
from workers.social.farcaster import API_KEY_ENV, FarcasterWorker

SNAPSHOT = {
    "external_posts": "SELECT platform, external_id, author_external_id, author_name, title, body, url, "
    "parent_external_id, root_external_id, channel, mentions, embeds, score, created_at, raw "
    "FROM external_posts ORDER BY platform, external_id",
    "profiles": "SELECT platform, external_id, username, display_name, bio, avatar_url, url, raw "
    "FROM profiles ORDER BY platform, external_id",
    "follows": "SELECT * FROM follows ORDER BY 1, 2, 3",
    "reactions": "SELECT * FROM reactions ORDER BY 1, 2, 3, 4",
    "sync_cursors": "SELECT worker_name, cursor_key, value FROM sync_cursors ORDER BY 1, 2",
}


@pytest.fixture
def hub() -> Iterator[FarcasterHub]:
    with FarcasterHub(seed=5, fids=10, casts=300) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


def make_worker(url: str, hub_url: str, fids: list[int], **config: Any) -> FarcasterWorker:
    worker = FarcasterWorker(name="farcaster", config={"hub_url": hub_url, "fids": fids, **config}, database_url=url)
    worker.heartbeat("starting")
    return worker


def counts(url: str) -> dict[str, int]:
    return {
        "casts": rows(url, "SELECT count(*) FROM external_posts WHERE platform = 'farcaster'")[0][0],
        "profiles": rows(url, "SELECT count(*) FROM profiles WHERE platform = 'farcaster'")[0][0],
        "follows": rows(url, "SELECT count(*) FROM follows WHERE platform = 'farcaster'")[0][0],
        "reactions": rows(url, "SELECT count(*) FROM reactions WHERE platform = 'farcaster'")[0][0],
    }


def snapshot(url: str, with_updated_at: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    taken = {name: rows(url, statement) for name, statement in SNAPSHOT.items()}
    if with_updated_at:
        taken["updated_at"] = rows(url, "SELECT external_id, updated_at FROM external_posts ORDER BY 1")
        taken["profile_updated_at"] = rows(url, "SELECT external_id, updated_at FROM profiles ORDER BY 1")
    return taken


def hub_counts(hub: FarcasterHub, fids: list[int]) -> dict[str, int]:
    return {
        "casts": sum(hub.cast_count(f) for f in fids),
        "profiles": len(fids),
        "follows": sum(len(hub.following(f)) for f in fids),
        "reactions": sum(len(hub.reactions(f)) for f in fids),
    }


# --- syncing ------------------------------------------------------------------------------------------


def test_full_sync_stores_what_the_hub_has_and_a_second_run_adds_nothing(hub, migrated_url):
    worker = make_worker(migrated_url, hub.url, hub.fids)
    result = worker.run_cycle()

    totals = hub.totals()
    expected = {
        "casts": totals["casts"],
        "profiles": totals["fids"],
        "follows": totals["links"],
        "reactions": totals["reactions"],
    }
    assert counts(migrated_url) == expected
    assert result.items == sum(expected.values()) and result.item_errors == 0
    per_fid = dict(rows(migrated_url, "SELECT author_external_id::int, count(*) FROM external_posts GROUP BY 1"))
    assert per_fid == hub.cast_counts()

    # Field by field for a reply, a channel cast and a cast with mentions and embeds.
    casts = hub.all_casts()
    reply = next(c for c in casts if "parentCastId" in c["data"]["castAddBody"])
    in_channel = next(c for c in casts if "parentUrl" in c["data"]["castAddBody"])
    mentioning = next(c for c in casts if c["data"]["castAddBody"]["mentions"] and c["data"]["castAddBody"]["embeds"])
    for cast in (reply, in_channel, mentioning):
        body, fid = cast["data"]["castAddBody"], cast["data"]["fid"]
        (row,) = rows(
            migrated_url,
            "SELECT author_external_id, author_name, body, parent_external_id, channel, "
            "mentions, embeds, created_at, raw FROM external_posts WHERE external_id = %s",
            (cast["hash"],),
        )
        assert row[0] == str(fid) and row[1] == hub.user_data(fid)["USER_DATA_TYPE_USERNAME"]
        assert row[2] == body["text"]
        assert row[3] == body.get("parentCastId", {}).get("hash")
        assert row[4] == body.get("parentUrl")
        assert row[5] == [
            {"fid": f, "position": p} for f, p in zip(body["mentions"], body["mentionsPositions"], strict=True)
        ]
        assert row[6] == body["embeds"]
        assert row[7] == datetime.fromtimestamp(unix_time(cast["data"]["timestamp"]), UTC)
        assert row[8] == cast
    fid = hub.fids[0]
    data = hub.user_data(fid)
    (profile,) = rows(
        migrated_url,
        "SELECT username, display_name, bio, avatar_url, url FROM profiles WHERE external_id = %s",
        (str(fid),),
    )
    assert profile == (
        data["USER_DATA_TYPE_USERNAME"],
        data["USER_DATA_TYPE_DISPLAY"],
        data["USER_DATA_TYPE_BIO"],
        data["USER_DATA_TYPE_PFP"],
        data.get("USER_DATA_TYPE_URL"),
    )

    before = snapshot(migrated_url, with_updated_at=True)
    again = worker.run_cycle()
    assert (again.items, again.item_errors) == (0, 0)
    assert snapshot(migrated_url, with_updated_at=True) == before  # not even updated_at moved


def test_new_data_appears_after_the_next_cycle(hub, migrated_url):
    fid, other = hub.fids[0], hub.fids[1]
    worker = make_worker(migrated_url, hub.url, hub.fids, page_size=7)  # many pages, tokens in the cursor
    worker.run_cycle()
    before = dict(rows(migrated_url, "SELECT external_id, updated_at FROM external_posts"))

    cast = hub.add_cast(fid, "a cast after the first sync", parent_url="https://warpcast.com/~/channel/dev")
    hub.add_reaction(other, fid, cast["hash"], "REACTION_TYPE_RECAST")
    target = next(f for f in hub.fids if f != fid and f not in hub.following(fid))
    hub.add_follow(fid, target)
    hub.set_user_data(fid, "USER_DATA_TYPE_BIO", "changed my bio")

    result = worker.run_cycle()
    assert (result.items, result.item_errors) == (4, 0)  # the cast, the recast, the follow, the profile
    assert counts(migrated_url) == {**hub_counts(hub, hub.fids), "profiles": 10}
    assert rows(migrated_url, "SELECT body, channel FROM external_posts WHERE external_id = %s", (cast["hash"],)) == [
        ("a cast after the first sync", "https://warpcast.com/~/channel/dev")
    ]
    assert rows(
        migrated_url, "SELECT actor_id, kind FROM reactions WHERE target_external_id = %s", (cast["hash"],)
    ) == [(str(other), "recast")]
    assert rows(migrated_url, "SELECT bio FROM profiles WHERE external_id = %s", (str(fid),)) == [("changed my bio",)]
    after = dict(rows(migrated_url, "SELECT external_id, updated_at FROM external_posts"))
    assert {k: v for k, v in after.items() if k in before} == before  # old casts were not rewritten
    assert worker.run_cycle().items == 0


def test_follow_expansion_adds_followed_fids_up_to_the_limit(hub, migrated_url):
    seed = max(hub.fids, key=lambda f: len(hub.following(f)))
    assert len(hub.following(seed)) >= 3
    worker = make_worker(migrated_url, hub.url, [seed], follow_expansion_limit=2)
    worker.run_cycle()
    tracked = [seed, *hub.following(seed)[:2]]  # breadth first, in numeric order
    assert rows(migrated_url, "SELECT external_id::int FROM profiles ORDER BY 1") == [(f,) for f in sorted(tracked)]
    assert counts(migrated_url) == hub_counts(hub, tracked)


def test_settings_row_chooses_the_fids(hub, migrated_url):
    worker = make_worker(migrated_url, hub.url, [])
    with pytest.raises(NotConfigured, match="farcaster_fids"):
        worker.validate()
    with psycopg.connect(migrated_url) as conn:
        conn.execute("INSERT INTO settings (key, value) VALUES ('farcaster_fids', %s)", (json.dumps(hub.fids[:2]),))
    worker.refresh_settings()
    worker.validate()
    worker.run_cycle()
    assert counts(migrated_url) == hub_counts(hub, hub.fids[:2])


def test_kill_9_mid_sync_then_restart_matches_an_uninterrupted_run(hub, migrated_url, pg_admin_url, tmp_path):
    config = {"hub_url": hub.url, "fids": hub.fids[:6], "follow_expansion_limit": 2, "page_size": 10}
    total = hub_counts(hub, [*hub.fids[:6]])["casts"]
    hub.inject_fault("slow", count=100_000, path_prefix="/v1/", delay=0.01)  # so there is a "mid"
    kill_mid_sync("farcaster", migrated_url, config, tmp_path, lambda: counts(migrated_url)["casts"] >= 40)
    hub.clear_faults()
    assert 0 < counts(migrated_url)["casts"] < total, "killed mid-sync"

    resume_matches_fresh_run(
        lambda url: FarcasterWorker(name="farcaster", config=config, database_url=url),
        migrated_url,
        pg_admin_url,
        snapshot,
    )
    assert counts(migrated_url)["casts"] > total  # expansion fids came in as well


def test_sigterm_mid_sync_finishes_the_page_and_exits_0(hub, migrated_url, tmp_path):
    config = {"hub_url": hub.url, "fids": hub.fids, "page_size": 10}
    hub.inject_fault("slow", count=100_000, delay=0.02)
    proc = start_worker("farcaster", migrated_url, config, tmp_path)
    try:
        wait_for(lambda: counts(migrated_url)["casts"] >= 40, 30, 0.01, "the sync to be under way")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    hub.clear_faults()
    assert rows(migrated_url, "SELECT phase FROM worker_heartbeats") == [("stopped",)]
    assert counts(migrated_url) != hub_counts(hub, hub.fids)
    FarcasterWorker(name="farcaster", config=config, database_url=migrated_url).run_cycle()
    assert counts(migrated_url) == hub_counts(hub, hub.fids)


# --- faults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("429", "rate limited by upstream"),
        ("500", "HTTP 500"),
        ("slow", "timed out"),
        ("truncated", "malformed JSON"),
        ("disconnect", "unreachable"),
    ],
)
def test_each_fault_fails_one_cycle_is_recorded_and_the_next_cycle_recovers(hub, migrated_url, kind, expected):
    worker = make_worker(migrated_url, hub.url, hub.fids, retries=0, timeout_s=0.3, interval_ms=10)
    hub.inject_fault(kind, path_prefix="/v1/reactionsByFid", retry_after=1, delay=1.0)
    started = time.monotonic()
    worker._one_cycle()
    ok, error = last_cycle(migrated_url)
    assert not ok and expected in (error or "")
    assert expected in rows(migrated_url, "SELECT last_error FROM worker_heartbeats")[0][0]
    assert rows(migrated_url, "SELECT count(*) FROM worker_errors WHERE message LIKE %s", (f"%{expected}%",))[0][0] == 1
    if kind == "429":
        assert worker._rate_limited_s == 1 and time.monotonic() - started >= 0.9  # Retry-After: 1 obeyed
    assert counts(migrated_url)["casts"] > 0  # pages before the fault were kept

    worker._one_cycle()
    assert last_cycle(migrated_url) == (True, None)
    assert counts(migrated_url) == hub_counts(hub, hub.fids)
    assert rows(migrated_url, "SELECT last_error FROM worker_heartbeats")[0][0] is None


def test_a_single_server_error_is_retried_within_the_cycle(hub, migrated_url):
    worker = make_worker(migrated_url, hub.url, hub.fids[:3], retries=2)
    hub.inject_fault("500", path_prefix="/v1/castsByFid")
    result = worker.run_cycle()
    assert result.item_errors == 0 and counts(migrated_url) == hub_counts(hub, hub.fids[:3])


def test_a_malformed_message_is_recorded_and_skipped(hub, migrated_url):
    fid = hub.fids[0]
    broken = {"type": CAST_ADD, "fid": fid, "timestamp": 1, "network": NETWORK, "castAddBody": {"mentions": []}}
    bad = hub.store.add(make_message(broken, hub.seed))  # no text
    nul = hub.add_cast(fid, "a NUL \x00 byte, which Postgres text cannot hold")
    worker = make_worker(migrated_url, hub.url, [fid])
    result = worker.run_cycle()
    assert result.item_errors == 1
    assert counts(migrated_url)["casts"] == hub.cast_count(fid) - 1
    ((key, message),) = rows(migrated_url, "SELECT item_key, message FROM worker_errors")
    assert bad["hash"] in key and "text" in message
    assert rows(migrated_url, "SELECT body FROM external_posts WHERE external_id = %s", (nul["hash"],)) == [
        ("a NUL  byte, which Postgres text cannot hold",)
    ]
    assert worker.run_cycle().item_errors == 0  # reported once, not every cycle


# --- configuration --------------------------------------------------------------------------------------


def test_missing_configuration_names_what_to_set(migrated_url):
    def validate(**config: Any) -> None:
        FarcasterWorker(name="farcaster", config=config, database_url=migrated_url).validate()

    with pytest.raises(NotConfigured, match="FARCASTER_HUB_URL"):
        validate()
    with pytest.raises(NotConfigured, match="farcaster_fids"):
        validate(hub_url="http://127.0.0.1:1")
    with pytest.raises(NotConfigured, match=API_KEY_ENV):
        validate(hub_url="http://127.0.0.1:1", fids=[3], api_key="in-the-yaml")
    with pytest.raises(NotConfigured, match="positive integers"):
        validate(hub_url="http://127.0.0.1:1", fids=["alice"])
    validate(hub_url="http://127.0.0.1:1", fids="3, 2")


def test_hosted_hub_api_key_comes_from_the_environment_and_is_never_shown(migrated_url, monkeypatch):
    with FarcasterHub(seed=2, fids=3, casts=30, api_key="hub-secret-key") as keyed:
        worker = make_worker(migrated_url, keyed.url, keyed.fids)
        with pytest.raises(UpstreamError, match=API_KEY_ENV):
            worker.run_cycle()
        monkeypatch.setenv(API_KEY_ENV, "hub-secret-key")
        worker.run_cycle()
        assert counts(migrated_url)["casts"] == 30
    worker.heartbeat()
    assert "hub-secret-key" not in json.dumps(rows(migrated_url, "SELECT detail FROM worker_heartbeats")[0][0])


def test_under_the_manager_it_is_healthy_and_counts_real_items(boot_manager):
    with FarcasterHub(seed=4, fids=5, casts=100, api_key="hub-secret-key") as keyed:
        m = boot_manager(
            {
                "farcaster": {
                    "module": "workers.social.farcaster",
                    "interval_ms": 1000,
                    "heartbeat_interval_ms": 200,
                    "hub_url": keyed.url,
                    "fids": keyed.fids,
                }
            },
            env={API_KEY_ENV: "hub-secret-key"},
        )
        status = m.wait_worker("farcaster", lambda w: w["healthy"] and w["itemsProcessed"] > 0, timeout=30)
        assert status["lastError"] is None and status["verdict"] == "healthy"
        assert m.sql("SELECT count(*) FROM external_posts")[0][0] == 100
        # itemsProcessed counts rows written: later cycles, with nothing new, add nothing.
        m.wait_worker("farcaster", lambda w: w["lastRun"] != status["lastRun"], timeout=10)
        total = m.worker("farcaster")["itemsProcessed"]
        assert total == sum(counts(m.database_url).values())
        detail = m.api("GET", "/api/workers/farcaster", token=TOKEN).text
        assert "hub-secret-key" not in detail and "hub-secret-key" not in m.output()


def test_migrations_leave_the_social_indexes(migrated_url):
    names = {n for (n,) in rows(migrated_url, "SELECT indexname FROM pg_indexes")}
    assert {
        "external_posts_parent_idx",
        "external_posts_root_idx",
        "follows_target_idx",
        "reactions_target_idx",
    } <= names
