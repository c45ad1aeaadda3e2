"""Batches prepared ahead: the next batches' reads and provider calls run while one is written.

The provider is the ai worker's limit, and it idles whenever no request is waiting on it. With
one batch prepared ahead it idled whenever a batch's write outlasted the next batch's calls, and
between batches: the next one's requests went out only when the last of this one's had come back.
Here up to `depth` batches per stream are queued on `threads` threads. Each is read after the last
item of the one before it as soon as that one is read (its `publish`), and its requests join the
provider calls pool behind the earlier batch's, so calls follow calls (workers/ai/inflight.py
keeps a text wanted by two overlapping batches from being bought twice).

A batch prepared ahead is used only if it starts at the committed cursor: when a write fails or
stops early, or a batch was not finished (a 429), the queue is dropped (after its running jobs
end: they use connections) and the batch is read again; what its calls paid for was cached, so
nothing is paid twice.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

Cursor = dict[str, Any]
Publish = Callable[[Cursor | None], None]


def await_beating(future: Future[Any], on_wait: Callable[[], None], wait_s: float) -> None:
    """Wait until `future` is done, calling `on_wait` every `wait_s` meanwhile (to heartbeat)."""
    while not future.done():
        wait([future], timeout=wait_s)
        on_wait()


class Batch(Protocol):
    """What the queue needs of a prepared batch."""

    @property
    def after(self) -> Cursor:
        """The cursor value it was read after."""
        ...


B = TypeVar("B", bound=Batch)


@dataclass
class _Entry(Generic[B]):
    start: Future[Cursor | None]  # where the batch starts: the `next` of the entry before it
    next: Future[Cursor | None] = field(default_factory=Future)  # where the one after it starts
    result: Future[B | None] = field(default_factory=Future)


class Ahead(Generic[B]):
    """Per stream, a queue of batches being prepared by `prepare(stream, after, publish)`, which
    calls `publish(cursor)` once the batch is read: where the next batch starts, or None when
    none should be read after it (a short batch: the stream is drained)."""

    def __init__(
        self, prepare: Callable[[str, Cursor, Publish], B], stopping: Callable[[], bool], threads: int
    ) -> None:
        self._prepare = prepare
        self._stopping = stopping
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="ai-prefetch")
        self._queues: dict[str, deque[_Entry[B]]] = {}

    def extend(self, stream: str, after: Cursor, depth: int) -> None:
        """Keep `depth` batches of `stream` queued: the first after `after` (unless one is
        queued already, which starts there), each next one after the one before it."""
        queue = self._queues.setdefault(stream, deque())
        while len(queue) < depth:
            if queue:
                entry: _Entry[B] = _Entry(queue[-1].next)
            else:
                entry = _Entry(Future())
                entry.start.set_result(after)
            entry.result = self._pool.submit(self._run, stream, entry)
            queue.append(entry)

    def _run(self, stream: str, entry: _Entry[B]) -> B | None:
        try:
            after = entry.start.result()  # set once the batch before is read (or at once)
            if after is None or self._stopping():
                return None
            return self._prepare(stream, after, lambda cursor: _resolve(entry.next, cursor))
        finally:
            _resolve(entry.next, None)  # never leave the batch after this one waiting

    def take(self, stream: str, after: Cursor, on_wait: Callable[[], None], wait_s: float) -> B | None:
        """The next queued batch if it starts at `after`, waited for (calling `on_wait` every
        `wait_s`, to heartbeat); else None, and the queue is dropped. Its errors (a 429, a bug)
        are raised as if its calls had been made here."""
        queue = self._queues.get(stream)
        if not queue:
            return None
        head = queue.popleft()
        await_beating(head.result, on_wait, wait_s)
        if head.start.result() != after:
            self.drop(stream)  # read after a cursor that was not committed: read again
            return None
        try:
            batch = head.result.result()
        except BaseException:
            self.drop(stream)
            raise
        if batch is None:
            self.drop(stream)
        return batch

    def drop(self, stream: str) -> None:
        """Forget a stream's queue, once its jobs are over (they may be using connections)."""
        queue = self._queues.pop(stream, deque())
        for entry in queue:
            entry.result.cancel()
            _resolve(entry.next, None)  # a job waiting for a cancelled one's read goes on
        wait([entry.result for entry in queue])

    def queued(self, stream: str) -> int:
        return len(self._queues.get(stream, ()))

    def close(self) -> None:
        for stream in list(self._queues):
            self.drop(stream)
        self._pool.shutdown(wait=True, cancel_futures=True)


def _resolve(future: Future[Cursor | None], cursor: Cursor | None) -> None:
    with contextlib.suppress(InvalidStateError):  # resolved already (by the job, or by drop)
        future.set_result(cursor)
