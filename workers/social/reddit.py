"""The reddit worker: new posts of chosen subreddits and their comment threads into `external_posts`
(comments threaded by `parent_external_id`, everything under a submission sharing its
`root_external_id`), and their authors into `profiles`, through PRAW.

Each cycle walks a subreddit's `/new` listing, newest first, one page per transaction, down to a
little before where the last complete walk began (`revisit_s`, so recent posts are looked at again
for new comments). A post's comments are fetched when it is new or its `num_comments` changed since
it was stored. The cursor (`sync_cursors`, key `r/<name>`) records where the last complete walk
began and, during a walk, the page it has reached, so a restart resumes without gaps.

Credentials come from the environment only: `REDDIT_CLIENT_SECRET` (with `client_id` from the
config, i.e. `REDDIT_CLIENT_ID`), and optionally `REDDIT_USERNAME` + `REDDIT_PASSWORD` for a script
app's password grant. Requests are spaced to `requests_per_minute` (Reddit allows 100 a minute per
client; 60 leaves room) and Reddit's `x-ratelimit-*` headers are obeyed.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from typing import Any, Literal

import praw
import praw.exceptions
import prawcore
from pydantic import Field
from requests.models import Response

from sql import query
from workers.base import CycleResult, Worker, describe
from workers.errors import NotConfigured, RateLimited, UpstreamError
from workers.pacing import Pacer, retry_after_seconds
from workers.settings import WorkerSettings
from workers.social.store import PostRow, ProfileRow, SocialStore, clean_text, to_json

PLATFORM = "reddit"
SECRET_ENV = "REDDIT_CLIENT_SECRET"
USERNAME_ENV = "REDDIT_USERNAME"
PASSWORD_ENV = "REDDIT_PASSWORD"
SITE = "https://www.reddit.com"
DELETED = "[deleted]"
REMOVED_MARKERS = ("[deleted]", "[removed]")  # what Reddit serves as the text of deleted/removed items
MORECHILDREN_BATCH = 100  # Reddit expands at most 100 comment ids per call
_SUBREDDIT_NAME = re.compile(r"^[A-Za-z0-9_]{2,21}$")

Thing = dict[str, Any]

#: The parts switched by `reddit_<feature>_enabled` flags (seeded by the manager; see workers/features.py).
FEATURES = {"comments": "Fetch the comment threads of new and changed posts"}


class RedditRejected(Exception):
    """Reddit refused one request (404, 403, a redirect to search, ...): that subreddit or thread
    is recorded as failed and skipped; the cycle goes on."""


# ---- things → rows (pure functions) --------------------------------------------------------------


def _fullname(data: Thing, prefix: str) -> str:
    name = data["name"]
    if not isinstance(name, str) or not name.startswith(prefix):
        raise ValueError(f"expected a {prefix}... fullname, got {name!r}")
    return name


def _author_id(author: Any) -> str | None:
    return None if author in (None, "", DELETED) else str(author)


def post_row(data: Thing) -> PostRow:
    """A submission (t3). Its link, if it is a link post, is its embed; `url` is its Reddit page."""
    name = _fullname(data, "t3_")
    link = data.get("url")
    embeds = [] if data.get("is_self") or not link else [{"url": link}]
    return PostRow(
        platform=PLATFORM,
        external_id=name,
        author_external_id=_author_id(data.get("author")),
        author_name=data.get("author"),
        title=clean_text(str(data["title"])),
        body=clean_text(data.get("selftext") or "") or "",
        url=SITE + data["permalink"] if data.get("permalink") else None,
        parent_external_id=None,
        root_external_id=name,
        channel=data.get("subreddit"),
        mentions="[]",
        embeds=to_json(embeds),
        score=int(data.get("score") or 0),
        created_epoch=float(data["created_utc"]),
        raw=to_json(data),
    )


def comment_row(data: Thing) -> PostRow:
    """A comment (t1): its parent is the post or comment it answers, its root the post."""
    name = _fullname(data, "t1_")
    raw = {key: value for key, value in data.items() if key != "replies"}
    return PostRow(
        platform=PLATFORM,
        external_id=name,
        author_external_id=_author_id(data.get("author")),
        author_name=data.get("author"),
        title=None,
        body=clean_text(str(data["body"])) or "",
        url=SITE + data["permalink"] if data.get("permalink") else None,
        parent_external_id=str(data["parent_id"]),
        root_external_id=str(data["link_id"]),
        channel=data.get("subreddit"),
        mentions="[]",
        embeds="[]",
        score=int(data.get("score") or 0),
        created_epoch=float(data["created_utc"]),
        raw=to_json(raw),
    )


def removal(data: Thing) -> str | None:
    """Why a revisited post or comment is gone (`deleted` by its author, `removed` or Reddit's
    `removed_by_category`), or None while it is live. A deleted account alone (author `[deleted]`,
    text intact) is not a removal: the content is still there."""
    category = data.get("removed_by_category")
    if category:
        return str(category)
    text = data.get("body") if str(data.get("name", "")).startswith("t1_") else data.get("selftext")
    return text.strip("[]") if text in REMOVED_MARKERS else None


def profile_rows(things: Iterable[Thing]) -> list[ProfileRow]:
    """One profile per author (deleted accounts have none); Reddit tells only the name and t2 id."""
    fullnames: dict[str, str | None] = {}
    for data in things:
        author = _author_id(data.get("author"))
        if author is not None:
            fullnames[author] = fullnames.get(author) or data.get("author_fullname")
    return [
        ProfileRow(
            PLATFORM,
            author,
            author,
            None,
            None,
            None,
            f"{SITE}/user/{author}",
            to_json({"fullname": fullname} if fullname else {}),
        )
        for author, fullname in sorted(fullnames.items())
    ]


def flatten_comments(things: Iterable[Any]) -> tuple[list[Thing], list[str]]:
    """Comment things (with nested `replies` listings) as a flat list, parents before children,
    and the ids that `more` objects hold back."""
    comments: list[Thing] = []
    more: list[str] = []
    stack = list(things)[::-1]
    while stack:
        thing = stack.pop()
        kind, data = thing.get("kind"), thing.get("data") or {}
        if kind == "t1":
            comments.append(data)
            replies = data.get("replies")
            if isinstance(replies, dict):
                stack.extend(list(replies.get("data", {}).get("children") or [])[::-1])
        elif kind == "more":
            more.extend(str(c) for c in data.get("children") or [])  # [] is "continue this thread"
    return comments, more


# ---- PRAW plumbing ---------------------------------------------------------------------------------


class RateLimitWindow:
    """What Reddit's `x-ratelimit-*` headers last said: requests left and when the window resets."""

    def __init__(self) -> None:
        self.remaining: float | None = None
        self.reset_at = 0.0  # time.monotonic()
        self.requestor: prawcore.Requestor | None = None  # the one reporting here; closed with the worker

    def update(self, headers: Any) -> None:
        if "x-ratelimit-remaining" in headers:
            try:
                self.remaining = float(headers["x-ratelimit-remaining"])
                self.reset_at = time.monotonic() + float(headers.get("x-ratelimit-reset") or 0)
            except ValueError:
                pass

    def exhausted_for(self) -> float:
        """Seconds until requests may go again; 0 when some are left."""
        if self.remaining is None or self.remaining >= 1:
            return 0.0
        return max(0.0, self.reset_at - time.monotonic())


