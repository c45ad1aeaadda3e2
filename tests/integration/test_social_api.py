"""Feature flags seeded per worker, GET /api/trending and GET /api/profiles, on a real manager."""

from __future__ import annotations

import psycopg

from manager.app import prepare_database
from manager.config import Config
from tests.support.db import rows
from tests.support.manager import example_worker
from tests.workers.test_farcaster_truth import search_cycle


def test_features_are_seeded_with_descriptions_where_no_row_exists(migrated_url):
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("INSERT INTO feature_flags (flag_name, enabled) VALUES ('ai_summaries_enabled', false)")
    config = Config.model_validate(
        {
            "database": {"url": migrated_url},
            "workers": {
                "farcaster": {"module": "workers.social.farcaster"},
                "ai": {"module": "workers.ai"},
                "ethereum": {"module": "workers.evm"},
                "reddit": {"module": "workers.social.reddit"},
            },
        }
    )
    prepare_database(config, say=lambda _: None)
    flags = {
        name: (enabled, about)
        for name, enabled, about in rows(migrated_url, "SELECT flag_name, enabled, description FROM feature_flags")
    }
    for name in (
        "farcaster_follows_enabled",
        "farcaster_wallets_enabled",
        "farcaster_reactions_enabled",
        "ai_embeddings_enabled",
        "ethereum_ens_enabled",
        "reddit_comments_enabled",
    ):
        assert flags[name][0] is True and flags[name][1], name
    assert flags["ai_summaries_enabled"][0] is False  # the database wins over the seed


def test_trending_ranks_a_planted_burst_first_and_profiles_show_linked_wallets(boot_manager):
    m = boot_manager({"counter": example_worker()})
    url = m.database_url
    # Steady chatter about #gm over the last two hours, and a burst of #launch in the last hour.
    m.sql(
        "INSERT INTO external_posts (platform, external_id, body, created_at) "
        "SELECT 'farcaster', 'steady' || i, 'gm #gm', now() - (i * interval '4 minutes') FROM generate_series(1, 28) i"
    )
    m.sql(
        "INSERT INTO external_posts (platform, external_id, body, created_at) "
        "SELECT 'farcaster', 'burst' || i, 'shipping #launch $DEV', now() - (i * interval '1 minute') "
        "FROM generate_series(1, 20) i"
    )
    search_cycle(url)
    answer = m.api("GET", "/api/trending", params={"window": "1h", "kind": "tags"})
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert items[0] == {"tag": "launch", "posts": 20, "previous": 0, "velocity": None}
    gm = next(i for i in items if i["tag"] == "gm")
    assert (gm["posts"], gm["previous"]) == (14, 14) and gm["velocity"] == 0
    cashtags = m.api("GET", "/api/trending", params={"window": "24h", "kind": "cashtags"}).json()["items"]
    assert cashtags[0]["tag"] == "dev" and cashtags[0]["posts"] == 20
    bad = m.api("GET", "/api/trending", params={"window": "2h"})
    assert bad.status_code == 422 and "window" in bad.text
    assert m.api("GET", "/api/trending", token=None).status_code == 401
    page = m.api("GET", "/workers/trending", params={"window": "1h"})
    assert page.status_code == 200, page.text
    assert page.text.index("<code>#launch</code>") < page.text.index("<code>#gm</code>")

    # A profile with a linked wallet and what the chain workers stored for it.
    (pid,) = m.sql(
        "INSERT INTO profiles (platform, external_id, username) VALUES ('farcaster', '3', 'dwr') RETURNING id"
    )[0]
    address = "0x52908400098527886E0F7030069857D2E4169EE7"
    m.sql(
        "INSERT INTO wallets (chain, address, source, profile_id) VALUES ('ethereum', %s, 'farcaster', %s)",
        (address, pid),
    )
    m.sql(
        "INSERT INTO evm_native_balances (chain, address, balance_wei, block_number) "
        "VALUES ('ethereum', %s, 123456789012345678901234, 7)",
        (address,),
    )
    profile = m.api("GET", "/api/profiles/farcaster/3")
    assert profile.status_code == 200, profile.text
    body = profile.json()
    assert body["username"] == "dwr" and body["tokens"] == [] and body["nfts"] == []
    (wallet,) = body["wallets"]
    assert (wallet["chain"], wallet["address"], wallet["balance_wei"]) == (
        "ethereum",
        address,
        "123456789012345678901234",
    )
    assert m.api("GET", "/api/profiles/farcaster/999").status_code == 404
    assert m.api("GET", "/api/profiles/myspace/3").status_code == 422
