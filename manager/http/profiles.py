"""GET /api/profiles/{platform}/{id}: a social profile with the wallets linked to it (Farcaster
verified addresses, see workers/social/farcaster.py) and their latest holdings, as the chain
workers stored them. Amounts are strings: exact, beyond what a JSON number holds."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from psycopg.rows import dict_row

from manager.http.deps import StoreDep, Viewer
from manager.store import row_json
from sql import query

router = APIRouter(tags=["social"])

SOURCE = "insights.sql"


@router.get("/api/profiles/{platform}/{external_id}", responses={404: {"description": "no such profile stored"}})
async def profile(
    platform: Literal["farcaster", "reddit"], external_id: str, _: Viewer, store: StoreDep
) -> dict[str, Any]:
    """The profile (`external_id`: a fid or a Reddit username), its linked wallets with native
    balances, and their token balances and NFTs."""
    async with store.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("profile", SOURCE), {"platform": platform, "external_id": external_id})
        found = await cur.fetchone()
        if found is None:
            raise HTTPException(404, f"no {platform} profile {external_id!r} is stored")
        answer = row_json(found)
        key = {"profile_id": found["id"]}
        for name, part in (("wallets", "profile_wallets"), ("tokens", "profile_tokens"), ("nfts", "profile_nfts")):
            await cur.execute(query(part, SOURCE), key)
            answer[name] = [row_json(r) for r in await cur.fetchall()]
    return answer