class _Requestor(prawcore.Requestor):
    """prawcore's HTTP requestor with two changes: every request gets this worker's timeout (praw
    always asks for 16 s), and the rate-limit headers are noted, so the worker waits out a spent
    window itself (heartbeating, stoppable) instead of prawcore sleeping through it."""

    def __init__(self, *args: Any, timeout: float, window: RateLimitWindow, **kwargs: Any) -> None:
        super().__init__(*args, timeout=timeout, **kwargs)
        self.window = window
        window.requestor = self

    def request(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Response:
        response = super().request(*args, timeout=self.timeout, **kwargs)
        self.window.update(response.headers)
        return response


# ---- the worker ------------------------------------------------------------------------------------


class RedditSettings(WorkerSettings):
    client_id: str | None = None
    client_secret: Any = None  # refused by validate(): secrets come from the environment only
    password: Any = None  # likewise
    subreddits: Any = ["ethereum", "web3", "cryptocurrency"]  # a JSON list or a comma-separated string
    oauth_url: str | None = "https://oauth.reddit.com"
    reddit_url: str | None = SITE
    user_agent: str = "python:worker-manager:0.1 (social sync worker)"
    page_size: int = Field(default=100, gt=0)
    timeout_s: float = Field(default=16.0, gt=0)
    requests_per_minute: float = Field(default=60, ge=0)  # 0: no pacing
    revisit_s: float = Field(default=43_200, ge=0)
    comment_limit: int = Field(default=500, gt=0)
    more_comments_limit: int = Field(default=32, ge=0)
    listings: list[Literal["hot", "rising", "top"]] = ["hot", "rising", "top"]  # top: of the day
    refresh_age_s: float = Field(default=86_400, ge=0)  # posts younger than this get score/comments refreshed
    refresh_limit: int = Field(default=100, ge=0)  # posts refreshed per subreddit and cycle (one request per 100)
    profiles_per_cycle: int = Field(default=10, ge=0)  # author profiles (karma, account age) read per cycle
    profile_max_age_s: float = Field(default=7 * 86_400, gt=0)  # read again after this long


class RedditWorker(Worker[Thing]):
    settings_model = RedditSettings
    settings: RedditSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = SocialStore()
        self.pacer = Pacer()
        self.window = RateLimitWindow()
        self._reddit: praw.Reddit | None = None

    def validate(self) -> None:
        if not self.settings.client_id:
            raise NotConfigured("client_id is not set (set REDDIT_CLIENT_ID or workers.reddit.client_id)")
        for key in ("client_secret", "password"):
            if getattr(self.settings, key) is not None:
                raise NotConfigured(
                    f"Reddit secrets are read from the environment only: "
                    f"set REDDIT_{key.upper()}, not workers.reddit.{key}"
                )
        if not os.environ.get(SECRET_ENV):
            raise NotConfigured(f"{SECRET_ENV} is not set (the Reddit app's secret, from the environment)")
        if bool(os.environ.get(USERNAME_ENV)) != bool(os.environ.get(PASSWORD_ENV)):
            raise NotConfigured(f"set both {USERNAME_ENV} and {PASSWORD_ENV} for the password grant, or neither")
        for key in ("oauth_url", "reddit_url"):
            url = getattr(self.settings, key)
            if not str(url or "").startswith(("http://", "https://")):
                raise NotConfigured(f"{key} must be an http(s) URL, got {url!r}")
        if not self._subreddits():
            raise NotConfigured(
                "no subreddits to sync: set the reddit_subreddits setting "
                '(e.g. \'["ethereum", "web3"]\') or workers.reddit.subreddits'
            )

    def _close_requestor(self, _: praw.Reddit) -> None:
        if self.window.requestor is not None:
            self.window.requestor.close()
            self.window.requestor = None

    def _subreddits(self) -> list[str]:
        value = self.settings.subreddits or []
        names = value.split(",") if isinstance(value, str) else list(value)
        return list(dict.fromkeys(str(name).strip().removeprefix("r/") for name in names if str(name).strip()))

    # ---- the cycle ----------------------------------------------------------------------------

    def run_cycle(self) -> CycleResult:
        self._connect_reddit()
        self.store.prepare(self.db)
        total = CycleResult()
        for name in self._subreddits():
            if self.stopping:
                break
            if not _SUBREDDIT_NAME.match(name):
                self._item_error(total, f"r/{name}", "not a valid subreddit name")
                continue
            try:
                self.sync_subreddit(name, total)
                self.sync_listings(name, total)
                self.refresh_young(name, total)
            except RedditRejected as exc:
                self._item_error(total, f"r/{name}", str(exc))
        if not self.stopping:
            self.sync_authors(total)
        return total

    # ---- listings, refreshes and authors -------------------------------------------------------

    def sync_listings(self, name: str, result: CycleResult) -> None:
        """hot, rising and top (of the day): their posts stored (and comments as for /new), and
        what each listing shows now in `social_listings`."""
        for listing in self.settings.listings:
            if self.stopping:
                return
            params: dict[str, str | int] = {"limit": min(self.settings.page_size, 100)}
            if listing == "top":
                params["t"] = "day"
            posts, _ = self._listing(f"r/{name}/{listing}", params)
            things, complete = self._with_comments(posts, result)
            if not complete:
                return
            key = {"platform": PLATFORM, "channel": name.lower(), "listing": "top_day" if listing == "top" else listing}
            with self.transaction() as tx:
                self._write_things(tx, things, result)
                tx.execute(query("clear_listing", "social.sql"), key)
                entries = [{**key, "position": i, "external_id": str(p.get("name"))} for i, p in enumerate(posts, 1)]
                with tx.cursor() as cur:
                    cur.executemany(query("add_listing_entry", "social.sql"), entries)
            self.beat_if_due()

    def refresh_young(self, name: str, result: CycleResult) -> None:
        """Score and comment count of stored posts younger than `refresh_age_s` read again (100
        per request through /api/info); threads whose count moved are fetched, removals marked."""
        s = self.settings
        if not s.refresh_age_s or not s.refresh_limit:
            return
        params = {"platform": PLATFORM, "channel": name, "max_age_s": s.refresh_age_s, "limit": s.refresh_limit}
        ids = [row[0] for row in self.db.execute(query("young_posts", "social.sql"), params).fetchall()]
        for start in range(0, len(ids), 100):
            if self.stopping:
                return
            body = self._call("api/info", {"id": ",".join(ids[start : start + 100])})
            try:
                posts = [c["data"] for c in body["data"]["children"] if c.get("kind") == "t3"]
            except (KeyError, TypeError, AttributeError) as exc:
                raise UpstreamError("unexpected reply from reddit on api/info: not a Listing") from exc
            things, complete = self._with_comments(posts, result)
            if not complete:
                return
            with self.transaction() as tx:
                self._write_things(tx, things, result)

    def sync_authors(self, result: CycleResult) -> None:
        """Karma and account age of up to `profiles_per_cycle` authors never (or long ago) read.
        Not counted as items: they enrich rows already counted when the author was first stored."""
        s = self.settings
        params = {"platform": PLATFORM, "limit": s.profiles_per_cycle, "max_age_s": s.profile_max_age_s}
        for (author,) in self.db.execute(query("profiles_to_read", "social.sql"), params).fetchall():
            if self.stopping:
                return
            details: dict[str, Any] = {"karma": None, "created_utc": None}
            try:
                data = self._call(f"user/{author}/about", {})["data"]
                details = {
                    "karma": int(data.get("link_karma") or 0) + int(data.get("comment_karma") or 0),
                    "created_utc": float(data["created_utc"]),
                }
            except RedditRejected:
                pass  # deleted or suspended: read, nothing to say (not asked again for a while)
            except (KeyError, TypeError, ValueError) as exc:
                self._item_error(result, f"u/{author}", f"malformed user: {describe(exc)}")
            with self.transaction() as tx:
                tx.execute(
                    query("set_profile_details", "social.sql"), {"platform": PLATFORM, "external_id": author, **details}
                )

    def sync_subreddit(self, name: str, result: CycleResult) -> None:
        """One walk down r/name/new (or the rest of an interrupted one), a transaction per page;
        counts go into `result`."""
        key = f"r/{name.lower()}"
        cursor = dict(self.load_cursor(key) or {})
        synced_until = cursor.get("synced_until")  # created_utc of the newest post of the last walk
        walk = cursor.get("walk") or {}  # {"after": fullname, "top": created_utc} while unfinished
        floor = None if synced_until is None else float(synced_until) - self.settings.revisit_s
        after, top = walk.get("after"), walk.get("top")
        while not self.stopping:
            params: dict[str, str | int] = {"limit": self.settings.page_size}
            if after:
                params["after"] = after
            posts, next_after = self._listing(f"r/{name}/new", params)
            if top is None and posts:
                top = max(float(p.get("created_utc") or 0) for p in posts)
            wanted = [p for p in posts if floor is None or float(p.get("created_utc") or 0) >= floor]
            things, complete = self._with_comments(wanted, result)
            # Done at the floor, at the end of the listing, or if Reddit stops moving forward.
            done = complete and (len(wanted) < len(posts) or not next_after or not posts or next_after == after)
            with self.transaction() as tx:
                self._write_things(tx, things, result)
                if complete:
                    cursor = (
                        {"synced_until": top if top is not None else synced_until}
                        if done
                        else {"synced_until": synced_until, "walk": {"after": next_after, "top": top}}
                    )
                    self.save_cursor(tx, cursor, key)
            self.beat_if_due()
            if done or not complete:
                break
            after = next_after

    def _with_comments(self, posts: list[Thing], result: CycleResult) -> tuple[list[Thing], bool]:
        """The posts and the comments of those that are new or have new comments. False as the
        second value when a stop request cut the page short (what was fetched is still returned)."""
        stored = self.store.comment_counts(self.db, PLATFORM, [str(p.get("name")) for p in posts])
        things: list[Thing] = []
        for post in posts:
            if self.stopping:
                return things, False
            things.append(post)
            count = post.get("num_comments")
            if count and stored.get(str(post.get("name"))) != count and self.flag("comments"):
                try:
                    things += self._comments(post)
                except RedditRejected as exc:
                    self._item_error(result, str(post.get("name")), f"comments not fetched: {exc}")
            self.beat_if_due()
        return things, True

    def _comments(self, post: Thing) -> list[Thing]:
        path = f"comments/{post['id']}/"
        body = self._call(path, {"limit": self.settings.comment_limit})
        if not (isinstance(body, list) and len(body) == 2 and isinstance(body[1], dict)):
            raise UpstreamError(f"unexpected reply from reddit on {path}: not [post, comments]")
        comments, more = flatten_comments(body[1].get("data", {}).get("children") or [])
        calls = 0
        while more and calls < self.settings.more_comments_limit and not self.stopping:
            batch, more = more[:MORECHILDREN_BATCH], more[MORECHILDREN_BATCH:]
            reply = self._call(
                "api/morechildren", {"link_id": post["name"], "children": ",".join(batch), "api_type": "json"}
            )
            try:
                found, hidden = flatten_comments(reply["json"]["data"]["things"])
            except (KeyError, TypeError) as exc:
                raise UpstreamError(f"unexpected reply from reddit on api/morechildren: {describe(exc)}") from exc
            comments += found
            more += hidden
            calls += 1
        return comments

    def _write_things(self, tx: Any, things: list[Thing], result: CycleResult) -> None:
        """Posts, comments and their authors' profiles; the ones that came back deleted or removed
        are marked instead of overwritten."""
        things, gone, stored = self._without_stored_removals(tx, things)
        rows, on_error = self._rows(things, result), self._on_write_error(result)
        result.items += self.store.write_posts(tx, rows, on_error)
        self._mark_removed(tx, gone, stored, result)
        result.items += self.store.write_profiles(tx, profile_rows(things), on_error)

    def _without_stored_removals(self, tx: Any, things: list[Thing]) -> tuple[list[Thing], dict[str, str], set[str]]:
        """The things to write - all but those that came back deleted or removed and are stored
        already (their content stays as last seen) -, {fullname: why} of every gone one, and
        which of those were stored before (only their marking counts as a change)."""
        gone = {str(d.get("name")): reason for d in things if (reason := removal(d))}
        if not gone:
            return things, gone, set()
        stored = set(self.store.comment_counts(tx, PLATFORM, list(gone)))
        return [d for d in things if str(d.get("name")) not in stored], gone, stored

    def _mark_removed(self, tx: Any, gone: dict[str, str], stored: set[str], result: CycleResult) -> None:
        """`deleted_at` on the gone posts and comments (and `removal` in raw: why)."""
        for reason in sorted(set(gone.values())):
            ids = [name for name, why in gone.items() if why == reason]
            params = {"platform": PLATFORM, "ids": ids, "reason": reason}
            marked = tx.execute(query("mark_deleted_posts", "social.sql"), params).fetchall()
            result.items += sum(1 for (name,) in marked if name in stored)

    def _rows(self, things: list[Thing], result: CycleResult) -> list[PostRow]:
        rows = []
        for data in things:
            try:
                rows.append(comment_row(data) if str(data.get("name", "")).startswith("t1_") else post_row(data))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self._item_error(result, str(data.get("name") or data.get("id")), f"malformed item: {describe(exc)}")
        return rows

    # ---- reddit calls --------------------------------------------------------------------------

    def _connect_reddit(self) -> None:
        """The PRAW client for the current settings and credentials (rebuilt when they change)."""
        s = self.settings
        secrets = (os.environ.get(SECRET_ENV), os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV))
        key = (s.client_id, s.oauth_url, s.reddit_url, s.user_agent, secrets, s.timeout_s)

        def build() -> praw.Reddit:
            login = {"username": secrets[1], "password": secrets[2]} if secrets[1] else {}
            return praw.Reddit(
                client_id=str(s.client_id),
                client_secret=secrets[0],
                user_agent=s.user_agent,
                oauth_url=str(s.oauth_url).rstrip("/"),
                reddit_url=str(s.reddit_url).rstrip("/"),
                check_for_updates=False,
                check_for_async=False,
                requestor_class=_Requestor,
                requestor_kwargs={"timeout": s.timeout_s, "window": self.window},
                **login,
            )

        self._reddit = self.cached_client("reddit", key, build, self._close_requestor)
        self.pacer.per_minute = s.requests_per_minute

    def _listing(self, path: str, params: dict[str, str | int]) -> tuple[list[Thing], str | None]:
        body = self._call(path, params)
        try:
            children = body["data"]["children"]
            after = body["data"].get("after")
        except (KeyError, TypeError) as exc:
            raise UpstreamError(f"unexpected reply from reddit on {path}: not a Listing") from exc
        return [c["data"] for c in children if isinstance(c, dict) and c.get("kind") == "t3"], after

    def _call(self, path: str, params: dict[str, str | int]) -> Any:
        """One GET through PRAW (which authenticates, retries 5xx and reads the rate-limit headers),
        paced, with failures turned into the worker's error types."""
        assert self._reddit is not None
        wait = self.window.exhausted_for()
        if wait > 5:
            raise RateLimited(f"Reddit's rate-limit window is used up (resets in {wait:.0f} s)", wait)
        if wait > 0:
            self.sleep(wait)
        self.pacer.wait(self.sleep)
        try:
            return self._reddit.request(method="GET", path=path, params=params)
        except prawcore.TooManyRequests as exc:
            retry = retry_after_seconds(exc.retry_after, self.window.exhausted_for() or 60.0)
            raise RateLimited(f"reddit rate limit on {path} (HTTP 429)", retry) from exc
        except prawcore.BadJSON as exc:
            raise UpstreamError(f"malformed JSON from reddit on {path} ({len(exc.response.content)} bytes)") from exc
        except prawcore.ServerError as exc:
            raise UpstreamError(f"reddit error on {path}: HTTP {exc.response.status_code}") from exc
        except prawcore.RequestException as exc:
            raise UpstreamError(f"reddit request failed on {path}: {describe(exc.original_exception)}") from exc
        except prawcore.OAuthException as exc:
            raise UpstreamError(
                f"reddit refused the login ({exc.error}): check {USERNAME_ENV} and {PASSWORD_ENV}"
            ) from exc
        except prawcore.InvalidToken as exc:
            raise UpstreamError(f"reddit refused the access token on {path} (HTTP 401)") from exc
        except (
            prawcore.NotFound,
            prawcore.Forbidden,
            prawcore.Redirect,
            prawcore.BadRequest,
            prawcore.UnavailableForLegalReasons,
            praw.exceptions.PRAWException,
        ) as exc:
            raise RedditRejected(f"reddit refused {path}: {describe(exc)}") from exc
        except prawcore.ResponseException as exc:
            status = exc.response.status_code
            if status == 401:  # from the token endpoint: the app's id or secret is wrong
                raise UpstreamError(
                    f"reddit refused the app credentials (HTTP 401): check REDDIT_CLIENT_ID and {SECRET_ENV}"
                ) from exc
            if status >= 500:
                raise UpstreamError(f"reddit error on {path}: HTTP {status}") from exc
            raise RedditRejected(f"reddit refused {path}: HTTP {status}") from exc

    # ---- errors -------------------------------------------------------------------------------

    def _item_error(self, result: CycleResult, item_key: str, message: str) -> None:
        result.item_errors += 1
        self.record_error(message, item_key=item_key)

    def _on_write_error(self, result: CycleResult) -> Any:
        return lambda item_key, message: self._item_error(result, item_key, f"not stored: {message}")


if __name__ == "__main__":
    RedditWorker.main()
