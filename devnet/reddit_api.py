"""Reddit API stand-in on loopback, so the Reddit worker runs unchanged on PRAW with no internet or keys.

PRAW is pointed at it with `oauth_url=url, reddit_url=url, short_url=url` (see shared/DOMAIN.md §4).
It serves what PRAW asks for, in Reddit's shapes:

- `POST /api/v1/access_token`: HTTP Basic `client_id:client_secret`; `grant_type=client_credentials`
  (read-only) or `password`. Wrong client credentials get 401 (prawcore raises `ResponseException`);
  a wrong user password gets 200 `{"error": "invalid_grant"}` (prawcore raises `OAuthException`), as
  on reddit.com.
- `GET /r/{sub}/new` (also `a+b` multireddits): `limit` (at most 100 per page), `after`/`before`
  fullnames, `after: null` on the last page, at most `listing_cap` (1000) items per listing.
- `GET /comments/{id}/` (and `/r/{sub}/comments/{id}/`): `[post Listing, comment Listing]` with nested
  `replies`; levels with more than `more_after` comments end in a `more` object that
  `/api/morechildren` expands. `GET /api/info?id=t3_..,t1_..`, `GET /r/{sub}/about`, `GET /api/v1/me`.
- Every API response carries `x-ratelimit-remaining/used/reset`, counted honestly per OAuth client in
  a fixed window (default 1000 requests per 600 s, Reddit's published 100 per minute averaged over
  10 minutes); past the limit the answer is 429. prawcore reads these headers and paces itself.
- An expired or unknown bearer token gets 401 with `www-authenticate: ... error="invalid_token"`, which
  prawcore answers by fetching a new token.

Data is deterministic from the seed: several crypto subreddits with posts, comment trees of varying
depth, a pool of authors, some `[deleted]` ones. `add_post()` / `add_comment()` add items at run time
(or `POST /_devnet/posts|comments` for a stand-in in another process). Faults come from `http_stub`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import math
import random
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from devnet.http_stub import (
    Fault,
    HttpError,
    Request,
    Response,
    StubServer,
    add_server_arguments,
    retry_after_headers,
    serve_until_signal,
)

HISTORY_END = 1_748_736_000.0  # seeded data ends 2025-06-01T00:00:00Z
HISTORY_DAYS = 30
MAX_PAGE = 100  # Reddit answers at most 100 items per listing page
DEFAULT_SUBREDDITS: dict[str, int] = {"ethereum": 240, "web3": 90, "cryptocurrency": 160, "ethdev": 60}
DEFAULT_CLIENT_ID = "devnet-client"
DEFAULT_CLIENT_SECRET = "devnet-secret"
DEFAULT_USERNAME = "devnet_user"
DEFAULT_PASSWORD = "devnet-password"
INVALID_TOKEN = 'Bearer realm="reddit", error="invalid_token"'
INSUFFICIENT_SCOPE = 'Bearer realm="reddit", error="insufficient_scope"'

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(number: int) -> str:
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _B36[digit] + out
        if number == 0:
            return out


def _reddit_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> HttpError:
    """Reddit's plain error body, `{"message": "Not Found", "error": 404}`."""
    return HttpError(Response.json({"message": message, "error": status}, status, headers))


def _listing(children: list[dict[str, Any]], after: str | None, before: str | None = None) -> dict[str, Any]:
    return {
        "kind": "Listing",
        "data": {
            "after": after,
            "dist": len(children),
            "modhash": "",
            "geo_filter": "",
            "children": children,
            "before": before,
        },
    }


# ---------------------------------------------------------------------------------------------------
# The data: posts and comments as Reddit's JSON fields, plus the tree links.
# ---------------------------------------------------------------------------------------------------


@dataclass
class Post:
    data: dict[str, Any]  # the t3 `data` object, as served
    top_level: list[str] = field(default_factory=list)  # comment ids, in insertion order


@dataclass
class Comment:
    data: dict[str, Any]  # the t1 `data` object without `replies`
    children: list[str] = field(default_factory=list)


@dataclass
class Subreddit:
    name: str
    id: str
    subscribers: int
    created_utc: float
    posts: list[str] = field(default_factory=list)  # post ids, newest first (the /new order)


