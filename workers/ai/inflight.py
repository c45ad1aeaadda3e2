"""One embeddings request per new text, however many batches want it at once.

Batches prepared ahead overlap: the next one's requests go out while this one's last are still
being answered, so the provider does not wait between batches. A text in both would be bought
twice if each looked only in the cache table, where a vector lands after its batch's calls. So a
text is claimed before it is sent: under one lock, the cache lookup and the claim of the texts it
missed; a batch wanting a text another batch claimed waits for that batch's answer instead of
buying it. A claim is released once its vector is in the cache table (or, for a refused, unsent
or failed text, at once: nothing was stored, a later batch may ask again), so a lookup made under
the lock finds each text paid for either claimed or cached, never neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

Claim = Callable[[Iterable[bytes]], tuple[list[bytes], dict[bytes, "Future[Settled]"]]]


@dataclass(frozen=True)
class Answer:
    """What became of a claimed text: its vector, or the provider's refusal, or neither (not
    sent: a stop request came first)."""

    vector: np.ndarray | None = None
    refused: str | None = None


@dataclass(frozen=True)
class Settled:
    """What one claim (the texts one batch claimed at once) came to: the answers it got and the
    failure (a 429 say) that kept the others from one."""

    answers: dict[bytes, Answer]
    failure: BaseException | None = None

    def answer(self, text: bytes) -> Answer:
        """The answer for one claimed text; raises the failure when it got none because of it."""
        found = self.answers.get(text)
        if found is not None:
            return found
        if self.failure is not None:
            raise self.failure
        return Answer()


class Inflight:
    """The claims of one worker's batches (its prefetch threads' and its own). The texts one
    lookup claims share one future, answered once: a future per text (and its lock) cost the
    prefetch threads 400 allocations and notifications a batch, under the GIL the writer needs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[bytes, Future[Settled]] = {}

    @contextmanager
    def looking_up(self) -> Iterator[Claim]:
        """Hold the lock for a cache lookup; yields `claim(hashes)`, which splits the texts the
        lookup missed into those now claimed by the caller and those another batch claimed (with
        the future of that batch's claim: `future.result().answer(hash)`)."""

        def claim(hashes: Iterable[bytes]) -> tuple[list[bytes], dict[bytes, Future[Settled]]]:
            mine: list[bytes] = []
            theirs: dict[bytes, Future[Settled]] = {}
            future: Future[Settled] | None = None
            for h in hashes:
                if h in theirs or h in mine:
                    continue
                if h in self._claims:
                    theirs[h] = self._claims[h]
                else:
                    future = future or Future()
                    self._claims[h] = future
                    mine.append(h)
            return mine, theirs

        with self._lock:
            yield claim

    def settle(self, mine: Iterable[bytes], answers: dict[bytes, Answer], failure: BaseException | None) -> None:
        """Answer the caller's claims: from `answers`, else with `failure` (a 429 say) or, when
        there was none, as not sent. Only claims holding a vector stay, until `release`."""
        with self._lock:
            pending = [h for h in mine if h in self._claims and not self._claims[h].done()]
            for future in {self._claims[h] for h in pending}:  # a claim's texts share their future
                future.set_result(Settled(answers, failure))
            for h in pending:
                answer = answers.get(h)
                if answer is None or answer.vector is None:
                    del self._claims[h]

    def release(self, hashes: Iterable[bytes]) -> None:
        """Forget claims whose vectors are in the cache table now (or could not be put there)."""
        with self._lock:
            for h in hashes:
                self._claims.pop(h, None)

    def __len__(self) -> int:
        return len(self._claims)
