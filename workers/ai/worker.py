"""The ai worker: embeddings, summaries, sentiment, topics and recommendations for posts and profiles.

Each cycle takes posts and profiles changed since its cursors (`updated_at`, `id`), in batches of
`batch_size` (default 10), alternating the two streams, until both are drained or `max_cycle_s`
has passed. For one batch:

1. embeddings: texts already embedded by the same model and size come from `ai_embedding_cache`
   (content hash), the rest go out in one request; new vectors are cached at once, outside the
   batch transaction, because they were paid for whatever happens next;
2. posts only: a summary and a sentiment label per post from a chat completion, unless a post with
   identical text already has them;
3. one transaction writes each item's results (`ai_posts` / `ai_profiles`, one savepoint per item),
   assigns each post to its nearest topic (a new topic when none is within `topic_similarity`),
   stores its nearest neighbours (`ai_similar_posts` / `ai_similar_profiles`, by `<=>` on the HNSW
   index) and moves the cursor past the items done.

The provider calls happen before the transaction, so no transaction waits on the network. Every
call is recorded in `ai_usage` with its tokens and cost (`*_price_per_1k` settings). A 429 ends
the cycle with `RateLimited` (the base waits out the provider's retry-after) after committing the
items finished before it; an item the provider refuses (400) is stored without that result and
logged. No base URL or key, or no pgvector on the server, is reported as lastError and waited out.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb
from pydantic import Field

from sql import query
from workers.ai.client import AiClient, AiSettings, Rejected, Usage, content_hash
from workers.base import CycleResult, Worker, describe
from workers.errors import NotConfigured, UpstreamError
from workers.settings import WorkerSettings

START = {"updated_at": "-infinity", "id": 0}
_WORD = re.compile(r"[^\W\d_][\w'-]{2,}")
_LABEL_STOPWORDS = frozenset(
    re.findall(
        r"\S+",
        "the and for are but not you all any can had her was one our out has his how its may new now old see "
        "two way who did get let put say she too use that with have this will your from they know want been "
        "good much some time very when come here just like long make many more only over such take than them "
        "well were what into about after again also back because before being could each even first going "
        "most other really should still their there these thing think those through today would https http "
        "www com just lol gonna yeah yes",
    )
)


def _q(name: str) -> str:
    return query(name, "ai.sql")


def _q_dims(name: str, dims: int) -> pgsql.Composed:
    """A query whose `{dims}` is the embedding size, as a literal (see sql/ai.sql)."""
    return pgsql.SQL(_q(name)).format(dims=pgsql.Literal(int(dims)))  # type: ignore[arg-type]


@dataclass
class Work:
    """One post or profile going through a batch."""

    kind: str  # 'post' | 'profile'
    id: int
    updated_at: datetime
    text: str
    hash: bytes | None = None
    embedding: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    summary: str | None = None
    sentiment: str | None = None

    def __post_init__(self) -> None:
        self.hash = content_hash(self.text) if self.text else None
        if not self.text:
            self.meta["embedding"] = "skipped: no text"


def post_text(title: str | None, body: str | None) -> str:
    return "\n\n".join(part.strip() for part in (title, body) if part and part.strip())


def profile_text(username: str | None, display_name: str | None, bio: str | None) -> str:
    """What a profile is about: its name and bio; a bare username says too little to embed."""
    if not (display_name or "").strip() and not (bio or "").strip():
        return ""
    name = (display_name or "").strip()
    if username:
        name = f"{name} (@{username})" if name else f"@{username}"
    return "\n".join(part for part in (name, (bio or "").strip()) if part)


def topic_label(texts: list[str], words: int = 3) -> str | None:
    """A topic's name: the commonest content words of its newest posts, counted once per post."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({w for w in (m.lower() for m in _WORD.findall(text)) if w not in _LABEL_STOPWORDS})
    top = [word for word, _ in counts.most_common(words)]
    return ", ".join(top) if top else None


