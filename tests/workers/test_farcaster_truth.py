"""Farcaster removals, verified wallets and feature flags, against the hub stand-in over loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devnet.farcaster_hub import FarcasterHub, farcaster_time
from tests.support.db import rows
from tests.workers.test_evm import eth, ethereum  # noqa: F401 - the anvil fixtures
from tests.workers.test_evm import worker as evm_worker
from workers.search import SearchWorker
from workers.social.farcaster import API_KEY_ENV, FarcasterWorker

ETH_A = "0x52908400098527886e0f7030069857d2e4169ee7"  # EIP-55 test vector, given in lower case
ETH_B = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"
SOL = "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV"


@pytest.fixture
def hub() -> Iterator[FarcasterHub]:
    with FarcasterHub(seed=7, fids=6, casts=60) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


def make_worker(url: str, hub_url: str, fids: list[int], **config: Any) -> FarcasterWorker:
    config = {"hub_url": hub_url, "fids": fids, "removal_check_s": 0, **config}
    worker = FarcasterWorker(name="farcaster", config=config, database_url=url)
    worker.heartbeat("starting")
    return worker


def set_flag(url: str, name: str, enabled: bool) -> None:
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("SELECT set_config('manager.actor', 'test:flags', true)")
        conn.execute(
            "INSERT INTO feature_flags (flag_name, enabled) VALUES (%s, %s) "
            "ON CONFLICT (flag_name) DO UPDATE SET enabled = EXCLUDED.enabled",
            (name, enabled),
        )


def search_cycle(url: str) -> None:
    worker = SearchWorker(name="search", config={}, database_url=url)
    try:
        worker.run_cycle()
    finally:
        for conn in (worker._data, worker._control):
            if conn is not None:
                conn.close()


def deleted(url: str, table: str, where: str, params: tuple[Any, ...]) -> bool:
    (row,) = rows(url, f"SELECT deleted_at IS NOT NULL FROM {table} WHERE {where}", params)
    return bool(row[0])


def test_removed_cast_reaction_and_follow_are_marked_and_leave_the_search_index(hub, migrated_url):
    fids = hub.fids
    worker = make_worker(migrated_url, hub.url, fids)
    worker.run_cycle()
    search_cycle(migrated_url)

    fid = next(f for f in fids if hub.cast_count(f) and hub.reactions(f) and hub.following(f))
    cast = hub.casts(fid)[0]
    reaction = hub.reactions(fid)[0]["data"]["reactionBody"]
    target = hub.following(fid)[0]
    hub.remove_cast(fid, cast["hash"])
    hub.remove_reaction(fid, reaction["targetCastId"]["hash"], reaction["type"])
    hub.remove_follow(fid, target)
    (post_id,) = rows(migrated_url, "SELECT id FROM external_posts WHERE external_id = %s", (cast["hash"],))[0]
    assert rows(migrated_url, "SELECT count(*) FROM search_posts WHERE post_id = %s", (post_id,))[0][0] == 1

    result = worker.run_cycle()
    assert result.items == 3 and result.item_errors == 0
    assert deleted(migrated_url, "external_posts", "external_id = %s", (cast["hash"],))
    kind = "like" if reaction["type"] == "REACTION_TYPE_LIKE" else "recast"
    where = "actor_id = %s AND kind = %s AND target_external_id = %s"
    assert deleted(migrated_url, "reactions", where, (str(fid), kind, reaction["targetCastId"]["hash"]))
    assert deleted(migrated_url, "follows", "follower_id = %s AND target_id = %s", (str(fid), str(target)))
    # Only those three: every other row stays live, nothing was hard-deleted.
    marked = rows(
        migrated_url,
        "SELECT (SELECT count(*) FROM external_posts WHERE deleted_at IS NOT NULL)"
        " + (SELECT count(*) FROM reactions WHERE deleted_at IS NOT NULL)"
        " + (SELECT count(*) FROM follows WHERE deleted_at IS NOT NULL)",
    )[0][0]
    assert marked == 3
    assert rows(migrated_url, "SELECT count(*) FROM external_posts")[0][0] == hub.totals()["casts"] + 1

    search_cycle(migrated_url)
    assert rows(migrated_url, "SELECT count(*) FROM search_posts WHERE post_id = %s", (post_id,))[0][0] == 0
    assert rows(migrated_url, "SELECT count(*) FROM post_tags WHERE post_id = %s", (post_id,))[0][0] == 0

    # A follow that comes back is live again.
    hub.add_follow(fid, target)
    worker.run_cycle()
    assert not deleted(migrated_url, "follows", "follower_id = %s AND target_id = %s", (str(fid), str(target)))


def test_verified_addresses_become_linked_wallets_bounded_and_unlinked_when_removed(hub, migrated_url):
    fid, other = hub.fids[0], hub.fids[1]
    now = farcaster_time(time.time())
    for offset, address in enumerate((ETH_A, SOL, ETH_B)):  # verified in this order, a second apart
        hub.add_verification(fid, address, timestamp=now + offset)
    hub.add_verification(other, "0xnot-an-address")
    worker = make_worker(migrated_url, hub.url, [fid, other], max_linked_wallets=2)
    result = worker.run_cycle()
    assert result.item_errors == 1  # the malformed address, reported and skipped

    (profile_id,) = rows(migrated_url, "SELECT id FROM profiles WHERE external_id = %s", (str(fid),))[0]
    linked = rows(migrated_url, "SELECT chain, address, source, active, profile_id FROM wallets ORDER BY 1, 2")
    checksummed = "0x52908400098527886E0F7030069857D2E4169EE7"
    assert linked == [
        ("base", checksummed, "farcaster", True, profile_id),
        ("ethereum", checksummed, "farcaster", True, profile_id),
        ("solana", SOL, "farcaster", True, profile_id),
    ]  # ETH_B is the third address: over max_linked_wallets

    hub.remove_verification(fid, ETH_A)
    worker.run_cycle()
    active = rows(migrated_url, "SELECT chain, address FROM wallets WHERE active ORDER BY 1, 2")
    assert active == [("base", ETH_B), ("ethereum", ETH_B), ("solana", SOL)]
    assert (
        rows(migrated_url, "SELECT count(*) FROM wallets WHERE NOT active AND address = %s", (checksummed,))[0][0] == 2
    )


def test_each_feature_flag_switches_its_part_off_at_the_next_cycle_with_an_audit_row(hub, migrated_url):
    fid = next(f for f in hub.fids if hub.following(f) and hub.reactions(f))
    hub.add_verification(fid, ETH_A)
    worker = make_worker(migrated_url, hub.url, [fid])
    for name in ("farcaster_follows_enabled", "farcaster_reactions_enabled", "farcaster_wallets_enabled"):
        set_flag(migrated_url, name, False)
    worker.run_cycle()
    assert rows(migrated_url, "SELECT count(*) FROM external_posts")[0][0] == hub.cast_count(fid)
    for table in ("follows", "reactions", "wallets"):
        assert rows(migrated_url, f"SELECT count(*) FROM {table}")[0][0] == 0, table
    audit = rows(
        migrated_url,
        "SELECT key, old_value, new_value, actor FROM config_audit WHERE key = 'farcaster_follows_enabled'",
    )
    assert audit == [("farcaster_follows_enabled", None, False, "test:flags")]

    set_flag(migrated_url, "farcaster_follows_enabled", True)  # the same worker object: read live
    worker.run_cycle()
    assert rows(migrated_url, "SELECT count(*) FROM follows")[0][0] == len(hub.following(fid))
    assert rows(migrated_url, "SELECT count(*) FROM reactions")[0][0] == 0


def test_a_verified_address_gets_balances_from_the_chain_worker_with_no_configuration(hub, migrated_url, eth):  # noqa: F811
    node, seed = eth
    node.rpc("anvil_setBalance", [ETH_A, hex(7 * 10**18)])
    fid = hub.fids[0]
    hub.add_verification(fid, ETH_A)
    make_worker(migrated_url, hub.url, [fid], evm_chains=["ethereum"]).run_cycle()

    chain = evm_worker(migrated_url, seed, wallets=[])  # nothing configured: only the link
    chain.run_cycle()
    checksummed = "0x52908400098527886E0F7030069857D2E4169EE7"
    balance = rows(migrated_url, "SELECT balance_wei FROM evm_native_balances WHERE address = %s", (checksummed,))
    assert balance == [(7 * 10**18,)]
    profile = rows(
        migrated_url,
        "SELECT p.external_id FROM wallets w JOIN profiles p ON p.id = w.profile_id WHERE w.address = %s",
        (checksummed,),
    )
    assert profile == [(str(fid),)]
