"""The Reddit stand-in, driven by unchanged PRAW (configured as in shared/DOMAIN.md §4) over loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import praw
import prawcore
import pytest

from devnet.http_stub import StubProcess, control_request
from devnet.reddit_api import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    RedditAPI,
)

POST_FIELDS = {
    "id", "name", "title", "selftext", "author", "created_utc", "score", "ups", "upvote_ratio", "num_comments",
    "permalink", "url", "subreddit", "subreddit_id", "is_self", "over_18", "stickied", "link_flair_text",
    "edited", "locked",
}  # fmt: skip
COMMENT_FIELDS = {
    "id", "name", "body", "author", "created_utc", "score", "link_id", "parent_id", "depth", "permalink",
    "subreddit", "replies",
}  # fmt: skip


@pytest.fixture(scope="module")
def reddit_api() -> Iterator[RedditAPI]:
    # A budget big enough that prawcore's pacing (which spreads requests over the window) never sleeps.
    with RedditAPI(seed=3, ratelimit_requests=1_000_000) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_leftover_faults(reddit_api: RedditAPI) -> Iterator[None]:
    yield
    reddit_api.clear_faults()


def make_praw(url: str, **extra: Any) -> praw.Reddit:
    settings: dict[str, Any] = {
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "user_agent": "devnet-test/1.0",
        "oauth_url": url,
        "reddit_url": url,
        "short_url": url,
        "check_for_updates": False,
        "check_for_async": False,
    }
    return praw.Reddit(**{**settings, **extra})


def bearer(url: str, **form: str) -> dict[str, str]:
    """A token header obtained the way prawcore does, for tests that talk HTTP directly."""
    response = httpx.post(
        url + "/api/v1/access_token",
        data={"grant_type": "client_credentials", **form},
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    )
    return {"Authorization": "bearer " + response.json()["access_token"]}


# --- listings -----------------------------------------------------------------------------------------


def test_praw_reads_a_whole_subreddit_newest_first(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    assert reddit.read_only
    pages_before = reddit_api.request_count("/r/ethereum/new")
    posts = list(reddit.subreddit("ethereum").new(limit=None))
    expected = reddit_api.posts("ethereum")
    assert [p.id for p in posts] == [p["id"] for p in expected]
    assert len(posts) == reddit_api.post_count("ethereum") > 200
    assert reddit_api.request_count("/r/ethereum/new") - pages_before == 3, "100 per page, however many asked"
    created = [p.created_utc for p in posts]
    assert created == sorted(created, reverse=True)
    first = posts[0]
    assert first.subreddit.display_name == "ethereum" and first.permalink.startswith("/r/ethereum/comments/")
    assert first.num_comments == expected[0]["num_comments"]


def test_listing_shape_limit_and_after(reddit_api: RedditAPI) -> None:
    headers = bearer(reddit_api.url)
    with httpx.Client(base_url=reddit_api.url, headers=headers) as c:
        page = c.get("/r/web3/new", params={"limit": 1024, "raw_json": 1}).json()
        assert page["kind"] == "Listing" and len(page["data"]["children"]) == 90 == reddit_api.post_count("web3")
        assert page["data"]["after"] is None, "the whole subreddit fits: no next page"
        small = c.get("/r/web3/new", params={"limit": 40}).json()["data"]
        assert small["after"] == small["children"][-1]["data"]["name"] and small["dist"] == 40
        nxt = c.get("/r/web3/new", params={"limit": 40, "after": small["after"]}).json()["data"]
        assert nxt["children"][0]["data"]["name"] == page["data"]["children"][40]["data"]["name"]
        data = page["data"]["children"][0]["data"]
        assert page["data"]["children"][0]["kind"] == "t3" and set(data) >= POST_FIELDS
        assert data["name"] == "t3_" + data["id"] and isinstance(data["created_utc"], float)
        assert c.get("/r/doesnotexist/new").status_code == 404


def test_several_subreddits_and_multireddit(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    assert {"ethereum", "web3", "cryptocurrency"} <= set(reddit_api.subreddits())
    combined = list(reddit.subreddit("web3+ethdev").new(limit=None))
    assert len(combined) == reddit_api.post_count("web3") + reddit_api.post_count("ethdev")
    assert {p.subreddit.display_name for p in combined} == {"web3", "ethdev"}


# --- comments -----------------------------------------------------------------------------------------


def busiest_post(api: RedditAPI, subreddit: str = "ethereum") -> dict[str, Any]:
    return max(api.posts(subreddit), key=lambda p: p["num_comments"])


def test_praw_reads_comment_trees(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    post = busiest_post(reddit_api)
    submission = reddit.submission(post["id"])
    submission.comments.replace_more(limit=0)
    comments = submission.comments.list()
    expected = reddit_api.comments(post["id"])
    assert sorted(c.id for c in comments) == sorted(c["id"] for c in expected)
    assert len(comments) == submission.num_comments == post["num_comments"]
    assert max(c.depth for c in comments) >= 2, "trees are nested"
    by_id = {c.id: c for c in comments}
    for comment in comments:
        if comment.parent_id.startswith("t1_"):
            parent = by_id[comment.parent_id[3:]]
            assert comment in parent.replies.list() and comment.depth == parent.depth + 1
        else:
            assert comment.parent_id == "t3_" + post["id"] and comment.depth == 0
        assert comment.link_id == "t3_" + post["id"]


def test_comment_json_shape(reddit_api: RedditAPI) -> None:
    post = busiest_post(reddit_api)
    with httpx.Client(base_url=reddit_api.url, headers=bearer(reddit_api.url)) as c:
        body = c.get(f"/comments/{post['id']}/", params={"limit": 2048, "sort": "confidence", "raw_json": 1}).json()
    assert isinstance(body, list) and len(body) == 2
    assert body[0]["data"]["children"][0]["data"]["id"] == post["id"]
    top = body[1]["data"]["children"]
    assert all(t["kind"] == "t1" for t in top)
    assert set(top[0]["data"]) >= COMMENT_FIELDS
    nested = [t for t in top if t["data"]["replies"]]
    assert nested and nested[0]["data"]["replies"]["kind"] == "Listing"
    assert all(t["data"]["replies"] == "" for t in top if not t["data"]["replies"])


def test_more_objects_and_morechildren(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    post = busiest_post(reddit_api)
    reddit_api.more_after = 5  # cap each level at five comments, like a busy thread on Reddit
    try:
        partial = reddit.submission(post["id"])
        partial.comments.replace_more(limit=0)
        assert 5 <= len(partial.comments.list()) < post["num_comments"]
        full = reddit.submission(post["id"])
        full.comments.replace_more(limit=None)
        assert sorted(c.id for c in full.comments.list()) == sorted(c["id"] for c in reddit_api.comments(post["id"]))
        assert reddit_api.request_count("/api/morechildren") > 0
    finally:
        reddit_api.more_after = 200


# --- auth ---------------------------------------------------------------------------------------------


def test_password_grant_gives_a_user(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url, username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD)
    assert not reddit.read_only
    me = reddit.user.me()
    assert me is not None and me.name == DEFAULT_USERNAME
    assert len(list(reddit.subreddit("ethdev").new(limit=10))) == 10


def test_wrong_credentials_fail(reddit_api: RedditAPI) -> None:
    wrong_secret = make_praw(reddit_api.url, client_secret="wrong")
    with pytest.raises(prawcore.exceptions.ResponseException) as err:
        next(iter(wrong_secret.subreddit("ethereum").new(limit=1)))
    assert err.value.response.status_code == 401
    wrong_password = make_praw(reddit_api.url, username=DEFAULT_USERNAME, password="wrong")
    with pytest.raises(prawcore.exceptions.OAuthException, match="invalid_grant"):
        wrong_password.user.me()


def test_api_calls_need_a_valid_bearer_token(reddit_api: RedditAPI) -> None:
    response = httpx.get(reddit_api.url + "/r/ethereum/new", headers={"Authorization": "bearer forged"})
    assert response.status_code == 401 and "invalid_token" in response.headers["www-authenticate"]
    read_only = httpx.get(reddit_api.url + "/api/v1/me", headers=bearer(reddit_api.url))
    assert read_only.status_code == 403


def test_expired_token_is_refreshed_by_prawcore(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    next(iter(reddit.subreddit("web3").new(limit=1)))
    tokens_before = reddit_api.request_count("/api/v1/access_token")
    reddit_api.expire_tokens()
    assert len(list(reddit.subreddit("web3").new(limit=5))) == 5
    assert reddit_api.request_count("/api/v1/access_token") == tokens_before + 1


# --- rate limits --------------------------------------------------------------------------------------


def test_rate_limit_headers_are_honest(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    list(reddit.subreddit("ethdev").new(limit=5))
    limits = reddit.auth.limits
    assert limits["used"] is not None and limits["remaining"] is not None
    assert limits["used"] + limits["remaining"] == 1_000_000
    with httpx.Client(base_url=reddit_api.url, headers=bearer(reddit_api.url)) as c:
        first = c.get("/r/ethdev/new", params={"limit": 1}).headers
        second = c.get("/r/ethdev/new", params={"limit": 1}).headers
    assert int(second["x-ratelimit-used"]) == int(first["x-ratelimit-used"]) + 1
    assert float(second["x-ratelimit-remaining"]) == float(first["x-ratelimit-remaining"]) - 1
    assert 0 <= int(second["x-ratelimit-reset"]) <= 600


def test_requests_past_the_budget_get_429() -> None:
    with RedditAPI(seed=1, subreddits={"ethereum": 5}, ratelimit_requests=3, ratelimit_window=600) as small:
        with httpx.Client(base_url=small.url, headers=bearer(small.url)) as c:
            statuses = [c.get("/r/ethereum/new").status_code for _ in range(4)]
            last = c.get("/r/ethereum/new")
        assert statuses == [200, 200, 200, 429]
        assert last.headers["x-ratelimit-remaining"] == "0.0" and int(last.headers["Retry-After"]) > 0


# --- faults -------------------------------------------------------------------------------------------


def test_429_fault_raises_too_many_requests(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    reddit_api.inject_fault("429", retry_after=3, path_prefix="/r/")
    with pytest.raises(prawcore.exceptions.TooManyRequests) as err:
        list(reddit.subreddit("ethereum").new(limit=5))
    assert err.value.retry_after == "3"


def test_one_500_is_retried_by_prawcore(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    next(iter(reddit.subreddit("web3").new(limit=1)))  # token first, so the fault hits the listing
    reddit_api.inject_fault("500", path_prefix="/r/web3/new")
    assert len(list(reddit.subreddit("web3").new(limit=3))) == 3
    assert [r.status for r in list(reddit_api.requests)[-2:]] == [500, 200]


def test_truncated_json_raises_bad_json_and_slow_answers_late(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    post = busiest_post(reddit_api)
    next(iter(reddit.subreddit("web3").new(limit=1)))
    reddit_api.inject_fault("truncated", path_prefix="/comments/")
    with pytest.raises(prawcore.exceptions.BadJSON):
        reddit.submission(post["id"]).comments.list()
    reddit_api.inject_fault("slow", delay=0.3, path_prefix="/r/")
    started = time.monotonic()
    assert len(list(reddit.subreddit("web3").new(limit=2))) == 2
    assert time.monotonic() - started >= 0.3


# --- run-time additions -------------------------------------------------------------------------------


def test_added_posts_and_comments_appear(reddit_api: RedditAPI) -> None:
    reddit = make_praw(reddit_api.url)
    before = {p.id for p in reddit.subreddit("cryptocurrency").new(limit=None)}
    post = reddit_api.add_post("cryptocurrency", "Fresh from the test", "body text")
    newest = next(iter(reddit.subreddit("cryptocurrency").new(limit=1)))
    assert newest.id == post["id"] and newest.id not in before
    top = reddit_api.add_comment(post["id"], "first!")
    reply = reddit_api.add_comment(post["id"], "second", parent=top["id"])
    submission = reddit.submission(post["id"])
    submission.comments.replace_more(limit=0)
    comments = submission.comments.list()
    assert [c.id for c in comments] == [top["id"], reply["id"]]
    assert comments[1].parent_id == top["name"] and comments[1].depth == 1
    assert submission.num_comments == 2


# --- as a process -------------------------------------------------------------------------------------


def test_runs_as_a_process_until_sigterm() -> None:
    with StubProcess("devnet.reddit_api", ["--port", "0", "--seed", "9", "--ratelimit-requests", "100000"]) as proc:
        dataset = control_request(proc.url, "GET", "/_devnet/dataset")
        reddit = make_praw(proc.url)
        posts = list(reddit.subreddit("ethereum").new(limit=None))
        assert len(posts) == dataset["subreddits"]["ethereum"]
        added = control_request(proc.url, "POST", "/_devnet/posts", {"subreddit": "ethereum", "title": "remote"})
        assert next(iter(reddit.subreddit("ethereum").new(limit=1))).id == added["id"]
        proc.inject_fault("429", path_prefix="/r/", retry_after=1)
        with pytest.raises(prawcore.exceptions.TooManyRequests):
            list(reddit.subreddit("ethereum").new(limit=1))
    assert proc.process is not None and proc.process.returncode == 0


def test_same_seed_same_data() -> None:
    a, b, c = (RedditAPI(seed=s, subreddits={"ethereum": 30, "web3": 10}) for s in (5, 5, 6))
    assert a.posts("ethereum") == b.posts("ethereum")
    assert [a.comments(p["id"]) for p in a.posts("web3")] == [b.comments(p["id"]) for p in b.posts("web3")]
    assert [p["title"] for p in a.posts("ethereum")] != [p["title"] for p in c.posts("ethereum")]
    for server in (a, b, c):
        server.stop()
