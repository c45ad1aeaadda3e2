"""Batches prepared ahead: the next batches' reads and provider calls run while one is written.

The provider is the ai worker's limit, and it idles whenever no request is waiting on it. With
one batch prepared ahead it idled whenever a batch's write (topics, labels, the upsert) outlasted
the next batch's calls: the batch after that could not start before the write was done. Here up
to `depth` batches per stream are queued on one thread, each read after the last item of the one
before it, so calls follow calls while the worker's own thread writes.

A batch prepared ahead is used only if it starts at the committed cursor: when a write fails or
stops early, the queue is dropped (after its running job ends: it uses the connection) and the
batch is read again; what its calls paid for was cached, so nothing is paid twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Generic, Protocol, TypeVar


def await_beating(future: Future[Any], on_wait: Callable[[], None], wait_s: float) -> None:
    """Wait until `future` is done, calling `on_wait` every `wait_s` meanwhile (to heartbeat)."""
    while not future.done():
        wait([future], timeout=wait_s)
        on_wait()


class Batch(Protocol):
    """What the queue needs of a prepared batch."""

    @property
    def after(self) -> dict[str, Any]:
        """The cursor value it was read after."""
        ...

    def next_after(self) -> dict[str, Any] | None:
        """The cursor value the batch after it starts at, or None when none should be read
        ahead (a short batch: the stream is drained; or its calls were interrupted)."""
        ...


B = TypeVar("B", bound=Batch)


class Ahead(Generic[B]):
    """Per stream, a queue of batches being prepared by `prepare(stream, after, previous)` on one
    thread; `previous` is the batch prepared just before on the same queue (None for the first),
    which the job may use (its results are in memory, its bookkeeping may still be under way)."""

    def __init__(self, prepare: Callable[[str, dict[str, Any], B | None], B], stopping: Callable[[], bool]) -> None:
        self._prepare = prepare
        self._stopping = stopping
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ai-prefetch")
        self._queues: dict[str, deque[Future[B | None]]] = {}

    def extend(self, stream: str, after: dict[str, Any], depth: int) -> None:
        """Keep `depth` batches of `stream` queued: the first after `after` (unless one is
        queued already, which starts there), each next one after the one before it."""
        queue = self._queues.setdefault(stream, deque())
        if not queue and depth > 0:
            queue.append(self._pool.submit(self._prepare, stream, after, None))
        while 0 < len(queue) < depth:
            queue.append(self._pool.submit(self._prepare_next, stream, queue[-1]))

    def _prepare_next(self, stream: str, before: Future[B | None]) -> B | None:
        previous = before.result()  # finished: the one thread runs the jobs in order
        after = None if previous is None or self._stopping() else previous.next_after()
        return None if previous is None or after is None else self._prepare(stream, after, previous)

    def take(self, stream: str, after: dict[str, Any], on_wait: Callable[[], None], wait_s: float) -> B | None:
        """The next queued batch if it starts at `after`, waited for (calling `on_wait` every
        `wait_s`, to heartbeat); else None, and the queue is dropped. Its errors (a 429, a bug)
        are raised as if its calls had been made here."""
        queue = self._queues.get(stream)
        if not queue:
            return None
        head = queue.popleft()
        await_beating(head, on_wait, wait_s)
        try:
            batch = head.result()
        except BaseException:
            self.drop(stream)
            raise
        if batch is None or batch.after != after:
            self.drop(stream)  # read after a cursor that was not committed: read again
            return None
        return batch

    def drop(self, stream: str) -> None:
        """Forget a stream's queue, once its jobs are over (they may be using the connection)."""
        queue = self._queues.pop(stream, deque())
        for future in queue:
            future.cancel()
        wait(queue)

    def queued(self, stream: str) -> int:
        return len(self._queues.get(stream, ()))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