class RedditData:
    """Subreddits, posts and comments, and the writes that keep `num_comments` and the trees right."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.subreddits: dict[str, Subreddit] = {}
        self.posts: dict[str, Post] = {}
        self.comments: dict[str, Comment] = {}
        self.authors: dict[str, str] = {}  # name -> t2 id
        self._next_post = int("1k00000", 36)
        self._next_comment = int("mq00000", 36)

    def author_id(self, name: str) -> str:
        with self.lock:
            if name not in self.authors:
                digest = hashlib.blake2b(name.encode(), digest_size=6).digest()
                self.authors[name] = "t2_" + base36(int.from_bytes(digest, "big"))[:8]
            return self.authors[name]

    def add_subreddit(self, name: str, subscribers: int, created_utc: float) -> Subreddit:
        with self.lock:
            key = name.lower()
            if key not in self.subreddits:
                digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
                sub_id = "t5_" + base36(int.from_bytes(digest, "big"))
                self.subreddits[key] = Subreddit(name, sub_id, subscribers, created_utc)
            return self.subreddits[key]

    def add_post(
        self,
        subreddit: str,
        title: str,
        selftext: str,
        author: str,
        created_utc: float,
        *,
        url: str | None = None,
        score: int = 1,
        upvote_ratio: float = 1.0,
        flair: str | None = None,
        post_id_step: int = 1,
    ) -> dict[str, Any]:
        with self.lock:
            sub = self.subreddits.get(subreddit.lower())
            if sub is None:
                raise KeyError(f"no subreddit r/{subreddit}")
            self._next_post += post_id_step
            post_id = base36(self._next_post)
            slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:50] or "post"
            permalink = f"/r/{sub.name}/comments/{post_id}/{slug}/"
            is_self = url is None
            link = f"https://www.reddit.com{permalink}" if is_self else str(url)
            data = {
                "approved_at_utc": None,
                "subreddit": sub.name,
                "selftext": selftext if is_self else "",
                "author_fullname": None if author == "[deleted]" else self.author_id(author),
                "title": title,
                "subreddit_name_prefixed": f"r/{sub.name}",
                "name": f"t3_{post_id}",
                "upvote_ratio": upvote_ratio,
                "ups": score,
                "downs": 0,
                "score": score,
                "created": created_utc,
                "created_utc": created_utc,
                "num_comments": 0,
                "permalink": permalink,
                "url": link,
                "domain": f"self.{sub.name}" if is_self else (urlsplit(link).hostname or ""),
                "is_self": is_self,
                "over_18": False,
                "spoiler": False,
                "stickied": False,
                "locked": False,
                "archived": False,
                "edited": False,
                "distinguished": None,
                "link_flair_text": flair,
                "subreddit_id": sub.id,
                "subreddit_type": "public",
                "subreddit_subscribers": sub.subscribers,
                "thumbnail": "self" if is_self else "default",
                "gilded": 0,
                "total_awards_received": 0,
                "id": post_id,
                "author": author,
            }
            self.posts[post_id] = Post(data)
            # /new is newest first; insert in time order so back-dated posts land in the right place.
            at = 0
            while at < len(sub.posts) and self.posts[sub.posts[at]].data["created_utc"] > created_utc:
                at += 1
            sub.posts.insert(at, post_id)
            return data

    def add_comment(
        self,
        post_id: str,
        body: str,
        author: str,
        created_utc: float,
        *,
        parent: str | None = None,
        score: int = 1,
        comment_id_step: int = 1,
    ) -> dict[str, Any]:
        """A comment on `post_id`, top-level or under `parent` (a comment id or `t1_` fullname)."""
        with self.lock:
            post = self.posts.get(post_id.removeprefix("t3_"))
            if post is None:
                raise KeyError(f"no post {post_id}")
            parent_comment = None
            if parent is not None and not parent.startswith("t3_"):
                parent_comment = self.comments.get(parent.removeprefix("t1_"))
                if parent_comment is None:
                    raise KeyError(f"no comment {parent}")
            self._next_comment += comment_id_step
            comment_id = base36(self._next_comment)
            pdata = post.data
            data = {
                "subreddit_id": pdata["subreddit_id"],
                "link_id": pdata["name"],
                "author": author,
                "author_fullname": None if author == "[deleted]" else self.author_id(author),
                "id": comment_id,
                "name": f"t1_{comment_id}",
                "parent_id": pdata["name"] if parent_comment is None else parent_comment.data["name"],
                "body": body,
                "score": score,
                "ups": score,
                "downs": 0,
                "created": created_utc,
                "created_utc": created_utc,
                "depth": 0 if parent_comment is None else parent_comment.data["depth"] + 1,
                "permalink": f"{pdata['permalink']}{comment_id}/",
                "subreddit": pdata["subreddit"],
                "subreddit_name_prefixed": pdata["subreddit_name_prefixed"],
                "is_submitter": author == pdata["author"] and author != "[deleted]",
                "edited": False,
                "stickied": False,
                "distinguished": None,
                "controversiality": 0,
                "score_hidden": False,
                "collapsed": False,
                "archived": False,
                "locked": False,
                "gilded": 0,
            }
            self.comments[comment_id] = Comment(data)
            if parent_comment is None:
                post.top_level.append(comment_id)
            else:
                parent_comment.children.append(comment_id)
            pdata["num_comments"] += 1
            return data

    def subtree(self, comment_ids: Sequence[str]) -> Iterator[Comment]:
        """The comments and all their descendants, depth first (parents before children)."""
        for comment_id in comment_ids:
            comment = self.comments[comment_id]
            yield comment
            yield from self.subtree(comment.children)


# ---------------------------------------------------------------------------------------------------
# Seeding.
# ---------------------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    """A word list written as one string: easier to read and extend than a column of literals."""
    return tuple(text.split())


_NAME_A = _words("crypto eth defi hodl gas block chain satoshi vitalik moon stake node rollup zk degen")
_NAME_B = _words("enjoyer maxi wizard fan dev whale anon builder skeptic panda otter ape frog cat")
_TOPICS = (
    "staking rewards",
    "L2 fees",
    "the Pectra upgrade",
    "running my own node",
    "a hardware wallet",
    "account abstraction wallets",
    "MEV",
    "blob fees",
    "restaking risk",
    "ENS names",
    "stablecoin regulation",
    "self-custody",
    "gas optimisation in Solidity",
    "bridging to Base",
    "a seed phrase backup",
    "Uniswap v4 hooks",
    "validator client diversity",
    "DAO governance",
    "airdrop farming",
    "zk rollups vs optimistic rollups",
)
_TITLES = (
    "What do you think about {t}?",
    "Daily discussion: {t}",
    "I wrote a guide to {t}",
    "Is {t} overrated?",
    "ELI5: {t}",
    "PSA: be careful with {t}",
    "Finally understood {t} - here is my summary",
    "Weekly thread on {t}",
    "Unpopular opinion about {t}",
    "Help needed with {t}",
)
_BODIES = (
    "I've been reading about {t} for a while and I still have questions.",
    "Long-time lurker here. Curious what the community thinks about {t}.",
    "Here's what I learned after a month with {t}:\n\n* it works\n* it is cheaper than I thought\n* docs are thin",
    "Serious question, no shilling please.",
    "Sources in the comments. TL;DR: {t} is more nuanced than people say.",
    "",
)
_COMMENTS = (
    "Great write-up, thanks!",
    "This. So much this.",
    "Not sure I agree, the numbers don't add up for me.",
    "Source?",
    "I had the same experience with {t}.",
    "Be careful, there are a lot of scams around {t}.",
    "Can you elaborate? I'm new here.",
    "DYOR, but I think you're right.",
    "The docs explain this pretty well: https://ethereum.org/en/developers/docs/",
    "Underrated comment.",
    "lol",
    "Fees have been way lower since the last upgrade.",
    "I'd wait a few weeks before doing anything.",
    "> {t}\n\nThat's the part nobody talks about.",
)
_FLAIRS = (None, None, "Discussion", "Question", "Educational", "News", "Dev")


@dataclass(frozen=True)
class SeedSpec:
    seed: int = 1
    subreddits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SUBREDDITS))
    comments_per_post: float = 6.0
    authors: int = 120


def _seed(spec: SeedSpec, data: RedditData) -> None:
    """Fill `data`: posts spread over the last `HISTORY_DAYS` days, comment trees after each post."""
    rng = random.Random(spec.seed)
    authors = sorted(
        {f"{rng.choice(_NAME_A)}_{rng.choice(_NAME_B)}{rng.randrange(1, 999)}" for _ in range(spec.authors)}
    )
    start = HISTORY_END - HISTORY_DAYS * 86_400
    planned: list[tuple[float, str]] = []
    for name, count in spec.subreddits.items():
        data.add_subreddit(name, rng.randrange(20_000, 3_000_000), start - rng.randrange(1, 3000) * 86_400)
        planned += [(round(rng.uniform(start, HISTORY_END), 3), name) for _ in range(count)]
    planned.sort()  # ids grow with time, as on Reddit
    for created, sub in planned:
        topic = rng.choice(_TOPICS)
        author = "[deleted]" if rng.random() < 0.04 else rng.choice(authors)
        is_link = rng.random() < 0.25
        score = int(rng.paretovariate(1.3)) - 1 + rng.randrange(0, 3)
        post = data.add_post(
            sub,
            rng.choice(_TITLES).format(t=topic),
            rng.choice(_BODIES).format(t=topic),
            author,
            created,
            url=f"https://blog.example.org/{rng.randrange(10**6)}" if is_link else None,
            score=score,
            upvote_ratio=round(rng.uniform(0.55, 1.0), 2),
            flair=rng.choice(_FLAIRS),
            post_id_step=rng.randrange(1, 40),  # other subreddits post in between
        )
        _seed_comments(rng, data, post, authors, topic, spec.comments_per_post)


def _seed_comments(
    rng: random.Random, data: RedditData, post: dict[str, Any], authors: list[str], topic: str, mean: float
) -> None:
    count = int(rng.expovariate(1 / mean)) if mean > 0 and rng.random() < 0.9 else 0
    if rng.random() < 0.03:
        count += 120  # the occasional busy thread
    placed: list[tuple[str, int, float]] = []  # (comment id, depth, created)
    for _ in range(count):
        parent = None
        when = post["created_utc"] + rng.expovariate(1 / 3600)
        if placed and rng.random() < 0.55:
            parent_id, depth, parent_created = rng.choice(placed)
            if depth < 7:
                parent = parent_id
                when = parent_created + rng.expovariate(1 / 1800)
        deleted = rng.random() < 0.03
        body = rng.choice(("[deleted]", "[removed]")) if deleted else rng.choice(_COMMENTS).format(t=topic)
        comment = data.add_comment(
            post["id"],
            body,
            "[deleted]" if deleted else rng.choice(authors),
            round(min(when, HISTORY_END + 86_400), 3),
            parent=parent,
            score=int(rng.paretovariate(1.5)) - 1 + rng.randrange(-1, 3),
            comment_id_step=rng.randrange(1, 30),
        )
        placed.append((comment["id"], comment["depth"], comment["created_utc"]))


# ---------------------------------------------------------------------------------------------------
# OAuth tokens and rate-limit accounting.
# ---------------------------------------------------------------------------------------------------


@dataclass
class Token:
    client_id: str
    username: str | None  # None: application-only (read-only) token
    expires_at: float


class RateWindow:
    """Fixed windows of `window` seconds from server start, `limit` requests per client in each, the
    way Reddit counts (its windows are aligned to the clock; ours to start-up, for repeatable tests)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._origin = time.monotonic()
        self._used: dict[str, tuple[int, int]] = {}  # client -> (window number, used)
        self._lock = threading.Lock()

    def count(self, client: str) -> tuple[bool, dict[str, str]]:
        """Count one request; returns (allowed, headers)."""
        with self._lock:
            elapsed = time.monotonic() - self._origin
            number = int(elapsed // self.window)
            seen, used = self._used.get(client, (number, 0))
            used = (used if seen == number else 0) + 1
            self._used[client] = (number, used)
            reset = max(0, int((number + 1) * self.window - elapsed))
        remaining = max(0, self.limit - used)
        headers = {
            "x-ratelimit-remaining": f"{float(remaining):.1f}",
            "x-ratelimit-used": str(used),
            "x-ratelimit-reset": str(reset),
        }
        return used <= self.limit, headers


# ---------------------------------------------------------------------------------------------------
# The server.
# ---------------------------------------------------------------------------------------------------

_COMMENTS_RE = re.compile(r"^(?:/r/[^/]+)?/comments/([a-z0-9]+)(?:/.*)?$")
_NEW_RE = re.compile(r"^/r/([^/]+)/new(?:\.json)?$")
_ABOUT_RE = re.compile(r"^/r/([^/]+)/about(?:\.json)?$")
_SORTED_RE = re.compile(r"^/r/([^/]+)/(hot|rising|top)(?:\.json)?$")
_USER_RE = re.compile(r"^/user/([A-Za-z0-9_-]{1,32})/about(?:\.json)?$")


class RedditAPI(StubServer):
    """The Reddit stand-in: `RedditAPI(seed=1).start()`, then PRAW with `oauth_url=reddit_url=short_url=url`.

    Credentials default to `DEFAULT_CLIENT_ID` / `DEFAULT_CLIENT_SECRET` and, for the password grant,
    `DEFAULT_USERNAME` / `DEFAULT_PASSWORD`. `ratelimit_requests` per `ratelimit_window` seconds is
    the per-client budget; `more_after` caps comments shown per tree level before a `more` object.
    """

    name = "reddit-api"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 1,
        subreddits: Mapping[str, int] | None = None,
        comments_per_post: float = 6.0,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        ratelimit_requests: int = 1000,
        ratelimit_window: float = 600.0,
        token_lifetime: int = 86_400,
        more_after: int = 200,
        listing_cap: int = 1000,
    ) -> None:
        super().__init__(host, port)
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password = username, password
        self.token_lifetime = token_lifetime
        self.more_after = more_after
        self.listing_cap = listing_cap
        self.rate = RateWindow(ratelimit_requests, ratelimit_window)
        self.tokens: dict[str, Token] = {}
        self.data = RedditData()
        spec = SeedSpec(seed, dict(subreddits if subreddits is not None else DEFAULT_SUBREDDITS), comments_per_post)
        _seed(spec, self.data)
        self._seeded_until = HISTORY_END

    # --- dataset, for tests ----------------------------------------------------------------------

    def subreddits(self) -> list[str]:
        with self.data.lock:
            return [s.name for s in self.data.subreddits.values()]

    def posts(self, subreddit: str) -> list[dict[str, Any]]:
        """The subreddit's posts, newest first (the order `/new` pages them in)."""
        with self.data.lock:
            sub = self.data.subreddits[subreddit.lower()]
            return [dict(self.data.posts[p].data) for p in sub.posts]

    def post(self, post_id: str) -> dict[str, Any]:
        with self.data.lock:
            return dict(self.data.posts[post_id.removeprefix("t3_")].data)

    def post_count(self, subreddit: str) -> int:
        with self.data.lock:
            return len(self.data.subreddits[subreddit.lower()].posts)

    def comments(self, post_id: str) -> list[dict[str, Any]]:
        """Every comment of the post, depth first (what `comments.list()` holds after a full
        `replace_more`), without `replies`."""
        with self.data.lock:
            post = self.data.posts[post_id.removeprefix("t3_")]
            return [dict(c.data) for c in self.data.subtree(post.top_level)]

    def comment_count(self, post_id: str) -> int:
        return int(self.post(post_id)["num_comments"])

    def totals(self) -> dict[str, int]:
        with self.data.lock:
            return {
                "subreddits": len(self.data.subreddits),
                "posts": len(self.data.posts),
                "comments": len(self.data.comments),
                "authors": len(self.data.authors),
            }

    def describe(self) -> dict[str, Any]:
        return {"totals": self.totals()}

    # --- adding data at run time -----------------------------------------------------------------

    def _now(self) -> float:
        """Wall-clock time, but never older than the seeded data, so new items sort on top."""
        with self.data.lock:
            self._seeded_until = max(time.time(), self._seeded_until + 1.0)
            return round(self._seeded_until, 3)

    def add_subreddit(self, name: str, subscribers: int = 1000) -> None:
        self.data.add_subreddit(name, subscribers, self._now())

    def add_post(
        self,
        subreddit: str,
        title: str,
        selftext: str = "",
        *,
        author: str = "devnet_poster",
        url: str | None = None,
        created_utc: float | None = None,
    ) -> dict[str, Any]:
        """Submit a post (created now unless `created_utc`); returns its t3 data."""
        created = self._now() if created_utc is None else created_utc
        return dict(self.data.add_post(subreddit, title, selftext, author, created, url=url))

    def add_comment(
        self,
        post_id: str,
        body: str,
        *,
        parent: str | None = None,
        author: str = "devnet_commenter",
        created_utc: float | None = None,
    ) -> dict[str, Any]:
        """Comment on a post, or reply to comment `parent`; returns its t1 data."""
        created = self._now() if created_utc is None else created_utc
        return dict(self.data.add_comment(post_id, body, author, created, parent=parent))

    def remove(self, fullname: str, by: str = "deleted") -> dict[str, Any]:
        """Delete a post or comment as its author would (`by="deleted"`) or remove it as a moderator
        (`"moderator"`): it keeps its id and place; its text becomes `[deleted]` / `[removed]`, a
        deleted one loses its author, and a post gets `removed_by_category`, as Reddit serves them."""
        marker = "[deleted]" if by == "deleted" else "[removed]"
        with self.data.lock:
            if fullname.startswith("t3_"):
                data = self.data.posts[fullname.removeprefix("t3_")].data
                data["removed_by_category"] = by
                if data.get("is_self"):
                    data["selftext"] = marker
            else:
                data = self.data.comments[fullname.removeprefix("t1_")].data
                data["body"] = marker
            if by == "deleted":
                data["author"], data["author_fullname"] = "[deleted]", None
            return dict(data)

    # --- HTTP ------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path == "/api/v1/access_token":
            return self._access_token(request)
        token = self._token(request)
        allowed, headers = self.rate.count(token.client_id)
        if not allowed:
            raise _reddit_error(429, "Too Many Requests", {**headers, "Retry-After": headers["x-ratelimit-reset"]})
        try:
            payload = self._route(request, path, token)
        except HttpError as err:
            err.response.headers.update(headers)
            raise
        return Response.json(payload, headers=headers)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            return _reddit_error(429, "Too Many Requests", retry_after_headers(fault)).response
        return _reddit_error(500, "Internal Server Error").response

    def _route(self, request: Request, path: str, token: Token) -> Any:
        if request.method == "GET":
            if match := _NEW_RE.match(path):
                return self._new(request, match.group(1))
            if match := _COMMENTS_RE.match(path):
                return self._comments(request, match.group(1))
            if match := _SORTED_RE.match(path):
                return self._sorted_listing(request, match.group(1), match.group(2))
            if match := _USER_RE.match(path):
                return self._user_about(match.group(1))
            if match := _ABOUT_RE.match(path):
                return self._about(match.group(1))
            if path == "/api/info":
                return self._info(request.arg("id") or "")
            if path == "/api/v1/me":
                return self._me(token)
        if path == "/api/morechildren" and request.method in ("GET", "POST"):
            args = request.form() if request.method == "POST" else {k: v[0] for k, v in request.query.items()}
            return self._morechildren(args)
        raise _reddit_error(404, "Not Found")

    # --- auth --------------------------------------------------------------------------------------

    def _access_token(self, request: Request) -> Response:
        if request.method != "POST":
            raise _reddit_error(405, "Method Not Allowed")
        client = _basic_auth(request.header("Authorization") or "")
        if client != (self.client_id, self.client_secret):
            raise _reddit_error(401, "Unauthorized")
        form = request.form()
        grant = form.get("grant_type")
        username = None
        if grant == "password":
            if (form.get("username"), form.get("password")) != (self.username, self.password):
                return Response.json({"error": "invalid_grant"})
            username = self.username
        elif grant != "client_credentials":
            return Response.json({"error": "unsupported_grant_type"})
        access_token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[access_token] = Token(self.client_id, username, time.time() + self.token_lifetime)
        body = {"access_token": access_token, "token_type": "bearer", "expires_in": self.token_lifetime, "scope": "*"}
        return Response.json(body)

    def _token(self, request: Request) -> Token:
        scheme, _, value = (request.header("Authorization") or "").partition(" ")
        with self._lock:
            token = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.expires_at < time.time():
            raise _reddit_error(401, "Unauthorized", {"www-authenticate": INVALID_TOKEN})
        return token

    def expire_tokens(self) -> None:
        """Make every issued token expired, to test that a client fetches a new one."""
        with self._lock:
            for token in self.tokens.values():
                token.expires_at = 0.0

    # --- endpoints -------------------------------------------------------------------------------

    def _new(self, request: Request, names: str) -> dict[str, Any]:
        limit = _limit(request.arg("limit"), default=25)
        after, before = request.arg("after"), request.arg("before")
        with self.data.lock:
            ids: list[str] = []
            for name in names.lower().split("+"):
                sub = self.data.subreddits.get(name)
                if sub is None:
                    raise _reddit_error(404, "Not Found")
                ids += sub.posts
            if "+" in names:
                ids.sort(key=lambda p: self.data.posts[p].data["created_utc"], reverse=True)
            ids = ids[: self.listing_cap]
            fullnames = [f"t3_{p}" for p in ids]
            if after:
                start = fullnames.index(after) + 1 if after in fullnames else len(ids)
                page = ids[start : start + limit]
                more = start + limit < len(ids)
            elif before:
                end = fullnames.index(before) if before in fullnames else 0
                page = ids[max(0, end - limit) : end]
                more = True
            else:
                page, more = ids[:limit], limit < len(ids)
            children: list[dict[str, Any]] = [{"kind": "t3", "data": dict(self.data.posts[p].data)} for p in page]
        next_after = children[-1]["data"]["name"] if more and children else None
        first_before = children[0]["data"]["name"] if (after or before) and children else None
        return _listing(children, next_after, first_before)

    def _sorted_listing(self, request: Request, name: str, sort: str) -> dict[str, Any]:
        """`/hot` (score decayed by age, as Reddit's hot rank), `/rising` (the last day's posts by
        score per hour of age) and `/top?t=hour|day|week|month|year|all` (by score in that period),
        one page of at most `limit` (no paging beyond it: these listings are read for their top)."""
        limit = _limit(request.arg("limit"), default=25)
        periods = {"hour": 3600, "day": 86_400, "week": 604_800, "month": 2_592_000, "year": 31_536_000}
        with self.data.lock:
            sub = self.data.subreddits.get(name.lower())
            if sub is None:
                raise _reddit_error(404, "Not Found")
            posts = [self.data.posts[p].data for p in sub.posts]
            newest = max((p["created_utc"] for p in posts), default=0.0)
            if sort == "hot":
                ranked = sorted(posts, key=lambda p: -(math.log10(max(abs(p["score"]), 1)) + p["created_utc"] / 45_000))
            elif sort == "rising":
                recent = [p for p in posts if p["created_utc"] > newest - 86_400]
                ranked = sorted(recent, key=lambda p: -p["score"] / (1 + (newest - p["created_utc"]) / 3600))
            else:
                period = request.arg("t") or "day"
                if period != "all" and period not in periods:
                    raise _reddit_error(400, "Bad Request")
                since = newest - periods.get(period, 10**12)
                ranked = sorted((p for p in posts if p["created_utc"] > since), key=lambda p: -p["score"])
            children = [{"kind": "t3", "data": dict(p)} for p in ranked[:limit]]
        return _listing(children, None)

    def _user_about(self, name: str) -> dict[str, Any]:
        """`/user/{name}/about`: a t2 with karma and account age, derived from the name (stable)."""
        with self.data.lock:
            known = name in self.data.authors
            user_id = self.data.authors.get(name)
        if not known or user_id is None:
            raise _reddit_error(404, "Not Found")
        digest = int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)
        link_karma, comment_karma = digest % 20_000, (digest // 20_000) % 50_000
        return {
            "kind": "t2",
            "data": {
                "name": name,
                "id": user_id.removeprefix("t2_"),
                "created_utc": float(HISTORY_END - 86_400 * (30 + digest % 3000)),
                "link_karma": link_karma,
                "comment_karma": comment_karma,
                "total_karma": link_karma + comment_karma,
                "is_mod": digest % 7 == 0,
                "is_gold": False,
                "verified": True,
                "has_verified_email": True,
            },
        }

    def user_about(self, name: str) -> dict[str, Any]:
        return self._user_about(name)["data"]  # type: ignore[no-any-return]

    def _comments(self, request: Request, post_id: str) -> list[dict[str, Any]]:
        cap = min(self.more_after, _limit(request.arg("limit"), default=200, maximum=10_000))
        sort = request.arg("sort") or "confidence"
        with self.data.lock:
            post = self.data.posts.get(post_id)
            if post is None:
                raise _reddit_error(404, "Not Found")
            post_listing = _listing([{"kind": "t3", "data": dict(post.data)}], None)
            tree = self._forest(post.top_level, post.data["name"], 0, cap, sort)
        return [post_listing, _listing(tree, None)]

    def _forest(self, ids: list[str], parent: str, depth: int, cap: int, sort: str) -> list[dict[str, Any]]:
        """Comment things for one level: the first `cap` (sorted) with nested replies, then `more`."""
        ordered = self._sorted(ids, sort)
        shown, hidden = ordered[:cap], ordered[cap:]
        things: list[dict[str, Any]] = []
        for comment_id in shown:
            comment = self.data.comments[comment_id]
            replies = self._forest(comment.children, comment.data["name"], depth + 1, cap, sort)
            things.append(
                {"kind": "t1", "data": {**comment.data, "replies": _listing(replies, None) if replies else ""}}
            )
        if hidden:
            count = sum(1 for _ in self.data.subtree(hidden))
            things.append(
                {
                    "kind": "more",
                    "data": {
                        "count": count,
                        "name": f"t1_{hidden[0]}",
                        "id": hidden[0],
                        "parent_id": parent,
                        "depth": depth,
                        "children": hidden,
                    },
                }
            )
        return things

    def _sorted(self, ids: list[str], sort: str) -> list[str]:
        comments = self.data.comments
        if sort == "new":
            return sorted(ids, key=lambda c: -comments[c].data["created_utc"])
        if sort == "old":
            return sorted(ids, key=lambda c: comments[c].data["created_utc"])
        return sorted(ids, key=lambda c: (-comments[c].data["score"], comments[c].data["created_utc"]))

    def _morechildren(self, args: Mapping[str, str]) -> dict[str, Any]:
        """The hidden comments and their descendants, flat (each with `replies: ""`), parents first."""
        link_id = args.get("link_id", "")
        wanted = [c for c in (args.get("children") or "").split(",") if c]
        with self.data.lock:
            post = self.data.posts.get(link_id.removeprefix("t3_"))
            if post is None or any(c not in self.data.comments for c in wanted):
                raise _reddit_error(400, "Bad Request")
            things = [{"kind": "t1", "data": {**c.data, "replies": ""}} for c in self.data.subtree(wanted)]
        return {"json": {"errors": [], "data": {"things": things}}}

    def _about(self, name: str) -> dict[str, Any]:
        with self.data.lock:
            sub = self.data.subreddits.get(name.lower())
        if sub is None:
            raise _reddit_error(404, "Not Found")
        return {
            "kind": "t5",
            "data": {
                "display_name": sub.name,
                "display_name_prefixed": f"r/{sub.name}",
                "name": sub.id,
                "id": sub.id.removeprefix("t5_"),
                "title": f"r/{sub.name}",
                "public_description": f"Discussion about {sub.name}.",
                "subscribers": sub.subscribers,
                "created_utc": sub.created_utc,
                "over18": False,
                "subreddit_type": "public",
                "url": f"/r/{sub.name}/",
            },
        }

    def _info(self, ids: str) -> dict[str, Any]:
        children = []
        with self.data.lock:
            for fullname in (i for i in ids.split(",") if i):
                kind, _, item_id = fullname.partition("_")
                if kind == "t3" and item_id in self.data.posts:
                    children.append({"kind": "t3", "data": dict(self.data.posts[item_id].data)})
                elif kind == "t1" and item_id in self.data.comments:
                    children.append({"kind": "t1", "data": {**self.data.comments[item_id].data, "replies": ""}})
        return _listing(children, None)

    def _me(self, token: Token) -> dict[str, Any]:
        if token.username is None:
            raise _reddit_error(403, "Forbidden", {"www-authenticate": INSUFFICIENT_SCOPE})
        return {
            "name": token.username,
            "id": self.data.author_id(token.username).removeprefix("t2_"),
            "created_utc": HISTORY_END - 800 * 86_400,
            "link_karma": 1,
            "comment_karma": 1,
            "total_karma": 2,
            "has_verified_email": True,
            "is_mod": False,
            "is_gold": False,
            "over_18": False,
            "verified": True,
        }

    # --- control endpoints for a stand-in in another process -------------------------------------

    def handle_control(self, request: Request) -> Response | None:
        """`POST /_devnet/posts|comments` add items; `GET /_devnet/dataset` reads counts back."""
        path = request.path.rstrip("/")
        if path == "/_devnet/dataset" and request.method == "GET":
            counts = {name: self.post_count(name) for name in self.subreddits()}
            return Response.json({"subreddits": counts, "totals": self.totals()})
        if request.method != "POST" or path not in ("/_devnet/posts", "/_devnet/comments"):
            return None
        spec = request.json()
        try:
            if path == "/_devnet/posts":
                item = self.add_post(
                    str(spec["subreddit"]),
                    str(spec["title"]),
                    str(spec.get("selftext", "")),
                    author=str(spec.get("author", "devnet_poster")),
                    url=spec.get("url"),
                )
            else:
                item = self.add_comment(
                    str(spec["post_id"]),
                    str(spec["body"]),
                    parent=spec.get("parent"),
                    author=str(spec.get("author", "devnet_commenter")),
                )
        except (KeyError, TypeError, ValueError) as err:
            raise _reddit_error(400, f"Bad Request: {err!r}") from err
        return Response.json(item)


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, secret = base64.b64decode(value.strip()).decode().partition(":")
    except ValueError:
        return None
    return user, secret


def _limit(raw: str | None, default: int, maximum: int = MAX_PAGE) -> int:
    """Reddit clamps `limit` rather than rejecting it: PRAW's `limit=None` asks for 1024."""
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = default
    return max(1, min(value, maximum))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m devnet.reddit_api --port N`: serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m devnet.reddit_api", description=__doc__.splitlines()[0])
    add_server_arguments(parser)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--ratelimit-requests", type=int, default=1000, help="per client per window")
    parser.add_argument("--ratelimit-window", type=float, default=600.0, help="seconds")
    args = parser.parse_args(argv)
    server = RedditAPI(
        args.host,
        args.port,
        seed=args.seed,
        client_id=args.client_id,
        client_secret=args.client_secret,
        username=args.username,
        password=args.password,
        ratelimit_requests=args.ratelimit_requests,
        ratelimit_window=args.ratelimit_window,
    )
    return serve_until_signal(server)


if __name__ == "__main__":
    sys.exit(main())
