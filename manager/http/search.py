"""GET /api/search: ranked posts or profiles with highlights, fuzzy on typos, by tag, and by meaning.

Searching itself is workers/search_query.py over the search worker's indexes. Semantic search
embeds the query with the ai worker's provider settings (its config, live `ai_*` settings rows, the
key from the environment), reusing the embedding cache so a repeated query costs nothing; with no
provider configured it is skipped (mode=semantic answers 409: this manager cannot serve it as configured). Results are user content, not
operational status, so the endpoint needs a token (admin or viewer), unlike /api/workers/status.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from psycopg import AsyncConnection

from manager.http.deps import ErrorBody, Services, ServicesDep, Viewer
from manager.worker_env import worker_environment
from sql import queries_from, query

if TYPE_CHECKING:
    import numpy as np

    from workers.ai.client import AiSettings

# workers.ai, workers.ai.client (openai, numpy) and workers.search.query are imported on the first
# search, not at boot: openai alone would add half a second to every manager start. They are
# imported in a thread, never on the event loop: on a loaded host the import takes seconds, and a
# loop held that long misses its lease renewals and heartbeat sweeps.
SEARCH_MODULES = ("workers.search.query", "workers.ai.client", "workers.ai.worker", "workers.settings")

AI_MODULE = "workers.ai"


async def _load_search_modules() -> None:
    await asyncio.to_thread(lambda: [importlib.import_module(name) for name in SEARCH_MODULES])


router = APIRouter(tags=["search"])


def _ai_worker_name(services: Services) -> str | None:
    """The configured worker running workers.ai (`ai` if several do)."""
    names = [name for name, spec in services.config.workers.items() if spec.module == AI_MODULE]
    return "ai" if "ai" in names else (names[0] if names else None)


async def _ai_settings(services: Services, conn: AsyncConnection[Any]) -> AiSettings | None:
    """The ai worker's provider settings as it would see them now, or None if it has none."""
    from workers.ai.client import AiSettings
    from workers.ai.worker import AiWorkerSettings
    from workers.settings import load_settings

    name = _ai_worker_name(services)
    if name is None:
        return None
    spec = services.config.workers[name]
    cur = await conn.execute(query("worker_settings"), {"prefix": f"{name}_"})
    live = {key: value for key, value in await cur.fetchall()}
    # Only what the ai worker itself is given: a settings row naming another variable
    # (`ai_api_key_env: ADMIN_TOKEN`) finds nothing, so no other secret is sent to `ai_base_url`.
    environ = worker_environment(name, spec, "", services.extra_env)
    try:
        settings = load_settings(AiWorkerSettings, name, spec.own_settings(), live)
        return AiSettings.from_config(settings.model_dump(), environ)
    except Exception:  # NotConfigured, or a setting of the wrong type: no semantic search
        return None


def _embedder(settings: AiSettings, conn: AsyncConnection[Any]) -> Any:
    import numpy as np

    from workers.ai.client import content_hash, embed_query

    async def embed(text: str) -> np.ndarray:
        key = {"model": settings.embedding_model, "dims": int(settings.dimensions), "content_hash": content_hash(text)}
        cur = await conn.execute(queries_from("search.sql")["query_embedding"], key)
        row = await cur.fetchone()
        if row:
            return np.asarray([float(x) for x in row[0].strip("[]").split(",")], dtype=np.float32)
        vector, usage = await embed_query(settings, text)
        literal = "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
        await conn.execute(queries_from("search.sql")["cache_query_embedding"], {**key, "embedding": literal})
        await conn.execute(queries_from("ai.sql")["record_usage"], usage.row("search-api"))
        return vector

    return embed


@router.get(
    "/api/search",
    responses={409: {"model": ErrorBody, "description": "semantic search asked for, but no ai provider is configured"}},
)
async def search(
    _: Viewer,
    services: ServicesDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=500,
            pattern=r"^[^\x00]+$",  # Postgres text cannot hold NUL
            description='words, "phrases", -not, OR, #hashtag, $cashtag, @mention, domain:example.com',
        ),
    ],
    kind: Literal["posts", "profiles"] = "posts",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    mode: Literal["auto", "text", "fuzzy", "tag", "semantic", "hybrid"] = "auto",
) -> dict[str, Any]:
    """Ranked results with `<mark>` highlights; each says how it matched (`matchedBy`)."""
    await _load_search_modules()
    from workers.search.query import Search, SearchUnavailable

    async with services.store.search_connection() as conn:

        async def semantic_source() -> tuple[Any, int] | None:
            """The ai worker's embedder, read only by a search that embeds (most never do)."""
            settings = await _ai_settings(services, conn)
            return (_embedder(settings, conn), int(settings.dimensions)) if settings else None

        try:
            return await Search(conn, q, kind=kind, limit=limit, mode=mode, semantic_source=semantic_source).run()
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except SearchUnavailable as exc:
            raise HTTPException(409, f"semantic search unavailable: {exc}") from None
