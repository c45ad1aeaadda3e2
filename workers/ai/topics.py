"""Topics of the ai worker: each post joins its nearest topic centroid, or seeds a new topic.

The centroids of one model and size are kept in memory between batches (the worker, or the
replica holding `lock_topics`, is their only writer) and dropped by the worker whenever a
transaction or an item fails, to be read again. A batch is assigned in memory, item after item
(each post moves its topic's running mean, which the next post sees), against one centroid
matrix updated in place: stacking the centroids anew for every post copied the whole matrix per
post (1 ms a post at 200 topics of 256 floats, most of a batch's write). The topics a batch
seeds are inserted together, in one statement, once the batch is assigned.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import psycopg

from sql import query

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


def topic_label(texts: list[str], words: int = 3) -> str | None:
    """A topic's name: the commonest content words of its newest posts, counted once per post."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({w for w in (m.lower() for m in _WORD.findall(text)) if w not in _LABEL_STOPWORDS})
    top = [word for word, _ in counts.most_common(words)]
    return ", ".join(top) if top else None


def _float32(vectors: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Vectors for a `%b::vector[]` parameter: pgvector's binary dumper writes each as bytes. Its
    text dumper (the `%s` choice) formats every float, a Python loop (0.8 ms a vector); even
    `str(list)` took 0.1 s for 200 centroids of 256 floats."""
    return [np.asarray(v, dtype=np.float32) for v in vectors]


def _power_of_two_reached(before: int, after: int) -> bool:
    """Whether a count went from `before` to `after` across a power of two (1, 2, 4, ...), or is new."""
    return before == 0 or after.bit_length() > before.bit_length()


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class Topics:
    """The topic centroids of one model and size. A topic is known by its position (the order
    topics were read or seeded in); its id is None from its seeding until `assign` inserts it."""

    def __init__(self, tx: psycopg.Connection[Any], model: str, dims: int) -> None:
        self.model, self.dims = model, dims
        rows = tx.execute(_q("topics"), {"model": model, "dims": dims}, binary=True).fetchall()
        self.ids: list[int | None] = [int(r[0]) for r in rows]
        self.sizes: list[int] = [max(int(r[2]), 1) for r in rows]
        self._matrix = np.zeros((max(len(rows), 16), dims), dtype=np.float64)
        for position, row in enumerate(rows):
            self._matrix[position] = _unit(np.asarray(row[1].to_numpy(), dtype=np.float64))
        self.touched: set[int] = set()  # positions of the topics this batch moved or seeded
        self.born: dict[int, int] = {}  # touched position -> its size before this batch (0: seeded)

    @property
    def centroids(self) -> np.ndarray:
        """The unit centroids, one row per topic position (a view: valid until the next seed)."""
        return self._matrix[: len(self.ids)]

    def assign(
        self, tx: psycopg.Connection[Any], vectors: Sequence[np.ndarray | None], threshold: float, max_topics: int
    ) -> list[int | None]:
        """The topic id of each vector (None for None), in order; the topics seeded on the way
        are inserted at the end, in one statement."""
        positions = [None if v is None else self._join(v, threshold, max_topics) for v in vectors]
        self._insert_seeded(tx)
        return [None if p is None else self.ids[p] for p in positions]

    def _join(self, vector: np.ndarray, threshold: float, max_topics: int) -> int:
        """The position of the topic one vector joins (moving its running mean), or of the topic
        it seeds. In place, few numpy calls: this runs for every post, on the writing thread."""
        v = vector.astype(np.float64)
        norm = float(np.sqrt(v @ v))  # what np.linalg.norm computes for a vector, without its checks
        if norm > 0:
            v /= norm
        count = len(self.ids)
        best, similarity = -1, -2.0
        if count:
            sims = self._matrix[:count] @ v
            best = int(sims.argmax())
            similarity = float(sims[best])
        if best < 0 or (similarity < threshold and count < max_topics):
            if count == len(self._matrix):
                self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
            self._matrix[count] = v
            self.ids.append(None)
            self.sizes.append(1)
            self.touched.add(count)
            self.born[count] = 0
            return count
        # running mean of the members, kept on the unit sphere
        row = self._matrix[best]
        row *= self.sizes[best]
        row += v
        norm = float(np.sqrt(row @ row))
        if norm > 0:
            row /= norm
        self.born.setdefault(best, self.sizes[best])
        self.sizes[best] += 1
        self.touched.add(best)
        return best

    def _insert_seeded(self, tx: psycopg.Connection[Any]) -> None:
        seeded = [p for p in range(len(self.ids)) if self.ids[p] is None]
        if not seeded:
            return
        rows = tx.execute(
            _q("add_topics"),
            {"model": self.model, "dims": self.dims, "centroids": _float32(self._matrix[p] for p in seeded)},
        ).fetchall()
        for ordinal, topic_id in rows:
            self.ids[seeded[int(ordinal) - 1]] = int(topic_id)

    def save(self, tx: psycopg.Connection[Any]) -> None:
        """Centroids and sizes of the topics this batch touched; labels of those that are new or
        whose size reached a power of two (a label moves slowly: naming every touched topic each
        batch read 50 texts per topic)."""
        if not self.touched:
            return
        by_id = sorted((self._id(p), p) for p in self.touched)
        relabel = [_power_of_two_reached(self.born[p], self.sizes[p]) for _, p in by_id]
        texts: dict[int, list[str]] = {t: [] for (t, _), yes in zip(by_id, relabel, strict=True) if yes}
        if texts:
            for topic_id, text in tx.execute(_q("topic_texts"), (list(texts),)):
                texts[topic_id].append(text)
        tx.execute(
            _q("move_topics"),
            {
                "ids": [t for t, _ in by_id],
                "centroids": _float32(self._matrix[p] for _, p in by_id),
                "relabel": relabel,
                "labels": [topic_label(texts[t]) if t in texts else None for t, _ in by_id],
            },
        )
        self.touched.clear()
        self.born.clear()

    def _id(self, position: int) -> int:
        topic_id = self.ids[position]
        assert topic_id is not None, "a seeded topic is inserted by assign() before it can be saved"
        return topic_id