class Topics:
    """The topic centroids of one model and size, kept in memory between batches (the worker is
    their only writer) and dropped whenever a transaction or an item fails, to be read again."""

    def __init__(self, tx: psycopg.Connection[Any], model: str, dims: int) -> None:
        self.model, self.dims = model, dims
        rows = tx.execute(_q("topics"), {"model": model, "dims": dims}, binary=True).fetchall()
        self.ids: list[int] = [r[0] for r in rows]
        self.centroids = [_unit(np.asarray(r[1].to_numpy(), dtype=np.float64)) for r in rows]
        self.sizes: list[int] = [max(int(r[2]), 1) for r in rows]
        self.touched: set[int] = set()

    def assign(self, tx: psycopg.Connection[Any], vector: np.ndarray, threshold: float, max_topics: int) -> int:
        v = _unit(vector.astype(np.float64))
        best, similarity = -1, -2.0
        if self.centroids:
            sims = np.stack(self.centroids) @ v
            best = int(np.argmax(sims))
            similarity = float(sims[best])
        if best < 0 or (similarity < threshold and len(self.ids) < max_topics):
            row = tx.execute(
                _q("add_topic"), {"model": self.model, "dims": self.dims, "centroid": v.astype(np.float32)}
            ).fetchone()
            assert row is not None
            topic_id = int(row[0])
            self.ids.append(topic_id)
            self.centroids.append(v)
            self.sizes.append(1)
            self.touched.add(topic_id)
            return topic_id
        # running mean of the members, kept on the unit sphere
        self.centroids[best] = _unit(self.centroids[best] * self.sizes[best] + v)
        self.sizes[best] += 1
        self.touched.add(self.ids[best])
        return self.ids[best]

    def save(self, tx: psycopg.Connection[Any]) -> None:
        """Centroids, sizes and labels of the topics this batch touched."""
        if not self.touched:
            return
        for topic_id in sorted(self.touched):
            centroid = self.centroids[self.ids.index(topic_id)]
            tx.execute(_q("move_topic"), {"id": topic_id, "centroid": centroid.astype(np.float32)})
        tx.execute(_q("count_topics"), (sorted(self.touched),))
        for topic_id in sorted(self.touched):
            texts = [r[0] for r in tx.execute(_q("topic_texts"), (topic_id,))]
            tx.execute(_q("label_topic"), (topic_label(texts), topic_id))
        self.touched.clear()


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class AiWorkerSettings(WorkerSettings):
    """The worker's settings; the client's part (URL, models, prices) is checked again by `AiSettings`."""

    interval_ms: int = Field(default=30000, gt=0)
    batch_size: int = Field(default=10, gt=0)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    embedding_model: str = "text-embedding-3-small"
    dimensions: int = 256  # 1..4096, checked by AiSettings (a bad value waits as unconfigured)
    chat_model: str = "gpt-4o-mini"
    summaries: bool = True
    max_input_chars: int = Field(default=8000, gt=0)
    # The client's own retries sleep inside the call, deaf to heartbeats (a 429's retry-after can
    # be a minute): by default the worker's loop does the waiting, heartbeating as it goes.
    max_retries: int = Field(default=0, ge=0)
    timeout_s: float = Field(default=20, gt=0)
    embedding_price_per_1k: float = Field(default=0.00002, ge=0)
    chat_input_price_per_1k: float = Field(default=0.00015, ge=0)
    chat_output_price_per_1k: float = Field(default=0.0006, ge=0)
    max_cost_per_day_usd: float | None = Field(default=None, ge=0)
    topic_similarity: float = 0.5
    max_topics: int = Field(default=200, ge=0)
    recommendations: int = Field(default=5, ge=0)
    recommendation_min_similarity: float = 0.25
    max_cycle_s: float = Field(default=45, ge=0)


