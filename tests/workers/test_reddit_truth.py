"""Reddit posts and comments deleted or removed after they were stored: marked when revisited."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest

from devnet.reddit_api import DEFAULT_CLIENT_SECRET, RedditAPI
from tests.support.db import rows
from tests.workers.test_reddit import make_worker
from workers.social.reddit import PASSWORD_ENV, SECRET_ENV, USERNAME_ENV


@pytest.fixture
def api() -> Iterator[RedditAPI]:
    with RedditAPI(seed=4, subreddits={"ethereum": 12}, comments_per_post=3, ratelimit_requests=1_000_000) as server:
        yield server


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, DEFAULT_CLIENT_SECRET)
    monkeypatch.delenv(USERNAME_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


def state(url: str, fullname: str) -> tuple[bool, str, str | None]:
    (row,) = rows(
        url,
        "SELECT deleted_at IS NOT NULL, body, raw->>'removal' FROM external_posts WHERE external_id = %s",
        (fullname,),
    )
    return row


def test_deleted_and_removed_items_are_marked_with_their_content_kept(api, migrated_url):
    # Two fresh posts (inside the revisit window), one with comments.
    removed_post = api.add_post("ethereum", "to be removed", "a moderator will remove this")
    thread = api.add_post("ethereum", "a thread", "with replies")
    comment = api.add_comment(thread["name"], "I will delete this one")
    api.add_comment(thread["name"], "I stay")
    worker = make_worker(migrated_url, api.url, subreddits=["ethereum"])
    worker.run_cycle()
    body_before = state(migrated_url, comment["name"])[1]
    assert not state(migrated_url, removed_post["name"])[0]

    api.remove(removed_post["name"], by="moderator")
    api.remove(comment["name"], by="deleted")
    api.add_comment(thread["name"], "a new reply, so the thread is read again")
    result = worker.run_cycle()

    assert state(migrated_url, removed_post["name"])[0::2] == (True, "moderator")
    deleted, body, why = state(migrated_url, comment["name"])
    assert (deleted, why) == (True, "deleted") and body == body_before != "[deleted]"  # content kept
    live = rows(migrated_url, "SELECT count(*) FROM external_posts WHERE deleted_at IS NULL AND body = '[deleted]'")
    assert live[0][0] == 0  # seeded deleted comments were marked on first sight as well
    assert result.item_errors == 0


def test_ranked_listings_young_post_refresh_and_author_profiles(api, migrated_url):
    star = api.add_post("ethereum", "everyone upvotes this", "gm", author="devnet_star")
    with api.data.lock:
        api.data.posts[star["id"]].data["score"] = 50_000
    worker = make_worker(migrated_url, api.url, subreddits=["ethereum"], profiles_per_cycle=3)
    worker.run_cycle()

    listings = rows(
        migrated_url,
        "SELECT listing, array_agg(external_id ORDER BY position) FROM social_listings "
        "WHERE channel = 'ethereum' GROUP BY 1 ORDER BY 1",
    )
    assert [name for name, _ in listings] == ["hot", "rising", "top_day"]
    for name, ids in listings:
        assert ids[0] == star["name"], name  # the planted favourite leads every ranked listing
    stored = {r[0] for r in rows(migrated_url, "SELECT external_id FROM external_posts")}
    assert all(set(ids) <= stored for _, ids in listings)

    # A young post's score moves on Reddit: the next cycle refreshes it (old seeded posts are not asked for).
    with api.data.lock:
        api.data.posts[star["id"]].data["score"] = 50_321
    before = len(api.requests)
    worker.run_cycle()
    assert (
        rows(migrated_url, "SELECT score FROM external_posts WHERE external_id = %s", (star["name"],))[0][0] == 50_321
    )
    info = [r for r in list(api.requests)[before:] if r.path == "/api/info"]
    assert len(info) == 1 and parse_qs(info[0].query)["id"] == [star["name"]]

    # Authors become profiles with karma and account age, three per cycle (the request budget).
    read = rows(
        migrated_url,
        "SELECT external_id, karma, extract(epoch FROM account_created_at) FROM profiles WHERE details_read_at IS NOT NULL",
    )
    assert len(read) == 6
    for name, karma, created in read:
        about = api.user_about(name)
        assert karma == about["link_karma"] + about["comment_karma"] and created == about["created_utc"]
