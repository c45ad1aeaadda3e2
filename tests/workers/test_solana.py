"""The Solana worker against the devnet JSON-RPC stand-in (unchanged solana-py client) and Postgres.

The read-only tests share one seeded node; tests that move funds get a fresh one. What the worker
wrote is compared with what the stand-in's ledger holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from solders.pubkey import Pubkey

from devnet.solana_ledger import LAMPORTS_PER_SOL, SolanaLedger, metadata_address
from devnet.solana_rpc import SolanaRpcServer
from tests.support.db import rows
from workers.errors import NotConfigured, RateLimited, UpstreamError
from workers.solana import SolanaWorker


@pytest.fixture(scope="module")
def seeded() -> Iterator[SolanaRpcServer]:
    with SolanaRpcServer() as srv:
        yield srv


@pytest.fixture
def server(seeded: SolanaRpcServer) -> Iterator[SolanaRpcServer]:
    yield seeded
    seeded.clear_faults()


@pytest.fixture
def fresh() -> Iterator[SolanaRpcServer]:
    with SolanaRpcServer() as srv:
        yield srv


def tracked(ledger: SolanaLedger) -> list[str]:
    return [str(w.pubkey) for w in ledger.wallets.values() if w.tracked]


def config(srv: SolanaRpcServer, **overrides: Any) -> dict[str, Any]:
    wallets = [{"address": str(w.pubkey), "label": w.label} for w in srv.ledger.wallets.values() if w.tracked]
    return {"rpc_url": srv.url, "wallets": wallets, "rpc_timeout_s": 2, **overrides}


def worker(db: str, srv: SolanaRpcServer, **overrides: Any) -> SolanaWorker:
    w = SolanaWorker(name="solana", config=config(srv, **overrides), database_url=db)
    w.validate()
    return w


def table_counts(url: str) -> dict[str, int]:
    tables = [
        "wallets",
        "solana_balances",
        "solana_token_balances",
        "solana_transactions",
        "solana_wallet_transactions",
        "solana_nft_metadata",
        "sync_cursors",
    ]
    return {t: rows(url, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def expected_history(ledger: SolanaLedger) -> dict[str, set[str]]:
    """wallet -> signatures listed for it or for any of its token accounts, as the node has them."""
    out: dict[str, set[str]] = {}
    for wallet in tracked(ledger):
        key = Pubkey.from_string(wallet)
        sigs = {tx.signature for tx in ledger.signatures_for(key)}
        for account in ledger.token_accounts_of(key):
            sigs |= {tx.signature for tx in ledger.signatures_for(account.address)}
        out[wallet] = sigs
    return out


def stored_history(url: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for wallet, signature in rows(url, "SELECT wallet, signature FROM solana_wallet_transactions"):
        out.setdefault(wallet, set()).add(signature)
    return out


def assert_matches_ledger(url: str, ledger: SolanaLedger) -> None:
    wallets = tracked(ledger)
    balances = dict(rows(url, "SELECT address, lamports FROM solana_balances"))
    assert balances == {w: Decimal(ledger.balance(Pubkey.from_string(w))) for w in wallets}
    accounts = {r[0]: r[1:] for r in rows(url, "SELECT token_account, owner, mint, amount FROM solana_token_balances")}
    assert accounts == {
        str(a.address): (w, str(a.mint.address), Decimal(a.amount))
        for w in wallets
        for a in ledger.token_accounts_of(Pubkey.from_string(w))
    }
    holdings = {
        (r[0], r[1]): r[2:] for r in rows(url, "SELECT owner, mint, name, symbol, uri FROM solana_nft_holdings")
    }
    assert holdings == {
        (w, str(mint.address)): (meta.name, meta.symbol, meta.uri)
        for w in wallets
        for mint, meta in ledger.nfts_of(Pubkey.from_string(w))
    }
    assert stored_history(url) == expected_history(ledger)


# --- configuration ----------------------------------------------------------------------------------


def test_without_rpc_url_it_waits_with_a_message(migrated_url: str) -> None:
    with pytest.raises(NotConfigured, match="SOLANA_RPC_URL"):
        SolanaWorker(name="solana", config={}, database_url=migrated_url).validate()


# --- what lands in Postgres -------------------------------------------------------------------------


def test_balances_tokens_nfts_and_history_match_the_ledger(migrated_url: str, server: SolanaRpcServer) -> None:
    ledger = server.ledger
    result = worker(migrated_url, server).run_cycle()
    assert result.items > 0 and result.item_errors == 0
    assert_matches_ledger(migrated_url, ledger)

    alice, bob, carol = (str(ledger.wallet(x).pubkey) for x in ("alice", "bob", "carol"))
    # Token-2022 (DBONK) sits beside classic SPL; alice keeps an emptied account for gecko #2.
    programs = {r[0] for r in rows(migrated_url, "SELECT DISTINCT program FROM solana_token_balances")}
    assert programs == {"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"}
    assert rows(
        migrated_url, "SELECT count(*) FROM solana_token_balances WHERE owner = %s AND amount = 0", (alice,)
    ) == [(1,)]
    assert [r[0] for r in rows(migrated_url, "SELECT name FROM solana_nft_holdings WHERE owner = %s", (alice,))] == [
        "Devnet Gecko #1"
    ]
    meta = rows(
        migrated_url,
        "SELECT m.metadata_address, m.seller_fee_basis_points, m.token_standard, m.creators "
        "FROM solana_nft_metadata m JOIN solana_nft_holdings h USING (mint) WHERE h.owner = %s",
        (bob,),
    )
    mint = next(m for m, _ in ledger.nfts_of(Pubkey.from_string(bob)))
    assert meta == [
        (
            str(metadata_address(mint.address)),
            500,
            0,
            [{"address": str(ledger.faucet.pubkey), "verified": True, "share": 100}],
        )
    ]

    txs = {
        r[0]: r[1:]
        for r in rows(
            migrated_url,
            "SELECT signature, succeeded, err IS NULL, fee_lamports, version, block_time FROM solana_transactions",
        )
    }
    for signature, (succeeded, no_err, fee, version, block_time) in txs.items():
        on_chain = ledger.by_signature[signature]
        assert (succeeded, no_err) == (on_chain.err is None, on_chain.err is None)
        assert fee == 5000 and version == str(on_chain.version)
        assert block_time.timestamp() == on_chain.block_time
    assert {v for _, _, _, v, _ in txs.values()} == {
        "legacy",
        "0",
    }  # the v0 transfer needs maxSupportedTransactionVersion
    assert [s for s, _, *_ in txs.values()].count(False) == 1  # carol's overdraft, stored as failed
    paid = rows(
        migrated_url,
        "SELECT lamports_delta FROM solana_wallet_transactions WHERE wallet = %s AND lamports_delta < -%s",
        (alice, LAMPORTS_PER_SOL // 5),
    )
    assert paid == [(Decimal(-(LAMPORTS_PER_SOL // 4) - 5000),)]  # 0.25 SOL to bob, plus the fee
    usdc = str(ledger.mint("DUSDC").address)
    received = rows(
        migrated_url,
        "SELECT token_deltas FROM solana_wallet_transactions WHERE wallet = %s AND token_deltas ? %s",
        (bob, usdc),
    )
    assert received == [({usdc: "25000000"},)]
    assert carol in stored_history(migrated_url)


def test_a_second_pass_writes_no_duplicates(migrated_url: str, server: SolanaRpcServer) -> None:
    w = worker(migrated_url, server)
    w.run_cycle()
    first = table_counts(migrated_url)
    before = server.request_count()
    again = w.run_cycle()
    assert table_counts(migrated_url) == first
    assert again.items == len(tracked(server.ledger))  # balances re-read; no transaction fetched again
    # One getMultipleAccounts, token accounts under both programs, and the wallets' signatures:
    # token accounts whose balance did not change wait for the sweep.
    wallets = len(tracked(server.ledger))
    assert server.request_count() - before == 1 + 2 * wallets + wallets
    swept = worker(migrated_url, server, token_account_sweep_s=0)  # a restarted worker, sweeping
    before = server.request_count()
    swept.run_cycle()
    addresses = first["sync_cursors"]  # one signature cursor per followed address
    assert server.request_count() - before == 1 + 2 * wallets + addresses
    assert table_counts(migrated_url) == first


def test_changes_between_cycles_show_up_in_the_next(migrated_url: str, fresh: SolanaRpcServer) -> None:
    ledger = fresh.ledger
    w = worker(migrated_url, fresh)
    w.run_cycle()
    alice, bob, carol = (str(ledger.wallet(x).pubkey) for x in ("alice", "bob", "carol"))
    gecko = next(m for m, _ in ledger.nfts_of(Pubkey.from_string(alice)))

    paid = ledger.transfer_sol("alice", "dave", 1234)
    into_existing = ledger.transfer_token("bob", "alice", "DUSDC", 5 * 10**6)  # lists under alice's token account
    nft_away = ledger.transfer_token("alice", "carol", gecko.address, 1)  # creates carol's account for it
    new_nft = ledger.create_nft("gecko 9", name="Devnet Gecko #9", symbol="DGECKO", uri="ipfs://new/9.json")
    minted = ledger.mint_to(new_nft.address, "bob", 1)
    w.run_cycle()

    assert_matches_ledger(migrated_url, ledger)
    history = stored_history(migrated_url)
    assert {paid, into_existing, nft_away} <= history[alice]
    assert {into_existing, minted} <= history[bob] and nft_away in history[carol]
    via = rows(
        migrated_url,
        "SELECT via FROM solana_wallet_transactions WHERE wallet = %s AND signature = %s",
        (alice, into_existing),
    )
    assert via != [(alice,)]  # found through the token account, not the wallet's own signatures
    holders = dict(rows(migrated_url, "SELECT name, owner FROM solana_nft_holdings"))
    assert holders["Devnet Gecko #1"] == carol and holders["Devnet Gecko #9"] == bob


# --- faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "truncated", "disconnect", "slow", "rpc_error"])
def test_transient_faults_are_retried_within_the_cycle(migrated_url: str, server: SolanaRpcServer, kind: str) -> None:
    w = worker(migrated_url, server, rpc_timeout_s=0.5)
    if kind == "rpc_error":
        server.inject_fault("rpc_error", count=2, method="getTransaction")  # "node is behind"
    else:
        server.inject_fault(kind, count=2, delay=1.5)
    result = w.run_cycle()
    assert result.item_errors == 0
    assert_matches_ledger(migrated_url, server.ledger)


def test_rate_limits_are_obeyed(migrated_url: str, server: SolanaRpcServer) -> None:
    w = worker(migrated_url, server)
    server.inject_fault("429", retry_after=9)
    with pytest.raises(RateLimited) as caught:
        w.run_cycle()
    assert caught.value.retry_after_s == 9
    w.run_cycle()
    assert_matches_ledger(migrated_url, server.ledger)


def test_a_cycle_that_fails_midway_loses_and_duplicates_nothing(migrated_url: str, server: SolanaRpcServer) -> None:
    w = worker(migrated_url, server, retries=0)
    server.inject_fault("rpc_error", count=1, method="getTransaction", code=-32603, message="internal error")
    with pytest.raises(UpstreamError, match="internal error"):
        w.run_cycle()  # the holdings are in; no history cursor moved
    assert table_counts(migrated_url)["solana_balances"] == 3
    assert table_counts(migrated_url)["sync_cursors"] == 0
    w.run_cycle()
    assert_matches_ledger(migrated_url, server.ledger)


def test_solana_is_healthy_under_the_manager(boot_manager: Any, server: SolanaRpcServer) -> None:
    m = boot_manager(
        workers={
            "solana": {"module": "workers.solana", "interval_ms": 500, "heartbeat_interval_ms": 200, **config(server)},
        }
    )
    status = m.wait_worker("solana", lambda w: w["healthy"] and w["itemsProcessed"] > 0, timeout=30)
    assert status["lastError"] is None
    assert m.sql("SELECT count(*) FROM solana_nft_metadata") == [(3,)]