class AiWorker(Worker[Work]):
    settings_model = AiWorkerSettings
    settings: AiWorkerSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ai: AiClient | None = None
        self._vector_ready = False
        self._indexed_dims: set[int] = set()
        self._topics: Topics | None = None

    # ---- set-up ---------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        conn = super()._connect()
        if self._vector_ready:
            register_vector(conn)
        return conn

    def validate(self) -> None:
        settings = AiSettings.from_config(self.settings.model_dump())
        self.ai = self.cached_client("ai", settings, lambda: AiClient(settings))
        self._ensure_schema(int(settings.dimensions))
        budget = self.settings.max_cost_per_day_usd
        if budget is not None:
            spent = float((self.control.execute(_q("spent_last_day")).fetchone() or (0.0,))[0])
            if spent >= budget:
                raise NotConfigured(f"daily budget spent: ${spent:.4f} of ${budget:.4f} in the last 24 h")

    def _ensure_schema(self, dims: int) -> None:
        if not self._vector_ready:
            ready = (self.db.execute(_q("schema_ready")).fetchone() or (False,))[0]
            if not ready:
                try:
                    ready = (self.db.execute(_q("install_schema")).fetchone() or (False,))[0]
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise
                except psycopg.Error as exc:  # e.g. no privilege to CREATE EXTENSION
                    raise NotConfigured(f"cannot install the ai tables: {describe(exc)}") from exc
            if not ready:
                raise NotConfigured("pgvector is not available on this Postgres server (CREATE EXTENSION vector)")
            self._vector_ready = True
            register_vector(self.db)
        if dims not in self._indexed_dims:
            self.db.execute(_q("ensure_vector_index"), (dims,))
            self._indexed_dims.add(dims)

    @property
    def client(self) -> AiClient:
        if self.ai is None:
            self.validate()
        assert self.ai is not None
        return self.ai

    # ---- the cycle ------------------------------------------------------------------------------

    def run_cycle(self) -> CycleResult:
        """Alternate post and profile batches until both are drained or `max_cycle_s` is up."""
        self.client  # noqa: B018 - validates (settings, schema) when run without the loop, as in tests
        self.db.execute(_q("forget_deleted_posts"))  # removals of the last cycle leave the recommendations
        streams = {"posts": self.posts_batch, "profiles": self.profiles_batch}
        return self.drain_streams(streams, self.settings.max_cycle_s)

    def _changed(self, name: str) -> tuple[list[tuple[Any, ...]], int]:
        cursor = self.load_cursor(name) or START
        limit = self.settings.batch_size
        rows = self.db.execute(
            _q(f"changed_{name}"),
            {"after_updated_at": cursor["updated_at"], "after_id": cursor["id"], "limit": limit},
        ).fetchall()
        return rows, limit

    def posts_batch(self, total: CycleResult) -> bool:
        """One batch of posts; returns whether more may be waiting."""
        rows, limit = self._changed("posts")
        cap = self.settings.max_input_chars
        items = [Work("post", r[0], r[1], post_text(r[2], r[3])[:cap]) for r in rows]
        return self._batch("posts", items, limit, total, self._write_post, summarize=self.settings.summaries)

    def profiles_batch(self, total: CycleResult) -> bool:
        """One batch of profiles; returns whether more may be waiting."""
        rows, limit = self._changed("profiles")
        cap = self.settings.max_input_chars
        items = [Work("profile", r[0], r[1], profile_text(r[2], r[3], r[4])[:cap]) for r in rows]
        return self._batch("profiles", items, limit, total, self._write_profile, summarize=False)

    def _batch(
        self, stream: str, items: list[Work], limit: int, total: CycleResult, write: Any, *, summarize: bool
    ) -> bool:
        if not items:
            return False
        if self.flag("embeddings"):
            self.embed(items)
        done, interrupted = len(items), None
        if summarize and self.flag("summaries"):
            done, interrupted = self.summarize(items)
        finished = items[:done]
        complete = True
        if finished:
            try:
                with self.transaction() as tx:
                    result, complete = self.run_items(finished, tx, write)
                    if stream == "posts" and self._topics is not None:
                        self._topics.save(tx)
                    if complete:
                        last = finished[-1]
                        self.save_cursor(tx, {"updated_at": last.updated_at.isoformat(), "id": last.id}, stream)
            except BaseException:
                self._topics = None  # rolled back: the database has the truth
                raise
            total.add(result)
        if interrupted is not None:
            raise interrupted
        return complete and done == len(items) and len(items) >= limit and not self.stopping

    def item_key(self, item: Work) -> str:
        return f"{item.kind} {item.id}"

    # ---- provider calls (before the transaction) ------------------------------------------------

    def embed(self, items: list[Work]) -> None:
        """Fill `embedding` for every item with text: from the cache, else in one request."""
        s = self.client.settings
        dims = int(s.dimensions)
        wanted = [i for i in items if i.hash is not None]
        if not wanted:
            return
        hashes = sorted({i.hash for i in wanted if i.hash is not None})
        cached = {
            bytes(h): np.asarray(v.to_numpy(), dtype=np.float32)
            for h, v in self.db.execute(
                _q("cached_embeddings"), {"model": s.embedding_model, "dims": dims, "hashes": hashes}
            )
        }
        fresh: dict[bytes, str] = {}
        for item in wanted:
            assert item.hash is not None
            if item.hash in cached:
                item.meta["embedding"] = "cache"
            elif item.hash in fresh:
                item.meta["embedding"] = "cache"  # a copy of an earlier text in this batch
            else:
                fresh[item.hash] = item.text
                item.meta["embedding"] = "api"
        if fresh:
            cached.update(self._embed_fresh(fresh))
        for item in wanted:
            assert item.hash is not None
            vector = cached.get(item.hash)
            if vector is None:
                item.meta["embedding"] = "refused"
            else:
                item.embedding = vector
                item.meta.update(model=s.embedding_model, dims=dims)

    def _embed_fresh(self, fresh: dict[bytes, str]) -> dict[bytes, np.ndarray]:
        """One request for all new texts; if the provider refuses the batch, one per text to find
        the text it refuses (the others still get their embeddings)."""
        s = self.client.settings
        hashes, texts = list(fresh), list(fresh.values())
        try:
            vectors, usage = self.client.embed(texts)
            self.record_usage(usage)
            got = dict(zip(hashes, vectors, strict=True))
        except Rejected as exc:
            if len(texts) == 1:
                self.record_error(f"embedding refused: {exc}")
                return {}
            got = {}
            for h, text in zip(hashes, texts, strict=True):
                try:
                    one, usage = self.client.embed([text])
                except Rejected as single:
                    self.record_error(f"embedding refused: {single}")
                    continue
                self.record_usage(usage)
                got[h] = one[0]
        rows = [
            {"model": s.embedding_model, "dims": int(s.dimensions), "content_hash": h, "embedding": v, "tokens": None}
            for h, v in got.items()
        ]
        with self.db.cursor() as cur:
            cur.executemany(_q("cache_embedding"), rows)
        return got

    def summarize(self, items: list[Work]) -> tuple[int, UpstreamError | None]:
        """Summaries and sentiment, one chat call per post with new text. Returns how many items
        are done and, if the provider stopped us (429, outage) before the end, why."""
        s = self.client.settings
        hashes = sorted({i.hash for i in items if i.hash is not None})
        known = {
            bytes(h): (summary, sentiment)
            for h, summary, sentiment in self.db.execute(
                _q("reusable_summaries"), {"hashes": hashes, "chat_model": s.chat_model}
            )
        }
        for index, item in enumerate(items):
            if self.stopping:
                return index, None
            if item.hash is None:
                item.meta["summary"] = "skipped: no text"
                continue
            if item.hash in known:
                item.summary, item.sentiment = known[item.hash]
                item.meta.update(summary="reused", chat_model=s.chat_model)
                continue
            try:
                answer = self.client.summarize(item.text)
            except Rejected as exc:
                item.meta["summary"] = f"refused: {exc}"
                self.record_error(f"summary refused: {exc}", self.item_key(item))
                continue
            except UpstreamError as exc:  # RateLimited included: stop here, keep what is done
                return index, exc
            self.record_usage(answer.usage)
            item.summary, item.sentiment = answer.summary, answer.sentiment
            item.meta.update(
                summary="api",
                chat_model=s.chat_model,
                tokens=answer.usage.total_tokens,
                cost_usd=round(answer.usage.cost_usd, 8),
            )
            known[item.hash] = (answer.summary, answer.sentiment)
            self.beat_if_due()
        return len(items), None

    def record_usage(self, usage: Usage) -> None:
        """On the control connection (autocommit): the call was paid for even if the batch fails."""
        self.control.execute(_q("record_usage"), usage.row(self.name))

    # ---- writes (inside the batch transaction, one savepoint per item) ----------------------------

    def _write_post(self, item: Work, tx: psycopg.Connection[Any]) -> int:
        try:
            return self._write_post_results(item, tx)
        except BaseException:
            self._topics = None  # the item's savepoint undoes its topic changes: read them again
            raise

    def _write_post_results(self, item: Work, tx: psycopg.Connection[Any]) -> int:
        s = self.client.settings
        topic_id = None
        if item.embedding is not None:
            if self._topics is None or (self._topics.model, self._topics.dims) != (s.embedding_model, s.dimensions):
                self._topics = Topics(tx, s.embedding_model, int(s.dimensions))
            topic_id = self._topics.assign(tx, item.embedding, self.settings.topic_similarity, self.settings.max_topics)
        tx.execute(
            _q("upsert_post"),
            {
                "post_id": item.id,
                "source_updated_at": item.updated_at,
                "content_hash": item.hash,
                "model": s.embedding_model if item.embedding is not None else None,
                "dims": int(s.dimensions) if item.embedding is not None else None,
                "embedding": item.embedding,
                "summary": item.summary,
                "sentiment": item.sentiment,
                "chat_model": item.meta.get("chat_model"),
                "topic_id": topic_id,
                "meta": Jsonb(item.meta),
            },
        )
        if item.embedding is not None:
            self._recommend(tx, "posts", item)
        return 1

    def _write_profile(self, item: Work, tx: psycopg.Connection[Any]) -> int:
        s = self.client.settings
        tx.execute(
            _q("upsert_profile"),
            {
                "profile_id": item.id,
                "source_updated_at": item.updated_at,
                "content_hash": item.hash,
                "model": s.embedding_model if item.embedding is not None else None,
                "dims": int(s.dimensions) if item.embedding is not None else None,
                "embedding": item.embedding,
                "meta": Jsonb(item.meta),
            },
        )
        if item.embedding is not None:
            self._recommend(tx, "profiles", item)
        return 1

    def _recommend(self, tx: psycopg.Connection[Any], stream: str, item: Work) -> None:
        """The item's nearest neighbours (HNSW on `<=>`), replacing its previous list; the item is
        also offered to each neighbour's list, which keeps its best `recommendations`."""
        limit = self.settings.recommendations
        if limit <= 0:
            return
        kind = stream[:-1]
        neighbours = tx.execute(
            _q_dims(f"similar_{stream}", int(self.client.settings.dimensions)),
            {
                "embedding": item.embedding,
                "id": item.id,
                "content_hash": item.hash,
                "limit": limit,
                "min_similarity": self.settings.recommendation_min_similarity,
            },
        ).fetchall()
        tx.execute(_q(f"clear_similar_{stream}"), (item.id,))
        if not neighbours:
            return
        with tx.cursor() as cur:
            cur.executemany(
                _q(f"add_similar_{kind}"),
                [(item.id, other, rank, float(sim)) for rank, (other, sim) in enumerate(neighbours, 1)],
            )
        ids = [other for other, _ in neighbours]
        tx.execute(
            _q(f"offer_similar_{stream}"),
            {"id": item.id, "ids": ids, "similarities": [float(sim) for _, sim in neighbours]},
        )
        tx.execute(_q(f"rank_similar_{stream}"), {"ids": ids, "limit": limit})
