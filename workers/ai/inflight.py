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

Claim = Callable[[Iterable[bytes]], tuple[list[bytes], dict[bytes, "Future[Answer]"]]]


@dataclass(frozen=True)
class Answer:
    """What became of a claimed text: its vector, or the provider's refusal, or neither (not
    sent: a stop request came first)."""

    vector: np.ndarray | None = None
    refused: str | None = None


class Inflight:
    """The claims of one worker's batches (its prefetch threads' and its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[bytes, Future[Answer]] = {}

    @contextmanager
    def looking_up(self) -> Iterator[Claim]:
        """Hold the lock for a cache lookup; yields `claim(hashes)`, which splits the texts the
        lookup missed into those now claimed by the caller and those another batch claimed."""

        def claim(hashes: Iterable[bytes]) -> tuple[list[bytes], dict[bytes, Future[Answer]]]:
            mine: list[bytes] = []
            theirs: dict[bytes, Future[Answer]] = {}
            for h in hashes:
                if h in theirs or h in mine:
                    continue
                if h in self._claims:
                    theirs[h] = self._claims[h]
                else:
                    self._claims[h] = Future()
                    mine.append(h)
            return mine, theirs

        with self._lock:
            yield claim

    def settle(self, mine: Iterable[bytes], answers: dict[bytes, Answer], failure: BaseException | None) -> None:
        """Answer the caller's claims: from `answers`, else with `failure` (a 429 say) or, when
        there was none, as not sent. Only claims holding a vector stay, until `release`."""
        with self._lock:
            for h in mine:
                future = self._claims.get(h)
                if future is None or future.done():
                    continue
                answer = answers.get(h)
                if answer is not None:
                    future.set_result(answer)
                elif failure is not None:
                    future.set_exception(failure)
                else:
                    future.set_result(Answer())
                if answer is None or answer.vector is None:
                    del self._claims[h]

    def release(self, hashes: Iterable[bytes]) -> None:
        """Forget claims whose vectors are in the cache table now (or could not be put there)."""
        with self._lock:
            for h in hashes:
                self._claims.pop(h, None)

    def __len__(self) -> int:
        return len(self._claims)
