"""A search asks where its embedder comes from (for the API: the ai worker's settings, a round trip)
only when it embeds: semantic and hybrid modes, or auto mode when the words matched nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest

from tests.workers.test_search import index, seed
from workers.search.query import Embedder, Search, SearchUnavailable


class Source:
    """A semantic source that counts how often it is asked and has no embedder to give."""

    def __init__(self) -> None:
        self.asked = 0

    async def __call__(self) -> tuple[Embedder, int] | None:
        self.asked += 1
        return None


async def _search(url: str, q: str, source: Any, **kwargs: Any) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await Search(conn, q, semantic_source=source, **kwargs).run()


@pytest.fixture
def indexed(migrated_url: str) -> dict[str, int]:
    ids = seed(migrated_url)
    index(migrated_url)
    return ids


async def test_the_embedder_is_looked_up_only_by_searches_that_embed(
    migrated_url: str, indexed: dict[str, int]
) -> None:
    for q, mode in (("ethereum", "auto"), ("etherium", "auto"), ("ethereum", "text"), ("#solana", "auto")):
        source = Source()
        answer = await _search(migrated_url, q, source, mode=mode)
        assert answer["results"] and source.asked == 0, (q, mode)

    source = Source()  # nothing matched: auto mode would fall back to the nearest by embedding
    nothing = await _search(migrated_url, "zzqqxx", source)
    assert nothing["results"] == [] and source.asked == 1 and "semantic" not in nothing

    source = Source()
    hybrid = await _search(migrated_url, "ethereum", source, mode="hybrid")
    assert hybrid["results"] and source.asked == 1 and hybrid["semantic"].startswith("unavailable")

    source = Source()
    with pytest.raises(SearchUnavailable):
        await _search(migrated_url, "ethereum", source, mode="semantic")
    assert source.asked == 1


async def test_an_embedder_from_the_source_is_used(migrated_url: str, indexed: dict[str, int]) -> None:
    """What the source gives is the embedder the search runs with (here: one that fails, which the
    answer reports, as with an embedder passed in directly)."""
    embedded: list[str] = []

    async def failing(text: str) -> np.ndarray:
        embedded.append(text)
        raise RuntimeError("provider down")

    async def source() -> tuple[Embedder, int]:
        return failing, 8

    answer = await _search(migrated_url, "zzqqxx", source)
    assert embedded == ["zzqqxx"]
    assert answer["results"] == [] and answer["semantic"] == "unavailable: provider down"
