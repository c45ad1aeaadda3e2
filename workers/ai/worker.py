"""The ai worker: embeddings, summaries, sentiment, topics and recommendations for posts and profiles.

Each cycle takes posts and profiles changed since its cursors (`updated_at`, `id`), in batches of
`batch_size` (default 400), alternating the two streams, until both are drained or `max_cycle_s`
has passed. For one batch:

1. embeddings: texts already embedded by the same model and size come from `ai_embedding_cache`
   (content hash), the rest go out in requests of `embedding_batch` texts, `concurrency` requests
   in flight at once (workers/ai/calls.py), paced to `requests_per_minute`; new vectors are cached
   at once (one statement), outside the batch transaction, because they were paid for whatever
   happens next;
2. posts only: a summary and a sentiment label per post from a chat completion, as many in flight,
   unless identical text was summarised before (`ai_summary_cache`, filled the same way);
3. one transaction writes the batch set-based: its results are COPYed into a staging table and
   upserted in one statement (`ai_posts` / `ai_profiles`), each post is assigned to its nearest
   topic in memory (a new topic when none is within `topic_similarity`; workers/ai/topics.py) and
   the touched topics are saved in one statement, and the cursor moves past the items done. Posts are stored outside the
   HNSW index; profiles (few) get their nearest neighbours at once, from one statement of lateral
   `<=>` lookups on the HNSW index (`ai_similar_profiles`). If a set-based statement fails for
   some row, the batch is written item by item (one savepoint each) and the bad items are logged
   and skipped;
4. after the provider streams, the `vectors` stream takes the stored posts into the HNSW index
   (`vector_batch` per transaction) and computes their recommendations the same way
   (`ai_similar_posts`). An HNSW insert costs milliseconds per row (migration 0018), more than
   the rest of a batch's write together, so the provider calls no longer wait on it; semantic
   search covers the posts not indexed yet with an exact scan.

The provider calls happen before the transaction, so no transaction waits on the network, and the
waiting thread heartbeats. They happen ahead, too: while one batch is written, the next
`prefetch_batches` (2) are read and sent on two prefetch threads (workers/ai/ahead.py), each read
as soon as the one before it is read, its requests queued behind that one's, so the provider
always has the next requests; a text two overlapping batches want is bought once
(workers/ai/inflight.py). The usage records and new vectors of a batch are written by the keeper
thread while the next batch's calls go out, and awaited before the batch commits. Every call is
recorded in `ai_usage` with its tokens and cost (`*_price_per_1k` settings). A 429 ends the cycle
with `RateLimited` (the base waits out the provider's retry-after) after committing the items
finished before it (answers that arrived for later items are cached, not paid twice); an item the
provider refuses (400) is stored without that result and logged; a stop request ends the batch
before the first text it kept from being sent. No base URL or key, or no pgvector on the server,
is reported as lastError and waited out.

With `replicas: N` each batch is claimed from a queue instead of read after a cursor
(workers/claims.py, `_claimed_batch`): the same calls and writes, the claims completed in the
batch's transaction; the replicas write topics one at a time (an advisory lock), each reading the
centroids afresh, since they are no longer the topics' only writer. No prefetching then: the
replicas are the parallelism.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
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
from workers.ai.ahead import Ahead, Publish, await_beating
from workers.ai.calls import CallPool, Outcome
from workers.ai.client import AiClient, AiSettings, Rejected, Summary, Usage, content_hash
from workers.ai.inflight import Answer, Inflight
from workers.ai.topics import Topics
from workers.backlog import rows_waiting
from workers.base import CycleResult, Worker, describe
from workers.claims import Claim, Claims, ClaimSettings
from workers.errors import BudgetSpent, NotConfigured, UpstreamError, WorkerError
from workers.pacing import Pacer

START = {"updated_at": "-infinity", "id": 0}


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


@dataclass
class Prepared:
    """A batch read after a cursor value, with its provider calls made: `done` items (a prefix)
    finished, and why the rest was not (a 429, an outage), if it was not."""

    after: dict[str, Any]
    items: list[Work]
    limit: int
    done: int
    interrupted: UpstreamError | None = None
    # the bookkeeping of its calls (usage records, new vectors into the cache) by the keeper thread
    settled: Future[None] | None = None

    def next_after(self) -> dict[str, Any] | None:
        """Where the next batch starts, if one may be waiting: this one was full, and all done."""
        if self.interrupted is None and self.done == len(self.items) >= self.limit > 0:
            return _cursor_value(self.items[-1])
        return None


class _Interrupted(Exception):
    """A stop request interrupted a claimed batch written item by item: roll it back, give it back."""


def _cursor_value(item: Work) -> dict[str, Any]:
    return {"updated_at": item.updated_at.isoformat(), "id": item.id}


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


class AiWorkerSettings(ClaimSettings):
    """The worker's settings; the client's part (URL, models, prices) is checked again by `AiSettings`."""

    interval_ms: int = Field(default=30000, gt=0)
    # items per batch (one transaction): concurrency x embedding_batch, so a batch's embeddings
    # requests fill every slot (at 200, two of the four were idle)
    batch_size: int = Field(default=400, gt=0)
    # posts taken into the HNSW index per transaction; an insert costs milliseconds, and the
    # heartbeat waits for the transaction: 200 keeps it to seconds even on a loaded machine
    vector_batch: int = Field(default=200, gt=0)
    embedding_batch: int = Field(default=100, gt=0, le=2048)  # texts per embeddings request
    # batches read and sent to the provider ahead of the one being written (workers/ai/ahead.py);
    # at 1 the provider idled whenever a write outlasted the next batch's calls
    prefetch_batches: int = Field(default=2, ge=0, le=8)
    concurrency: int = Field(default=4, gt=0, le=64)  # provider requests in flight at once
    requests_per_minute: float = Field(default=0, ge=0)  # the provider's request limit (0: none)
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
        # two threads: the next batch is read and its requests queued while this one's are answered
        self._ahead: Ahead[Prepared] = Ahead(self._prepare_ahead, lambda: self.stopping, threads=2)
        self._prefetch_local = threading.local()
        self._prefetch_lock = threading.Lock()
        self._prefetch_conns: list[psycopg.Connection[Any]] = []
        self._inflight = Inflight()  # texts being embedded, so that overlapping batches buy each once
        self._summarizing = threading.Lock()
        # the bookkeeping of batches prepared ahead, off the provider's path (see `embed`)
        self._keeper = ThreadPoolExecutor(1, thread_name_prefix="ai-keeper")
        self._keeper_conn: psycopg.Connection[Any] | None = None
        self.claims = Claims(self, ("posts", "profiles"))  # with `replicas: N` (workers/claims.py)

    # ---- set-up ---------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        conn = super()._connect()
        if self._vector_ready:
            self._vector_session(conn)
        return conn

    @staticmethod
    def _vector_session(conn: psycopg.Connection[Any]) -> None:
        """A new connection (autocommit, in no transaction) set up for vectors: pgvector's types, and
        the session's staging table `ai_batch`, created here once rather than in every batch's
        transaction (a round trip each, which a rollback would also undo)."""
        register_vector(conn)
        conn.execute(_q("create_batch_table"))

    def validate(self) -> None:
        settings = AiSettings.from_config(self.settings.model_dump())
        self.ai = self.cached_client("ai", settings, lambda: AiClient(settings))
        self._ensure_schema(int(settings.dimensions))
        budget = self.settings.max_cost_per_day_usd
        if budget is not None:
            with self._control_lock:
                spent = float((self.control.execute(_q("spent_last_day")).fetchone() or (0.0,))[0])
            if spent >= budget:
                raise BudgetSpent(
                    f"${spent:.4f} of ${budget:.4f} in the last 24 h; raise workers.{self.name}.max_cost_per_day_usd "
                    f"or the settings row {self.name}_max_cost_per_day_usd"
                )

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
            self._vector_session(self.db)
        if dims not in self._indexed_dims:
            self.db.execute(_q("ensure_vector_index"), (dims,))
            self._indexed_dims.add(dims)

    @property
    def client(self) -> AiClient:
        if self.ai is None:
            self.validate()
        assert self.ai is not None
        return self.ai

    @property
    def calls(self) -> CallPool:
        """The thread pool provider calls go through, rebuilt when its settings change."""
        s = self.settings
        key = (s.concurrency, s.requests_per_minute)
        return self.cached_client(
            "calls", key, lambda: CallPool(s.concurrency, Pacer(s.requests_per_minute)), CallPool.close
        )

    @property
    def _wait_s(self) -> float:
        """How long a wait (for provider calls, a prepared batch, the keeper) lasts between heartbeats."""
        return max(0.05, min(self.heartbeat_interval_s, 1.0))

    def _call_all(self, call: Any, args: list[Any]) -> Outcome[Any]:
        return self.calls.run(call, args, on_wait=self.beat_if_due, stopping=lambda: self.stopping, wait_s=self._wait_s)

    # ---- the cycle ------------------------------------------------------------------------------

    def run_cycle(self) -> CycleResult:
        """Alternate post and profile batches until both are drained or `max_cycle_s` is up."""
        self.client  # noqa: B018 - validates (settings, schema) when run without the loop, as in tests
        self.db.execute(_q("forget_deleted_posts"))  # removals of the last cycle leave the recommendations
        started = time.monotonic()
        streams = {"posts": self.posts_batch, "profiles": self.profiles_batch}
        result = self.drain_streams(streams, self.settings.max_cycle_s)
        # Off the hot path: posts stored since join the HNSW index with the rest of the cycle's
        # time (at least one batch, so the index moves even while a backlog keeps the streams busy).
        left = max(0.0, self.settings.max_cycle_s - (time.monotonic() - started))
        indexing = self.drain_streams({"vectors": self.vectors_batch}, left)
        result.more_pending = result.more_pending or indexing.more_pending
        if self.claims.active:
            self.claims.end_cycle(result)
        self.report_lag(self.claims.rows_waiting() if self.claims.active else rows_waiting(self), "rows")
        return result

    def posts_batch(self, total: CycleResult) -> bool:
        """One batch of posts; returns whether more may be waiting."""
        return self._batch("posts", total)

    def profiles_batch(self, total: CycleResult) -> bool:
        """One batch of profiles; returns whether more may be waiting."""
        return self._batch("profiles", total)

    def vectors_batch(self, total: CycleResult) -> bool:
        """The oldest `vector_batch` posts stored outside the HNSW index join it (flipping
        `vector_indexed`, which its predicate holds), and their recommendations are computed, in
        one transaction; returns whether more may be waiting. Inserting into pgvector's HNSW graph
        costs milliseconds per row (migration 0018), so it happens here, after the provider
        streams, instead of inside every batch's write. Adds nothing to `total`: the posts were
        counted when stored."""
        dims = int(self.client.settings.dimensions)
        limit = self.settings.vector_batch
        with self.transaction() as tx:  # ai_batch is empty: ON COMMIT DELETE ROWS, and a rollback undoes rows
            taken = tx.execute(_q("index_posts_vectors"), {"dims": dims, "limit": limit}).rowcount
            if taken > 0:
                self._recommend(tx, "posts", dims)
        return taken >= limit and not self.stopping

    def _read(self, stream: str, after: dict[str, Any], conn: psycopg.Connection[Any]) -> list[Work]:
        """The next `batch_size` items of a stream after a cursor value."""
        rows = conn.execute(
            _q(f"changed_{stream}"),
            {"after_updated_at": after["updated_at"], "after_id": after["id"], "limit": self.settings.batch_size},
        ).fetchall()
        return self._works(stream, rows)

    def _works(self, stream: str, rows: list[Any]) -> list[Work]:
        """Rows of `changed_<stream>` (or `claimed_<stream>`) as items with their text."""
        cap = self.settings.max_input_chars
        if stream == "posts":
            return [Work("post", r[0], r[1], post_text(r[2], r[3])[:cap]) for r in rows]
        return [Work("profile", r[0], r[1], profile_text(r[2], r[3], r[4])[:cap]) for r in rows]

    def _prepare(
        self, stream: str, after: dict[str, Any], conn: psycopg.Connection[Any], publish: Publish | None = None
    ) -> Prepared:
        """Read a batch and make its provider calls (no transaction): everything but the writes.
        `publish` is told where the next batch starts as soon as this one is read."""
        items = self._read(stream, after, conn)
        if publish is not None:
            publish(_cursor_value(items[-1]) if items and len(items) >= self.settings.batch_size else None)
        return self._call(stream, items, after, conn)

    def _call(self, stream: str, items: list[Work], after: dict[str, Any], conn: psycopg.Connection[Any]) -> Prepared:
        """The provider calls of a batch read (by cursor or by claim)."""
        prepared = Prepared(after, items, self.settings.batch_size, len(items))
        if items:
            if self.flag("embeddings"):
                prepared.settled, prepared.done = self.embed(items, conn)
            if stream == "posts" and self.settings.summaries and self.flag("summaries"):
                # one batch's chat calls at a time: its answers are cached before the next looks
                with self._summarizing:
                    prepared.done, prepared.interrupted = self.summarize(items[: prepared.done], conn)
        return prepared

    def _batch(self, stream: str, total: CycleResult) -> bool:
        if self.claims.active:
            return self._claimed_batch(stream, total)
        after = self.load_cursor(stream) or START
        wait_s = self._wait_s
        depth = self.settings.prefetch_batches
        prepared = self._ahead.take(stream, after, self.beat_if_due, wait_s)
        if prepared is None and depth > 0:  # the first batch too: the one after it is read and sent meanwhile
            self._ahead.extend(stream, after, depth)
            prepared = self._ahead.take(stream, after, self.beat_if_due, wait_s)
        prepared = prepared or self._prepare(stream, after, self.db)
        items, done = prepared.items, prepared.done
        if not items:
            return False
        finished = items[:done]
        following = prepared.next_after()
        more = following is not None
        if following is not None and not self.stopping:
            # the next batches' provider calls run while this one is written
            self._ahead.extend(stream, following, depth)
        complete = True
        if finished:
            try:
                with self.transaction() as tx:
                    result, complete = self.write(tx, stream, finished)
                    if stream == "posts" and self._topics is not None:
                        self._topics.save(tx)
                    if complete:
                        self.save_cursor(tx, _cursor_value(finished[-1]), stream)
                    self._settle_before_commit(prepared, wait_s)
            except BaseException:
                self._topics = None  # rolled back: the database has the truth
                raise
            total.add(result)
        self._settle_before_commit(prepared, wait_s)
        if prepared.interrupted is not None:
            raise prepared.interrupted
        return complete and more and not self.stopping

    # ---- replicas: the batch is claimed instead (workers/claims.py) ----------------------------------

    def _changed(self, stream: str, conn: psycopg.Connection[Any], after: dict[str, Any], limit: int) -> list[Any]:
        """(id, updated_at) of the rows changed after a feed's cursor: what joins the queue."""
        rows = conn.execute(
            _q(f"changed_{stream}"), {"after_updated_at": after["updated_at"], "after_id": after["id"], "limit": limit}
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def _claimed_batch(self, stream: str, total: CycleResult) -> bool:
        """One claimed batch: the provider calls as for a cursor batch, then the results and the
        claims' completion in one transaction. Only the claims still ours are written; whatever
        was not finished (a 429, a stop, a failure) goes back to the queue."""
        queue, claims = self.claims.take(
            stream, self.settings.batch_size, lambda conn, after, limit: self._changed(stream, conn, after, limit)
        )
        if not claims:
            return False
        claimed = {c.item_id: c for c in claims}
        items = self._works(stream, self.db.execute(_q(f"claimed_{stream}"), (list(claimed),)).fetchall())
        gone = [c for c in claims if c.item_id not in {i.id for i in items}]  # deleted since: nothing to do
        result, unfinished = CycleResult(), claims
        try:
            prepared = self._call(stream, items, {}, self.db)
            finished = items[: prepared.done]
            with self.transaction() as tx:
                held = queue.complete(tx, [claimed[i.id] for i in finished] + gone)
                finished = [item for item in finished if item.id in held]
                if finished:
                    tx.execute(_q("lock_topics"))  # replicas move topics one at a time, from fresh centroids
                    self._topics = None
                    result, complete = self.write(tx, stream, finished)
                    if not complete:
                        raise _Interrupted
                    if stream == "posts" and self._topics is not None:
                        self._topics.save(tx)
                self._settle_before_commit(prepared, self._wait_s)
            unfinished = [claimed[item.id] for item in items[prepared.done :]]
        except BaseException as exc:
            self._topics = None  # rolled back: the database has the truth
            self._give_back(queue, unfinished, exc)
            if isinstance(exc, _Interrupted):
                return False
            raise
        self._give_back(queue, unfinished, prepared.interrupted)
        total.add(result)
        if prepared.interrupted is not None:
            raise prepared.interrupted
        return not self.stopping

    def _give_back(self, queue: Any, claims: list[Claim], why: BaseException | None) -> None:
        """Unfinished claims back to the queue; the attempt counts only when the items may be to
        blame (not for a stop, a rate limit or an outage)."""
        if not claims:
            return
        blameless = why is None or isinstance(why, _Interrupted | WorkerError | psycopg.OperationalError)
        with contextlib.suppress(psycopg.Error):
            queue.release(self.db, claims, None if why is None else describe(why), charge=not blameless)

    # ---- the next batch, prepared while this one is written ---------------------------------------

    @property
    def prefetch_db(self) -> psycopg.Connection[Any]:
        """The calling prefetch thread's own connection (never in a transaction)."""
        conn: psycopg.Connection[Any] | None = getattr(self._prefetch_local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._prefetch_local.conn = self._connect()
            with self._prefetch_lock:
                self._prefetch_conns.append(conn)
        return conn

    def _settle_before_commit(self, prepared: Prepared, wait_s: float) -> None:
        """Wait for the keeper to have recorded and cached the batch's calls (it has, as a rule,
        by the end of the write) and raise what it met: the batch is then rolled back and read
        again, as when its calls' bookkeeping failed before the keeper did it."""
        if prepared.settled is not None:
            await_beating(prepared.settled, self.beat_if_due, wait_s)
            prepared.settled.result()

    def _prepare_ahead(self, stream: str, after: dict[str, Any], publish: Publish) -> Prepared:
        """`_prepare` on the prefetch thread's own connection."""
        return self._prepare(stream, after, self.prefetch_db, publish)

    @property
    def keeper_db(self) -> psycopg.Connection[Any]:
        """The keeper thread's connection: new vectors into the cache (autocommit)."""
        if self._keeper_conn is None or self._keeper_conn.closed or self._keeper_conn.broken:
            self._keeper_conn = self._connect()
        return self._keeper_conn

    def close(self) -> None:
        self._ahead.close()
        self._keeper.shutdown(wait=True)  # what was paid for is cached before the worker exits
        for conn in [*self._prefetch_conns, self._keeper_conn]:
            if conn is not None:
                conn.close()

    def item_key(self, item: Work) -> str:
        return f"{item.kind} {item.id}"

    # ---- provider calls (before the transaction) ------------------------------------------------

    def embed(self, items: list[Work], conn: psycopg.Connection[Any]) -> tuple[Future[None] | None, int]:
        """Fill `embedding` for every item with text: from the cache, else in requests of
        `embedding_batch` texts, `concurrency` at a time. New vectors are cached at once, by the
        keeper thread (the future returned) while the next batch's calls go out. A text another
        batch is buying at the same moment is waited for, not bought (workers/ai/inflight.py).
        Returns that future and how many items (a prefix) are done: all, unless a stop request
        kept some texts from being sent (the items from the first of them on wait for the next run)."""
        s = self.client.settings
        dims = int(s.dimensions)
        wanted = [i for i in items if i.hash is not None]
        if not wanted:
            return None, len(items)
        texts = {i.hash: i.text for i in wanted if i.hash is not None}
        with self._inflight.looking_up() as claim:
            cached = {
                bytes(h): np.asarray(v.to_numpy(), dtype=np.float32)
                for h, v in conn.execute(
                    _q("cached_embeddings"), {"model": s.embedding_model, "dims": dims, "hashes": sorted(texts)}
                )
            }
            mine, theirs = claim(h for h in texts if h not in cached)
        buying = set(mine)
        for item in wanted:  # else paid for before, or a copy of an earlier text of this batch or another's
            item.meta["embedding"] = "api" if item.hash in buying else "cache"
            buying.discard(item.hash)  # type: ignore[arg-type]
        settled: Future[None] | None = None
        refused: set[bytes] = set()
        if mine:
            got, refused, settled = self._embed_fresh({h: texts[h] for h in mine}, conn)
            cached.update(got)
        for h, future in theirs.items():
            answer = future.result().answer(h)  # the other batch's call (raises its failure: a 429 say)
            if answer.vector is not None:
                cached[h] = answer.vector
            elif answer.refused is not None:
                refused.add(h)
        for index, item in enumerate(items):
            if item.hash is None:
                continue
            vector = cached.get(item.hash)
            if vector is not None:
                item.embedding = vector
                item.meta.update(model=s.embedding_model, dims=dims)
            elif item.hash in refused:
                item.meta["embedding"] = "refused"
            else:  # not sent: a stop request came first; the batch ends before this item
                return settled, index
        return settled, len(items)

    def _embed_fresh(
        self, fresh: dict[bytes, str], conn: psycopg.Connection[Any]
    ) -> tuple[dict[bytes, np.ndarray], set[bytes], Future[None] | None]:
        """The texts this batch claimed, in requests of `embedding_batch`; what was paid for is
        recorded and cached (by the keeper: the future returned) even when a later request
        fails (that failure is then raised, after the bookkeeping). Returns the vectors, the
        texts the provider refused (by hash) and that future; a text in neither was not sent
        (a stop request came first)."""
        size = self.settings.embedding_batch
        pairs = list(fresh.items())
        try:
            outcome = self._call_all(self._embed_request, [pairs[i : i + size] for i in range(0, len(pairs), size)])
        except BaseException as exc:
            self._inflight.settle(fresh, {}, exc)
            raise
        got: dict[bytes, np.ndarray] = {}
        usages: list[Usage] = []
        refused: dict[bytes, str] = {}
        for vectors, used, messages in outcome.paid:
            got.update(vectors)
            usages += used
            refused.update(messages)
        answers = {h: Answer(vector=v) for h, v in got.items()} | {h: Answer(refused=m) for h, m in refused.items()}
        self._inflight.settle(fresh, answers, outcome.error)  # first: other batches may be waiting
        for message in refused.values():
            self.record_error(f"embedding refused: {message}")
        if outcome.error is None:
            return got, set(refused), self._keeper.submit(self._settle, usages, got, None)
        self._settle(usages, got, conn)
        raise outcome.error

    def _settle(self, usages: list[Usage], got: dict[bytes, np.ndarray], conn: psycopg.Connection[Any] | None) -> None:
        """Record paid calls and cache their new vectors (on `conn`, else the keeper's
        connection); then their claims are released, the cache table answering for them."""
        try:
            self.record_usage(*usages)
            if got:
                s = self.client.settings
                (conn or self.keeper_db).execute(
                    _q("cache_embeddings"),
                    {
                        "model": s.embedding_model,
                        "dims": int(s.dimensions),
                        "hashes": list(got),
                        "vectors": list(got.values()),
                    },
                )
        finally:
            self._inflight.release(got)

    def _embed_request(
        self, pairs: list[tuple[bytes, str]]
    ) -> tuple[dict[bytes, np.ndarray], list[Usage], dict[bytes, str]]:
        """One request (in a pool thread); if the provider refuses it, one per text to find the
        text it refuses (the others still get their embeddings). Returns the vectors, the usage
        of each call, and the refused texts' hashes with the provider's message."""
        hashes, texts = [h for h, _ in pairs], [t for _, t in pairs]
        try:
            vectors, usage = self.client.embed(texts)
            return dict(zip(hashes, vectors, strict=True)), [usage], {}
        except Rejected as exc:
            if len(texts) == 1:
                return {}, [], {hashes[0]: str(exc)}
        got: dict[bytes, np.ndarray] = {}
        usages: list[Usage] = []
        refused: dict[bytes, str] = {}
        for h, text in pairs:
            try:
                one, usage = self.client.embed([text])
            except Rejected as single:
                refused[h] = str(single)
                continue
            usages.append(usage)
            got[h] = one[0]
        return got, usages, refused

    def summarize(self, items: list[Work], conn: psycopg.Connection[Any]) -> tuple[int, UpstreamError | None]:
        """Summaries and sentiment, one chat call per new text, `concurrency` at a time. Returns
        how many items (a prefix) are done and, if the provider stopped us (429, outage) before
        the end, why. Answers that arrived after the failure are cached for the next attempt."""
        s = self.client.settings
        hashes = sorted({i.hash for i in items if i.hash is not None})
        known: dict[bytes, tuple[str | None, str | None]] = {
            bytes(h): (summary, sentiment)
            for h, summary, sentiment in conn.execute(
                _q("reusable_summaries"), {"hashes": hashes, "chat_model": s.chat_model}
            )
        }
        asked: dict[bytes, str] = {}
        for item in items:
            if item.hash is not None and item.hash not in known and item.hash not in asked:
                asked[item.hash] = item.text
        outcome = self._call_all(self._summarize_one, list(asked.items()))
        answered: dict[bytes, Summary | str] = dict(outcome.paid)
        paid = {h: a for h, a in answered.items() if isinstance(a, Summary)}
        self.record_usage(*(a.usage for a in paid.values()))
        if paid:
            with self._control_lock:  # the prefetch thread's calls land here too
                self.control.execute(
                    _q("cache_summaries"),
                    {
                        "chat_model": s.chat_model,
                        "hashes": list(paid),
                        "summaries": [a.summary for a in paid.values()],
                        "sentiments": [a.sentiment for a in paid.values()],
                    },
                )
        settled = {h for h, _ in outcome.done}  # asked and answered, in order, before any failure
        for index, item in enumerate(items):
            if item.hash is None:
                item.meta["summary"] = "skipped: no text"
            elif item.hash in known:
                item.summary, item.sentiment = known[item.hash]
                item.meta.update(summary="reused", chat_model=s.chat_model)
            elif item.hash not in settled:
                return index, outcome.error  # failed, or not asked because of SIGTERM or a failure
            elif isinstance(answer := answered[item.hash], str):
                item.meta["summary"] = f"refused: {answer}"
                self.record_error(f"summary refused: {answer}", self.item_key(item))
            else:
                item.summary, item.sentiment = answer.summary, answer.sentiment
                item.meta.update(
                    summary="api",
                    chat_model=s.chat_model,
                    tokens=answer.usage.total_tokens,
                    cost_usd=round(answer.usage.cost_usd, 8),
                )
                known[item.hash] = (answer.summary, answer.sentiment)
        return len(items), outcome.error

    def _summarize_one(self, pair: tuple[bytes, str]) -> tuple[bytes, Summary | str]:
        """One chat call (in a pool thread): the answer, or the provider's refusal message."""
        h, text = pair
        try:
            return h, self.client.summarize(text)
        except Rejected as exc:
            return h, str(exc)

    def record_usage(self, *usages: Usage) -> None:
        """On the control connection (autocommit): the calls were paid for even if the batch fails."""
        if usages:
            with self._control_lock, self.control.cursor() as cur:  # also from the prefetch thread
                cur.executemany(_q("record_usage"), [u.row(self.name) for u in usages])

    # ---- writes (inside the batch transaction) ----------------------------------------------------

    def write(self, tx: psycopg.Connection[Any], stream: str, items: list[Work]) -> tuple[CycleResult, bool]:
        """The batch's results in a few set-based statements; if one fails for some row, item
        by item (one savepoint each), logging and skipping the bad ones."""
        try:
            with tx.transaction():  # a savepoint: the whole batch in one go, the fast path
                self._write_set(tx, stream, items)
            return CycleResult(items=len(items)), True
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except psycopg.Error:
            self._topics = None  # the savepoint undid the batch's new topics: read them again
        result, complete = self.run_items(items, tx, lambda item, tx: self._write_one(tx, stream, item))
        return result, complete

    def _write_one(self, tx: psycopg.Connection[Any], stream: str, item: Work) -> int:
        try:
            tx.execute(_q("clear_batch"))  # the items written before this one, in this transaction
            self._write_set(tx, stream, [item])
        except BaseException:
            self._topics = None  # the item's savepoint undoes its topic changes: read them again
            raise
        return 1

    def _write_set(self, tx: psycopg.Connection[Any], stream: str, items: list[Work]) -> None:
        """Stage the items (binary COPY into the session's `ai_batch`, empty at this point), upsert
        them in one statement, then their recommendations."""
        s = self.client.settings
        dims = int(s.dimensions)
        topic_ids: list[int | None] = [None] * len(items)
        if stream == "posts":
            topic_ids = self._assign_topics(tx, items)
        with tx.cursor() as cur, cur.copy(_q("copy_batch")) as copy:  # into ai_batch, empty (see `_write_one`)
            copy.set_types(["int8", "timestamptz", "bytea", "vector", "text", "text", "text", "int4", "jsonb"])
            for item, topic_id in zip(items, topic_ids, strict=True):
                copy.write_row(
                    (
                        item.id,
                        item.updated_at,
                        item.hash,
                        item.embedding,
                        item.summary,
                        item.sentiment,
                        item.meta.get("chat_model"),
                        topic_id,
                        Jsonb(item.meta),
                    )
                )
        tx.execute(_q(f"upsert_{stream}"), {"model": s.embedding_model, "dims": dims})
        # posts get theirs when they join the HNSW index (vectors_batch); profiles are few
        if stream == "profiles" and any(item.embedding is not None for item in items):
            self._recommend(tx, stream, dims)

    def _assign_topics(self, tx: psycopg.Connection[Any], items: list[Work]) -> list[int | None]:
        """Each item's topic (None without an embedding), the batch assigned in memory."""
        if all(item.embedding is None for item in items):
            return [None] * len(items)
        s = self.client.settings
        if self._topics is None or (self._topics.model, self._topics.dims) != (s.embedding_model, s.dimensions):
            self._topics = Topics(tx, s.embedding_model, int(s.dimensions))
        return self._topics.assign(
            tx, [item.embedding for item in items], self.settings.topic_similarity, self.settings.max_topics
        )

    def _recommend(self, tx: psycopg.Connection[Any], stream: str, dims: int) -> None:
        """The staged items' nearest neighbours (HNSW on `<=>`, one lateral lookup per item in one
        statement), replacing their previous lists; each item is also offered to each neighbour's
        list, which keeps its best `recommendations`."""
        limit = self.settings.recommendations
        if limit <= 0:
            return
        neighbours = tx.execute(
            _q_dims(f"similar_{stream}", dims),
            {"limit": limit, "min_similarity": self.settings.recommendation_min_similarity},
        ).fetchall()
        tx.execute(_q(f"clear_similar_{stream}"))
        ranks: list[int] = []
        for index, (item_id, _, _) in enumerate(neighbours):
            ranks.append(ranks[-1] + 1 if index and neighbours[index - 1][0] == item_id else 1)
        if neighbours:
            tx.execute(
                _q(f"add_similar_{stream}"),
                {
                    "ids": [n[0] for n in neighbours],
                    "others": [n[1] for n in neighbours],
                    "ranks": ranks,
                    "similarities": [float(n[2]) for n in neighbours],
                },
            )
        touched = sorted({n[0] for n in neighbours} | {n[1] for n in neighbours})
        tx.execute(_q(f"rank_similar_{stream}"), {"ids": touched, "limit": limit})
