"""Provider calls of one batch, several in flight at once, answered in the batch's order.

The provider is slow per request and fast per input: a batch goes out as embedding requests of
`embedding_batch` texts and one chat call per new text, up to `concurrency` at a time on a thread
pool, each spaced by the worker's `Pacer` (`requests_per_minute`). The calling thread only waits,
heartbeating between waits (a long call never silences the worker), and on SIGTERM lets the calls
already sent finish and sends no more.

Results come back in submission order. The first call that fails with an `UpstreamError` (a 429
included) ends the run: the calls after it that were already sent still finish, because they are
paid for and their answers are cached by the caller, but only the results before the failure
count as done, so the batch can commit a prefix and move its cursor exactly past it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from workers.errors import UpstreamError
from workers.pacing import Pacer

Arg = TypeVar("Arg")
Result = TypeVar("Result")


@dataclass
class Outcome(Generic[Result]):
    """What came back: `done` results in order up to the first failure, every paid-for result
    (`paid`, including those after the failure), and the failure (None when all went through)."""

    done: list[Result] = field(default_factory=list)
    paid: list[Result] = field(default_factory=list)
    error: UpstreamError | None = None


class CallPool:
    """A thread pool for provider calls, paced and bounded; one per worker, closed with it."""

    def __init__(self, concurrency: int, pacer: Pacer) -> None:
        self.concurrency = max(1, int(concurrency))
        self.pacer = pacer
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="ai-call")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(
        self,
        call: Callable[[Arg], Result],
        args: Sequence[Arg],
        *,
        on_wait: Callable[[], None],
        stopping: Callable[[], bool],
        wait_s: float,
    ) -> Outcome[Result]:
        """`call(arg)` for every arg, `concurrency` at a time; see the module docstring."""
        outcome: Outcome[Result] = Outcome()
        futures: list[Future[Result]] = []
        next_arg = 0
        stopped = False

        def paced(arg: Arg) -> Result:
            self.pacer.wait()
            return call(arg)

        while True:
            stopped = stopped or stopping()
            running = [f for f in futures if not f.done()]
            # keep at most `concurrency` calls queued or running; send no more after SIGTERM or a failure
            while next_arg < len(args) and len(running) < self.concurrency and outcome.error is None and not stopped:
                running.append(self._pool.submit(paced, args[next_arg]))
                futures.append(running[-1])
                next_arg += 1
            self._collect(futures, outcome)
            if not running:
                if next_arg >= len(args) or outcome.error is not None or stopped:
                    break
                continue
            wait(running, timeout=wait_s, return_when=FIRST_COMPLETED)
            on_wait()
        self._collect(futures, outcome, final=True)
        return outcome

    @staticmethod
    def _collect(futures: list[Future[Result]], outcome: Outcome[Result], final: bool = False) -> None:
        """Extend the in-order prefix of results and note the first failure; a bug (any other
        exception) is raised as it is."""
        for index, future in enumerate(futures):
            if not future.done():
                break
            exc = future.exception()
            if exc is None:
                if outcome.error is None and index == len(outcome.done):
                    outcome.done.append(future.result())
            elif isinstance(exc, UpstreamError):
                outcome.error = outcome.error or exc
            else:
                raise exc
        if final:
            outcome.paid = [f.result() for f in futures if f.exception() is None]
