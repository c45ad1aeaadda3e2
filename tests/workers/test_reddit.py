"""The reddit worker (PRAW, unchanged) against the Reddit stand-in over loopback, into a real Postgres."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devnet.reddit_api import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD, DEFAULT_USERNAME, RedditAPI
from tests.support.db import last_cycle, rows
from tests.support.manager import TOKEN
from tests.support.waiting import wait_for
from tests.support.workers import kill_mid_sync, resume_matches_fresh_run, start_worker
from workers.errors import NotConfigured, RateLimited, UpstreamError
from workers.social.reddit import PASSWORD_ENV, SECRET_ENV, USERNAME_ENV, RedditWorker

SUBREDDITS = {"ethereum": 30, "web3": 15, "cryptocurrency": 20, "ethdev": 10}  # ethdev is not synced
SYNCED = ["ethereum", "web3", "cryptocurrency"]  # the worker's default
SNAPSHOT = {
    "external_posts": "SELECT platform, external_id, author_external_id, author_name, title, body, url, "
    "parent_external_id, root_external_id, channel, mentions, embeds, score, created_at, raw "
    "FROM external_posts ORDER BY platform, external_id",
    "profiles": "SELECT platform, external_id, username, display_name, bio, avatar_url, url, raw "
    "FROM profiles ORDER BY platform, external_id",
    "sync_cursors": "SELECT worker_name, cursor_key, value FROM sync_cursors ORDER BY 1, 2",
}


@pytest.fixture
def api() -> Iterator[RedditAPI]:
    # A budget big enough that prawcore's pacing (it spreads requests over the window) never sleeps.
    with RedditAPI(seed=3, subreddits=SUBREDDITS, comments_per_post=3, ratelimit_requests=1_000_000) as server:
        yield server


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, DEFAULT_CLIENT_SECRET)
    monkeypatch.delenv(USERNAME_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


def worker_config(url: str, **extra: Any) -> dict[str, Any]:
    # requests_per_minute 0: the stand-in's budget is huge, and the pacing is not what these tests time.
    return {"client_id": DEFAULT_CLIENT_ID, "oauth_url": url, "reddit_url": url, "requests_per_minute": 0, **extra}


def make_worker(database_url: str, api_url: str, **extra: Any) -> RedditWorker:
    worker = RedditWorker(name="reddit", config=worker_config(api_url, **extra), database_url=database_url)
    worker.heartbeat("starting")
    return worker


def counts(url: str) -> dict[str, int]:
    ((posts, comments),) = rows(
        url,
        "SELECT count(*) FILTER (WHERE external_id LIKE 't3_%'), "
        "count(*) FILTER (WHERE external_id LIKE 't1_%') FROM external_posts",
    )
    return {
        "posts": posts,
        "comments": comments,
        "profiles": rows(url, "SELECT count(*) FROM profiles WHERE platform = 'reddit'")[0][0],
    }


def expected_counts(api: RedditAPI, subreddits: list[str] = SYNCED) -> dict[str, int]:
    posts = [p for s in subreddits for p in api.posts(s)]
    comments = [c for p in posts for c in api.comments(p["id"])]
    authors = {t["author"] for t in posts + comments} - {"[deleted]"}
    return {"posts": len(posts), "comments": len(comments), "profiles": len(authors)}


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows(url, statement) for name, statement in SNAPSHOT.items()}


# --- syncing ------------------------------------------------------------------------------------------


def test_full_sync_stores_posts_threads_and_authors_and_a_second_run_adds_nothing(api, migrated_url):
    worker = make_worker(migrated_url, api.url, page_size=10)
    result = worker.run_cycle()

    expected = expected_counts(api)
    assert counts(migrated_url) == expected
    assert result.items == sum(expected.values()) and result.item_errors == 0
    assert rows(migrated_url, "SELECT DISTINCT channel FROM external_posts ORDER BY 1") == [
        (s,) for s in sorted(SYNCED)
    ]

    post = max(api.posts("ethereum"), key=lambda p: p["num_comments"])
    (row,) = rows(
        migrated_url,
        "SELECT title, body, author_external_id, root_external_id, score, url, "
        "extract(epoch FROM created_at)::float8 FROM external_posts WHERE external_id = %s",
        (post["name"],),
    )
    assert row == (
        post["title"],
        post["selftext"],
        None if post["author"] == "[deleted]" else post["author"],
        post["name"],
        post["score"],
        "https://www.reddit.com" + post["permalink"],
        post["created_utc"],
    )
    stored = dict(
        rows(
            migrated_url,
            "SELECT external_id, parent_external_id FROM external_posts "
            "WHERE root_external_id = %s AND external_id LIKE 't1_%%'",
            (post["name"],),
        )
    )
    assert stored == {c["name"]: c["parent_id"] for c in api.comments(post["id"])}  # the thread, as a tree

    before = snapshot(migrated_url)
    updated = rows(migrated_url, "SELECT max(updated_at) FROM external_posts")
    again = worker.run_cycle()
    assert (again.items, again.item_errors) == (0, 0)
    assert snapshot(migrated_url) == before
    assert rows(migrated_url, "SELECT max(updated_at) FROM external_posts") == updated


def test_new_posts_and_comments_appear_after_the_next_cycle(api, migrated_url):
    worker = make_worker(migrated_url, api.url, page_size=10)
    worker.run_cycle()
    newest = api.posts("ethereum")[0]
    (old_updated,) = rows(
        migrated_url, "SELECT updated_at FROM external_posts WHERE external_id = %s", (newest["name"],)
    )[0]

    late = api.add_comment(newest["id"], "a late comment on a recent post")
    post = api.add_post("web3", "A post after the first sync", "with a body")
    comment = api.add_comment(post["id"], "first!")
    reply = api.add_comment(post["id"], "a reply", parent=comment["name"], author="devnet_poster")

    result = worker.run_cycle()
    # The new post, its two comments, the late comment, the recent post's new num_comments, two new authors.
    assert (result.items, result.item_errors) == (7, 0)
    assert counts(migrated_url) == expected_counts(api)
    assert rows(
        migrated_url,
        "SELECT external_id, parent_external_id, root_external_id FROM external_posts "
        "WHERE root_external_id = %s ORDER BY created_at",
        (post["name"],),
    ) == [
        (post["name"], None, post["name"]),
        (comment["name"], post["name"], post["name"]),
        (reply["name"], comment["name"], post["name"]),
    ]
    assert rows(
        migrated_url, "SELECT parent_external_id FROM external_posts WHERE external_id = %s", (late["name"],)
    ) == [(newest["name"],)]
    # A new comment count is not new content: the post is rewritten but keeps its updated_at.
    assert rows(
        migrated_url,
        "SELECT (raw->>'num_comments')::int, updated_at FROM external_posts WHERE external_id = %s",
        (newest["name"],),
    ) == [(newest["num_comments"] + 1, old_updated)]
    assert worker.run_cycle().items == 0


def test_kill_9_mid_sync_then_restart_matches_an_uninterrupted_run(api, migrated_url, pg_admin_url, tmp_path):
    config = worker_config(api.url, page_size=5)
    total = expected_counts(api)["posts"]
    api.inject_fault("slow", count=100_000, delay=0.02)  # so there is a "mid"
    kill_mid_sync("reddit", migrated_url, config, tmp_path, lambda: counts(migrated_url)["posts"] >= 15)
    api.clear_faults()
    assert 0 < counts(migrated_url)["posts"] < total, "killed mid-sync"

    resume_matches_fresh_run(
        lambda url: RedditWorker(name="reddit", config=config, database_url=url), migrated_url, pg_admin_url, snapshot
    )
    assert counts(migrated_url) == expected_counts(api)


def test_sigterm_mid_sync_finishes_the_page_and_exits_0(api, migrated_url, tmp_path):
    config = worker_config(api.url, page_size=5)
    api.inject_fault("slow", count=100_000, delay=0.02)
    proc = start_worker("reddit", migrated_url, config, tmp_path)
    try:
        wait_for(lambda: counts(migrated_url)["posts"] >= 15, 30, 0.01, "the sync to be under way")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    api.clear_faults()
    assert rows(migrated_url, "SELECT phase FROM worker_heartbeats") == [("stopped",)]
    assert counts(migrated_url) != expected_counts(api)
    RedditWorker(name="reddit", config=config, database_url=migrated_url).run_cycle()
    assert counts(migrated_url) == expected_counts(api)


# --- faults and rate limits -----------------------------------------------------------------------------


# prawcore retries 5xx, timeouts and dropped connections twice itself: three faults outlast it.
@pytest.mark.parametrize(
    ("kind", "count", "expected"),
    [
        ("429", 1, "rate limited by upstream"),
        ("500", 3, "HTTP 500"),
        ("slow", 3, "ReadTimeout"),
        ("truncated", 1, "malformed JSON"),
    ],
)
def test_each_fault_fails_one_cycle_is_recorded_and_the_next_cycle_recovers(api, migrated_url, kind, count, expected):
    worker = make_worker(migrated_url, api.url, timeout_s=0.4, interval_ms=10)
    api.inject_fault(kind, count, path_prefix="/comments/", retry_after=1, delay=1.0)
    started = time.monotonic()
    worker._one_cycle()
    ok, error = last_cycle(migrated_url)
    assert not ok and expected in (error or "")
    assert expected in rows(migrated_url, "SELECT last_error FROM worker_heartbeats")[0][0]
    assert rows(migrated_url, "SELECT count(*) FROM worker_errors WHERE message LIKE %s", (f"%{expected}%",))[0][0] == 1
    if kind == "429":
        assert worker._rate_limited_s == 1 and time.monotonic() - started >= 0.9  # Retry-After: 1 obeyed

    worker._one_cycle()
    assert last_cycle(migrated_url) == (True, None)
    assert counts(migrated_url) == expected_counts(api)


def test_a_spent_rate_limit_window_is_waited_out_not_overrun(migrated_url):
    with RedditAPI(seed=3, subreddits={"ethereum": 30}, ratelimit_requests=4, ratelimit_window=30) as tight:
        worker = make_worker(migrated_url, tight.url, subreddits=["ethereum"])
        started = time.monotonic()
        with pytest.raises(RateLimited) as caught:
            worker.run_cycle()
        assert 5 < caught.value.retry_after_s <= 30 and time.monotonic() - started < 5
        assert [r.status for r in tight.requests if r.path != "/api/v1/access_token"] == [200] * 4  # no 429


def test_a_missing_subreddit_is_recorded_and_the_others_sync(api, migrated_url):
    worker = make_worker(migrated_url, api.url, subreddits=["ethereum", "no_such_sub", "web3"])
    result = worker.run_cycle()
    assert result.item_errors == 1
    assert rows(migrated_url, "SELECT item_key FROM worker_errors") == [("r/no_such_sub",)]
    assert counts(migrated_url)["posts"] == api.post_count("ethereum") + api.post_count("web3")


# --- credentials and configuration --------------------------------------------------------------------


def test_missing_configuration_names_what_to_set(migrated_url, monkeypatch):
    def validate(**config: Any) -> None:
        RedditWorker(name="reddit", config=config, database_url=migrated_url).validate()

    with pytest.raises(NotConfigured, match="REDDIT_CLIENT_ID"):
        validate()
    with pytest.raises(NotConfigured, match="REDDIT_CLIENT_SECRET"):
        validate(client_id="x", client_secret="in-the-yaml")
    monkeypatch.setenv(USERNAME_ENV, "someone")
    with pytest.raises(NotConfigured, match=PASSWORD_ENV):
        validate(client_id="x")
    monkeypatch.delenv(USERNAME_ENV)
    with pytest.raises(NotConfigured, match="reddit_subreddits"):
        validate(client_id="x", subreddits=[])
    validate(client_id="x")
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(NotConfigured, match=SECRET_ENV):
        validate(client_id="x")


def test_password_grant_and_wrong_credentials(api, migrated_url, monkeypatch):
    monkeypatch.setenv(USERNAME_ENV, DEFAULT_USERNAME)
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    worker = make_worker(migrated_url, api.url, subreddits=["web3"])
    with pytest.raises(UpstreamError, match=PASSWORD_ENV):
        worker.run_cycle()
    monkeypatch.setenv(PASSWORD_ENV, DEFAULT_PASSWORD)
    worker.run_cycle()
    assert counts(migrated_url)["posts"] == api.post_count("web3")

    monkeypatch.delenv(USERNAME_ENV)
    monkeypatch.setenv(SECRET_ENV, "wrong-secret")
    with pytest.raises(UpstreamError, match=SECRET_ENV):
        worker.run_cycle()


def test_under_the_manager_it_is_healthy_and_counts_real_items(boot_manager, api):
    m = boot_manager(
        {
            "reddit": {
                "module": "workers.social.reddit",
                "interval_ms": 1000,
                "heartbeat_interval_ms": 200,
                **worker_config(api.url),
            }
        },
        env={SECRET_ENV: DEFAULT_CLIENT_SECRET},
    )
    status = m.wait_worker("reddit", lambda w: w["healthy"] and w["itemsProcessed"] > 0, timeout=30)
    assert status["lastError"] is None and status["verdict"] == "healthy"
    assert status["itemsProcessed"] == sum(expected_counts(api).values())
    detail = m.api("GET", "/api/workers/reddit", token=TOKEN).text
    assert DEFAULT_CLIENT_SECRET not in detail and DEFAULT_CLIENT_SECRET not in m.output()
