"""Answering a search: what the user typed, turned into ranked posts or profiles with highlights.

Used by GET /api/search (manager/http/search.py) and bench/search.py, on the indexes the search
worker keeps (sql/search.sql). Modes:

- `auto` (default): tags alone (`#tag`, `$cashtag`, `@mention`, `domain:x.com` or a bare domain)
  list the newest posts carrying them (then posts using the words); otherwise full-text with the
  exact words, ranked; when that finds fewer than `FUZZY_BELOW`, the query widened for typos and
  with its last word as a prefix adds its matches after the exact ones; when nothing at all
  matched, the nearest posts by embedding (if an embedder is available) stand in;
- `text` (exact words only), `fuzzy` (the widened query only), `tag`, `semantic` (embedding only),
  `hybrid` (text and semantic lists fused by reciprocal rank).

Every result says how it was found (`matchedBy`).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg import AsyncConnection
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from sql import query

MODES = ("auto", "text", "fuzzy", "tag", "semantic", "hybrid")
KINDS = ("posts", "profiles")
SCAN_NEWEST = 5000  # the newest posts, whose matches are ranked first (see search_posts_top, migration 0022)
RANK_WINDOW = 1000  # matches ranked at most
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.)
# In auto mode typos are corrected only when the exact words found fewer results than this: a
# typo of a common word matches a few posts (typos recur), a rare but real word a dozen or more,
# which should not be drowned by its look-alikes.
FUZZY_BELOW = 10

_TAG_TOKEN = re.compile(
    r"""^(?:\#(?P<hashtag>[^\W\d_][\w]{0,63})
         |\$(?P<cashtag>[A-Za-z][A-Za-z0-9]{0,9})
         |@(?P<mention>[\w][\w.-]{0,63})
         |(?:domain|site):(?P<site>[\w.-]+\.[A-Za-z]{2,})
         |(?P<domain>(?:www\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|org|net|io|xyz|co|app|dev|eth|fm|gg|me|so|tv|ai|info|news|finance|[a-z]{2}))
        )[.,;:!?]*$""",
    re.X,
)

Embedder = Callable[[str], Awaitable[np.ndarray]]
# Where an embedder comes from when a search turns out to need one: (embedder, dimensions), or None
# when none is configured. Asked at most once per search, and only by the modes that embed (the
# API reads the ai worker's settings for it: a round trip most searches never need).
SemanticSource = Callable[[], Awaitable[tuple[Embedder, int] | None]]


class SearchUnavailable(Exception):
    """A part of search cannot run (semantic without a configured embedder); the message says why."""


@dataclass(frozen=True)
class Tag:
    kind: str  # hashtag | cashtag | mention | domain
    tag: str


def parse_tags(q: str) -> tuple[list[Tag], str]:
    """The tags in a query and the words left over: `#ETH gas` -> ([hashtag eth], "gas")."""
    tags: list[Tag] = []
    rest: list[str] = []
    for token in q.split():
        match = _TAG_TOKEN.match(token)
        if not match:
            rest.append(token)
            continue
        kind = next(k for k, v in match.groupdict().items() if v)
        value = match[kind].lower().rstrip(".")
        if kind in ("site", "domain"):
            kind, value = "domain", value.removeprefix("www.")
        tags.append(Tag(kind, value))
    return tags, " ".join(rest)


def _q(name: str) -> str:
    return query(name, "search.sql")


def inert_highlight(headline: str | None) -> str | None:
    """The highlight as safe HTML: the post text escaped, and only the exact `<mark>`/`</mark>`
    tags put back (they carry no attributes, so even a post's own `<mark>` stays harmless)."""
    if headline is None:
        return None
    return html.escape(headline, quote=True).replace("&lt;mark&gt;", "<mark>").replace("&lt;/mark&gt;", "</mark>")


def _item(row: dict[str, Any], kind: str, matched_by: str) -> dict[str, Any]:
    if kind == "posts":
        return {
            "kind": "post",
            "id": row["id"],
            "platform": row["platform"],
            "externalId": row["external_id"],
            "author": row["author_name"] or row["author_external_id"],
            "authorId": row["author_external_id"],
            "title": row["title"],
            "url": row["url"],
            "channel": row["channel"],
            "createdAt": row["created_at"].isoformat().replace("+00:00", "Z") if row["created_at"] else None,
            "score": round(float(row["score"]), 6),
            "headline": inert_highlight(row["headline"]),
            "matchedBy": matched_by,
        }
    return {
        "kind": "profile",
        "id": row["id"],
        "platform": row["platform"],
        "externalId": row["external_id"],
        "username": row["username"],
        "displayName": row["display_name"],
        "avatarUrl": row["avatar_url"],
        "url": row["url"],
        "score": round(float(row["score"]), 6),
        "headline": inert_highlight(row["headline"]),
        "matchedBy": matched_by,
    }


class Search:
    """One search on one connection; `run()` returns the response body."""

    def __init__(
        self,
        conn: AsyncConnection[Any],
        q: str,
        *,
        kind: str = "posts",
        limit: int = 20,
        mode: str = "auto",
        embedder: Embedder | None = None,
        dims: int | None = None,
        semantic_source: SemanticSource | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.conn, self.q, self.kind, self.limit, self.mode = conn, q.strip(), kind, limit, mode
        self.embedder, self.dims = embedder, dims
        self._semantic_source = semantic_source
        self.results: list[dict[str, Any]] = []
        self.notes: dict[str, Any] = {}

    @property
    def found(self) -> list[int]:
        return [r["id"] for r in self.results]

    @property
    def missing(self) -> int:
        return self.limit - len(self.results)

    async def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        tags, words = parse_tags(self.q) if self.kind == "posts" else ([], self.q)
        if self.mode == "tag" and not tags:  # a well-formed request that matches nothing: say why
            self.notes["note"] = "mode=tag needs a #hashtag, $cashtag, @mention or domain:example.com in q"
        if tags and self.mode in ("auto", "tag") and not words:
            await self._tags(tags)
        if self.mode == "semantic":
            await self._semantic(required=True)
        elif self.mode == "hybrid":
            await self._hybrid()
        elif self.mode != "tag":
            await self._words()
            if not self.results and self.mode == "auto" and await self._embedder_found():
                await self._semantic(required=False)
        return {
            "query": self.q,
            "kind": self.kind,
            "mode": self.mode,
            **self.notes,
            "count": len(self.results),
            "tookMs": round((time.perf_counter() - started) * 1000, 2),
            "results": self.results,
        }

    async def _rows(self, statement: str | pgsql.Composed, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(statement, params)
            return await cur.fetchall()

    async def _scalar(self, statement: str, params: dict[str, Any]) -> Any:
        cur = await self.conn.execute(statement, params)
        row = await cur.fetchone()
        return row[0] if row else None

    async def _tags(self, tags: Sequence[Tag]) -> None:
        self.notes["tags"] = [{"kind": t.kind, "tag": t.tag} for t in tags]
        if len(tags) == 1:
            rows = await self._rows(_q("posts_by_tag"), {"kind": tags[0].kind, "tag": tags[0].tag, "limit": self.limit})
        else:
            rows = await self._rows(
                _q("posts_by_tags"),
                {
                    "kinds": [t.kind for t in tags],
                    "tags": [t.tag for t in tags],
                    "limit": self.limit,
                },
            )
        self.results += [_item(r, "posts", "tag") for r in rows]

    async def _words(self) -> None:
        """The exact words, then (by mode) the query widened for typos and prefixes."""
        exact = self.mode != "fuzzy" and self.missing > 0
        # below this many exact results the widened query adds its matches
        widen_below = {"auto": min(self.limit, FUZZY_BELOW), "text": 0}.get(self.mode, self.limit)
        if self.kind == "posts":
            if exact or len(self.results) < widen_below:  # else a page of tags already: nothing to add
                await self._posts_text(exact=exact, widen_below=widen_below)
            return
        if exact:
            await self._text(fuzzy=False)
        if len(self.results) < widen_below:
            await self._text(fuzzy=True)

    async def _posts_text(self, *, exact: bool, widen_below: int) -> None:
        """Posts for the words in one statement (search_posts_text): one round trip, cached plans."""
        rows = await self._rows(
            _q("search_posts_text"),
            {
                "q": self.q,
                "exact": exact,
                "widen_below": widen_below,
                "limit": self.limit,
                "exclude": self.found,
                "scan": SCAN_NEWEST,
                "window": RANK_WINDOW,
            },
        )
        for row in rows:
            if row["id"] is not None:
                self.results.append(_item(row, "posts", row["found_by"]))
            elif row["found_by"] == "text":
                self.notes["tsquery"] = row["query"]
            elif self.mode != "auto" or row["query"] != self.notes["tsquery"]:
                self.notes["widenedQuery"] = row["query"]

    async def _text(self, *, fuzzy: bool) -> None:
        """Profiles for the exact words, or for the widened query (few rows: every match is ranked)."""
        if "tsquery" not in self.notes:
            cur = await self.conn.execute(_q("exact_query"), {"q": self.q})
            self.notes["tsquery"] = (await cur.fetchone() or ("",))[0]
        exact = tsquery = self.notes["tsquery"]
        if fuzzy:
            cur = await self.conn.execute(_q("widened_query"), {"q": self.q, "prefix_last": True})
            tsquery = (await cur.fetchone() or ("",))[0]
            if self.mode == "auto" and tsquery == exact:
                return  # nothing to widen: the exact search already said everything
            self.notes["widenedQuery"] = tsquery
        if not tsquery:
            return  # only stop words
        rows = await self._rows(_q("search_profiles"), {"q": tsquery, "limit": self.missing, "exclude": self.found})
        self.results += [_item(r, self.kind, "fuzzy" if fuzzy else "text") for r in rows]

    async def _embedder_found(self) -> bool:
        """Whether this search has an embedder, from `semantic_source` the first time it is asked."""
        if self.embedder is None and self._semantic_source is not None:
            source, self._semantic_source = self._semantic_source, None
            found = await source()
            if found is not None:
                self.embedder, self.dims = found
        return self.embedder is not None

    async def _semantic(self, *, required: bool, limit: int | None = None) -> list[dict[str, Any]]:
        """The nearest items by embedding; appended to the results unless `limit` is given."""
        embedder = self.embedder if await self._embedder_found() else None
        if embedder is None or self.dims is None:
            reason = "semantic search needs the ai worker's base_url and API key"
            self.notes["semantic"] = f"unavailable: {reason}"
            if required:
                raise SearchUnavailable(reason)
            return []
        if not await self._scalar(_q("semantic_ready"), {}):
            self.notes["semantic"] = "unavailable: no embeddings yet (pgvector missing or the ai worker never ran)"
            if required:
                raise SearchUnavailable(self.notes["semantic"])
            return []
        try:
            vector = await embedder(self.q)
        except Exception as exc:
            self.notes["semantic"] = f"unavailable: {exc}"
            if required:
                raise SearchUnavailable(str(exc)) from exc
            return []
        statement = pgsql.SQL(_q(f"semantic_{self.kind}")).format(dims=pgsql.Literal(int(self.dims)))  # type: ignore[arg-type]
        rows = await self._rows(
            statement,
            {
                "embedding": "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]",
                "limit": limit or self.missing,
                "exclude": [] if limit else self.found,
            },
        )
        self.notes["semantic"] = "used"
        items = [_item(r, self.kind, "semantic") for r in rows]
        if limit is None:
            self.results += items
        return items

    async def _hybrid(self) -> None:
        """Text (exact, then widened) and semantic lists fused by reciprocal rank."""
        await self._words()
        lexical, self.results = self.results, []
        semantic = await self._semantic(required=False, limit=self.limit)
        fused: dict[int, dict[str, Any]] = {}
        scores: dict[int, float] = {}
        for ranked in (lexical, semantic):
            for position, item in enumerate(ranked, 1):
                scores[item["id"]] = scores.get(item["id"], 0.0) + 1.0 / (RRF_K + position)
                if item["id"] in fused:
                    fused[item["id"]]["matchedBy"] += "+" + item["matchedBy"]
                else:
                    fused[item["id"]] = dict(item)
        for item_id, item in fused.items():
            item["score"] = round(scores[item_id], 6)
        self.results = sorted(fused.values(), key=lambda i: -i["score"])[: self.limit]
