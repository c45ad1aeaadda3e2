"""The EVM worker against real anvil chains (Ethereum as chain 1, BASE as chain 8453) and Postgres.

Each chain is started and seeded once per module; tests that change it run between an
`evm_snapshot` and an `evm_revert`, so they see the seeded chain and leave it as they found it.
What the worker wrote is compared with what the chain itself answers through web3.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import psycopg.types.json
import pytest
from web3 import Web3

from devnet import chains
from devnet.chains import AnvilNode, ChainSeed
from devnet.rpc_proxy import RpcProxy
from tests.support.db import rows
from workers.errors import NotConfigured, RateLimited, UpstreamError
from workers.evm import EvmWorker

CONFIRMATIONS = 2
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


@pytest.fixture(scope="module")
def ethereum() -> Iterator[tuple[AnvilNode, ChainSeed]]:
    with chains.start_anvil(chains.ETHEREUM_CHAIN_ID) as node:
        seed = chains.seed_chain(node)
        chains.mine_blocks(node.web3(), CONFIRMATIONS)  # the seeded history is confirmed
        yield node, seed


@pytest.fixture(scope="module")
def base() -> Iterator[tuple[AnvilNode, ChainSeed]]:
    with chains.start_anvil(chains.BASE_CHAIN_ID) as node:
        seed = chains.seed_chain(node)
        chains.mine_blocks(node.web3(), CONFIRMATIONS)
        yield node, seed


@pytest.fixture
def eth(ethereum: tuple[AnvilNode, ChainSeed]) -> Iterator[tuple[AnvilNode, ChainSeed]]:
    """The Ethereum chain, reverted after the test to how it was seeded."""
    node, seed = ethereum
    snapshot = node.rpc("evm_snapshot")
    yield node, seed
    assert node.rpc("evm_revert", [snapshot]) is True


def config(seed: ChainSeed, url: str | None = None, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "rpc_url": url or seed.url,
        "chain_id": seed.chain_id,
        "wallets": [{"address": w.address, "label": w.label} for w in seed.tracked],
        "tokens": [t.address for t in seed.tokens],
        "nft_contracts": [seed.nft.address],
        "confirmations": CONFIRMATIONS,
        "start_block": 0,
        "rpc_timeout_s": 2,
    }
    spec.update(overrides)
    return spec


def worker(db: str, seed: ChainSeed, name: str = "ethereum", **overrides: Any) -> EvmWorker:
    w = EvmWorker(name=name, config=config(seed, **overrides), database_url=db)
    w.validate()
    return w


def table_counts(url: str) -> dict[str, int]:
    tables = [
        "wallets",
        "evm_native_balances",
        "evm_tokens",
        "evm_token_balances",
        "evm_transactions",
        "evm_wallet_transactions",
        "evm_transfers",
        "evm_nfts",
        "ens_names",
    ]
    return {t: rows(url, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def touching(w3: Web3, tracked: set[str], last_block: int) -> dict[str, set[str]]:
    """What the chain says: every transaction up to `last_block` that moves value or tokens from or
    to a tracked wallet, with the wallets it touches (independent of the worker's code)."""
    out: dict[str, set[str]] = {}
    for number in range(last_block + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            parties = {tx["from"], tx["to"]} & tracked
            for log in w3.eth.get_transaction_receipt(tx["hash"])["logs"]:
                if log["topics"] and log["topics"][0].to_0x_hex() == TRANSFER_TOPIC and len(log["topics"]) >= 3:
                    for topic in log["topics"][1:3]:
                        parties |= {Web3.to_checksum_address(topic[-20:])} & tracked
            if parties:
                out[tx["hash"].to_0x_hex()] = parties
    return out


# --- pure parts ------------------------------------------------------------------------------------


def test_aggregate3_coding_matches_eth_abi() -> None:
    import random

    from eth_abi import decode, encode

    from workers.evm.reads import AGGREGATE3, Call, decode_aggregate3, encode_aggregate3

    rng = random.Random(7)
    calls = [Call(Web3.to_checksum_address(rng.randbytes(20)), rng.randbytes(rng.randint(0, 100))) for _ in range(40)]
    for chunk in (calls, calls[:1], []):
        expected = AGGREGATE3 + encode(["(address,bool,bytes)[]"], [[(c.target, True, c.data) for c in chunk]])
        assert encode_aggregate3(chunk) == expected
    results = [(rng.random() < 0.5, rng.randbytes(rng.randint(0, 70))) for _ in range(30)]
    answer = encode(["(bool,bytes)[]"], [results])
    assert decode_aggregate3(answer) == results == [tuple(r) for r in decode(["(bool,bytes)[]"], answer)[0]]
    with pytest.raises(ValueError, match="cut short"):
        decode_aggregate3(answer[:-40])


def test_requests_are_paced_to_requests_per_second(ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    import time

    from workers.evm.rpc import JsonRpcClient

    node, _ = ethereum
    client = JsonRpcClient(node.url, requests_per_second=50)
    started = time.monotonic()
    for _ in range(6):
        client.call("eth_blockNumber")
    assert time.monotonic() - started >= 5 / 50
    assert (client.calls, client.http_requests) == (6, 6)
    client.close()


# --- configuration ----------------------------------------------------------------------------------


def test_without_rpc_url_it_waits_with_a_message(migrated_url: str) -> None:
    w = EvmWorker(name="base", config={"chain_id": 8453}, database_url=migrated_url)
    with pytest.raises(NotConfigured, match="BASE_RPC_URL"):
        w.validate()


def test_a_node_of_another_chain_is_a_configuration_error(
    migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed]
) -> None:
    _, seed = ethereum
    w = EvmWorker(name="base", config=config(seed, chain_id=8453), database_url=migrated_url)
    with pytest.raises(NotConfigured, match=r"serves chain 1\b.*8453"):
        w.validate()


# --- what lands in Postgres -------------------------------------------------------------------------


def test_balances_tokens_nfts_transactions_and_ens_match_the_chain(
    migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed]
) -> None:
    node, seed = ethereum
    w3 = node.web3()
    result = worker(migrated_url, seed).run_cycle()
    head = w3.eth.block_number
    tracked = {w.address for w in seed.tracked}
    assert result.items > 0 and result.item_errors == 0

    assert rows(migrated_url, "SELECT address, label, source FROM wallets WHERE chain = 'ethereum' ORDER BY label") == [
        (w.address, w.label, "config") for w in seed.tracked
    ]
    native = dict(
        rows(migrated_url, "SELECT address, balance_wei FROM evm_native_balances WHERE block_number = %s", (head,))
    )
    assert native == {a: Decimal(w3.eth.get_balance(a, head)) for a in tracked}

    tokens = rows(migrated_url, "SELECT address, standard, name, symbol, decimals FROM evm_tokens ORDER BY symbol")
    assert tokens == sorted(
        [(t.address, "erc20", t.name, t.symbol, t.decimals) for t in seed.tokens]
        + [(seed.nft.address, "erc721", seed.nft.name, seed.nft.symbol, None)],
        key=lambda r: str(r[3]),
    )
    balances = {(w, t): b for w, t, b in rows(migrated_url, "SELECT wallet, token, balance FROM evm_token_balances")}
    assert balances == {(a, t.address): Decimal(t.balances[a]) for a in tracked for t in seed.tokens}
    alice = seed.wallet("alice").address
    amounts = dict(rows(migrated_url, "SELECT symbol, amount FROM evm_token_holdings WHERE wallet = %s", (alice,)))
    assert amounts == {"DUSD": Decimal("1150.25"), "DGOV": Decimal("42.5")}  # exact, no float on the way

    nfts = {int(i): (o, u) for i, o, u in rows(migrated_url, "SELECT token_id, owner, token_uri FROM evm_nfts")}
    assert {i: o for i, (o, _) in nfts.items()} == {t.token_id: t.owner for t in seed.nft.tokens}
    held = {i: u for i, (o, u) in nfts.items() if o in tracked}
    assert held == {t.token_id: t.uri for t in seed.nft.tokens if t.owner in tracked}

    expected = touching(w3, tracked, head - CONFIRMATIONS)
    stored = rows(migrated_url, "SELECT hash, status, fee_wei, block_number FROM evm_transactions")
    assert {h for h, *_ in stored} == set(expected)
    for tx_hash, status, fee, block_number in stored:
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        assert (status, fee, block_number) == (
            1,
            receipt["gasUsed"] * receipt["effectiveGasPrice"],
            receipt["blockNumber"],
        )
    links: dict[str, set[str]] = {}
    for wallet, tx_hash in rows(migrated_url, "SELECT wallet, tx_hash FROM evm_wallet_transactions"):
        links.setdefault(tx_hash, set()).add(wallet)
    assert links == expected
    first_payment = rows(
        migrated_url,
        "SELECT direction FROM evm_wallet_transactions t JOIN evm_transactions x ON x.hash = t.tx_hash "
        "WHERE x.value_wei = %s AND t.wallet = %s",
        (Web3.to_wei(0.1, "ether"), alice),
    )
    assert first_payment == [("out",)]

    assert seed.ens is not None
    assert dict(rows(migrated_url, "SELECT address, name FROM ens_names")) == {
        alice: "alice.eth",
        seed.wallet("bob").address: "bob.eth",
        seed.wallet("carol").address: None,  # carol's reverse record claims alice.eth: forward check fails
    }


def test_a_second_pass_writes_no_duplicates(migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed]) -> None:
    _, seed = ethereum
    w = worker(migrated_url, seed)
    w.run_cycle()
    first = table_counts(migrated_url)
    tx_versions = rows(migrated_url, "SELECT hash, xmin::text FROM evm_transactions ORDER BY hash")
    again = w.run_cycle()
    assert table_counts(migrated_url) == first
    assert rows(migrated_url, "SELECT hash, xmin::text FROM evm_transactions ORDER BY hash") == tx_versions  # untouched
    assert again.items == len(seed.tracked)  # only the balances were read again
    fresh = worker(migrated_url, seed)  # a restarted worker resumes from its cursor
    fresh.run_cycle()
    assert table_counts(migrated_url) == first


def test_changes_between_cycles_show_up_in_the_next(migrated_url: str, eth: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = eth
    w3 = node.web3()
    w = worker(migrated_url, seed)
    w.run_cycle()
    alice, bob, carol, dave = (seed.wallet(x).address for x in ("alice", "bob", "carol", "dave"))
    dusd = seed.token("DUSD")

    paid = chains.send_eth(w3, alice, dave, 12_345)
    got = chains.transfer_token(w3, dusd.address, dave, carol, 7 * 10**6)  # from an untracked wallet
    away = chains.transfer_nft(w3, seed.nft.address, alice, dave, 1)  # NFT leaves the tracked set
    minted = chains.mint_nft(w3, seed.nft.address, bob, 42, "ipfs://new/42.json")
    chains.mine_blocks(w3, CONFIRMATIONS)
    w.run_cycle()
    head = w3.eth.block_number

    native = dict(rows(migrated_url, "SELECT address, balance_wei FROM evm_native_balances"))
    assert native[alice] == w3.eth.get_balance(alice, head) < seed.eth_balances[alice] - 12_345
    assert rows(
        migrated_url,
        "SELECT balance, block_number FROM evm_token_balances WHERE wallet = %s AND token = %s",
        (carol, dusd.address),
    ) == [(Decimal(dusd.balances[carol] + 7 * 10**6), head)]
    owners = {int(i): o for i, o in rows(migrated_url, "SELECT token_id, owner FROM evm_nfts")}
    assert owners[1] == dave and owners[42] == bob
    alice_nfts = rows(migrated_url, "SELECT token_id FROM evm_nfts WHERE owner = %s ORDER BY token_id", (alice,))
    assert alice_nfts == [(Decimal(2),)]
    assert rows(migrated_url, "SELECT token_uri FROM evm_nfts WHERE token_id = 42") == [("ipfs://new/42.json",)]
    directions = dict(
        rows(
            migrated_url,
            "SELECT tx_hash, direction FROM evm_wallet_transactions WHERE tx_hash = ANY(%s)",
            ([paid, got, away, minted],),
        )
    )
    assert directions == {paid: "out", got: "log", away: "out", minted: "log"}


def test_a_wallet_added_later_gets_its_history_too(migrated_url: str, eth: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = eth
    w3 = node.web3()
    carol = seed.wallet("carol")
    w = worker(migrated_url, seed, wallets=[w.address for w in seed.tracked if w != carol])
    w.run_cycle()
    chains.send_eth(w3, seed.wallet("alice").address, carol.address, 5)
    chains.mine_blocks(w3, CONFIRMATIONS)
    w.run_cycle()
    with psycopg.connect(migrated_url, autocommit=True) as conn:  # an operator adds carol, live
        conn.execute(
            "INSERT INTO settings (key, value) VALUES ('ethereum_wallets', %s)",
            (psycopg.types.json.Jsonb([{"address": x.address, "label": x.label} for x in seed.tracked]),),
        )
    w.refresh_settings()
    w.run_cycle()
    expected = touching(w3, {carol.address}, w3.eth.block_number - CONFIRMATIONS)
    stored = {
        h
        for (h,) in rows(
            migrated_url, "SELECT tx_hash FROM evm_wallet_transactions WHERE wallet = %s", (carol.address,)
        )
    }
    assert stored == set(expected) and len(stored) > 3
    assert rows(migrated_url, "SELECT DISTINCT history_block FROM wallets") == [(w3.eth.block_number - CONFIRMATIONS,)]
    assert rows(migrated_url, "SELECT label FROM wallets WHERE address = %s", (carol.address,)) == [("carol",)]


def test_wallets_added_by_hand_are_tracked_in_eip55_form(
    migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed]
) -> None:
    node, seed = ethereum
    dave = seed.wallet("dave").address
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("INSERT INTO wallets (chain, address, label) VALUES ('ethereum', %s, 'dave')", (dave.lower(),))
    worker(migrated_url, seed).run_cycle()
    assert rows(migrated_url, "SELECT address, source FROM wallets WHERE label = 'dave'") == [(dave, "manual")]
    assert rows(migrated_url, "SELECT balance_wei FROM evm_native_balances WHERE address = %s", (dave,)) == [
        (Decimal(node.web3().eth.get_balance(dave)),)
    ]


def test_a_reorg_below_the_confirmation_depth_is_rewound(migrated_url: str, eth: tuple[AnvilNode, ChainSeed]) -> None:
    node, seed = eth
    w3 = node.web3()
    alice, bob, dave = (seed.wallet(x).address for x in ("alice", "bob", "dave"))
    w = worker(migrated_url, seed, confirmations=0)
    w.run_cycle()
    gone_nft = chains.transfer_nft(w3, seed.nft.address, alice, dave, 2)
    gone_eth = chains.send_eth(w3, alice, dave, 1)
    w.run_cycle()
    assert {h for (h,) in rows(migrated_url, "SELECT hash FROM evm_transactions")} >= {gone_nft, gone_eth}

    node.rpc("anvil_rollback", [2])  # both blocks vanish; the chain grows another way
    replacement = chains.send_eth(w3, bob, dave, 2)
    chains.mine_blocks(w3, 1)
    w.run_cycle()

    hashes = {h for (h,) in rows(migrated_url, "SELECT hash FROM evm_transactions")}
    assert replacement in hashes and not hashes & {gone_nft, gone_eth}
    assert rows(migrated_url, "SELECT owner FROM evm_nfts WHERE token_id = 2") == [(alice,)]
    assert rows(
        migrated_url, "SELECT count(*) FROM evm_wallet_transactions WHERE tx_hash = ANY(%s)", ([gone_nft, gone_eth],)
    ) == [(0,)]
    assert any("reorganised" in m for (m,) in rows(migrated_url, "SELECT message FROM worker_errors"))
    assert table_counts(migrated_url)["evm_transactions"] == len(
        touching(w3, {w.address for w in seed.tracked}, w3.eth.block_number)
    )


def test_base_is_its_own_chain_with_ens_from_mainnet(
    migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed], base: tuple[AnvilNode, ChainSeed]
) -> None:
    eth_node, _ = ethereum
    _, seed = base
    worker(migrated_url, seed, name="base").run_cycle()
    assert rows(migrated_url, "SELECT DISTINCT chain FROM evm_token_balances") == [("base",)]
    assert {a for (a,) in rows(migrated_url, "SELECT token FROM evm_token_balances")} == {
        t.address for t in seed.tokens
    }
    assert rows(migrated_url, "SELECT count(*) FROM ens_names") == [(0,)]  # no ENS on BASE itself

    worker(migrated_url, seed, name="base", ens_rpc_url=eth_node.url).run_cycle()
    names = dict(rows(migrated_url, "SELECT address, name FROM ens_names"))
    assert names[seed.wallet("alice").address] == "alice.eth"


# --- batching and faults ----------------------------------------------------------------------------


@pytest.fixture
def proxy(ethereum: tuple[AnvilNode, ChainSeed]) -> Iterator[RpcProxy]:
    node, _ = ethereum
    with RpcProxy(node.url) as p:
        yield p


@pytest.mark.parametrize("mode", ["multicall", "batch"])
def test_reads_are_batched_not_one_call_per_wallet_and_token(
    migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed], proxy: RpcProxy, mode: str
) -> None:
    _, seed = ethereum
    w = worker(migrated_url, seed, rpc_url=proxy.url, multicall=mode)
    w.run_cycle()
    proxy.reset_counts()
    w.run_cycle()  # steady state: nothing new on chain
    # The head (with the cursor's block, to notice reorgs), then every balance in one request.
    assert proxy.http_posts == 2
    reads = len(seed.tracked) * (1 + len(seed.tokens))
    assert proxy.calls == 2 + (1 if mode == "multicall" else reads)
    assert table_counts(migrated_url)["evm_token_balances"] == len(seed.tracked) * len(seed.tokens)


def test_rate_limits_are_obeyed(migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed], proxy: RpcProxy) -> None:
    _, seed = ethereum
    w = worker(migrated_url, seed, rpc_url=proxy.url)
    proxy.inject_fault("429", retry_after=7)
    with pytest.raises(RateLimited) as caught:
        w.run_cycle()
    assert caught.value.retry_after_s == 7
    proxy.inject_rpc_error("eth_getLogs", code=-32005, message="project ID request rate exceeded")
    with pytest.raises(RateLimited):
        w.run_cycle()
    w.run_cycle()
    assert table_counts(migrated_url)["evm_transactions"] > 0


@pytest.mark.parametrize("kind", ["500", "truncated", "disconnect", "slow"])
def test_transient_faults_are_retried_within_the_cycle(
    migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed], proxy: RpcProxy, kind: str
) -> None:
    _, seed = ethereum
    w = worker(migrated_url, seed, rpc_url=proxy.url, rpc_timeout_s=0.5)
    proxy.inject_fault(kind, count=2, delay=2)  # twice in a row; `slow` outlasts rpc_timeout_s
    result = w.run_cycle()
    assert result.item_errors == 0 and not proxy.pending_faults()
    counts = table_counts(migrated_url)
    assert counts["evm_transactions"] > 0 and counts["evm_nfts"] == len(seed.nft.tokens)


def test_a_cycle_that_fails_midway_loses_and_duplicates_nothing(
    migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed], proxy: RpcProxy
) -> None:
    _, seed = ethereum
    w = worker(migrated_url, seed, rpc_url=proxy.url, max_block_range=8)
    proxy.inject_rpc_error("eth_getTransactionReceipt", count=1, code=-32603, message="internal error")
    with pytest.raises(UpstreamError, match="internal error"):
        w.run_cycle()  # balances are in, the history range that failed is not
    assert table_counts(migrated_url)["evm_native_balances"] == len(seed.tracked)
    proxy.inject_fault("500", count=3)  # one more than the retries: the whole cycle fails
    with pytest.raises(UpstreamError, match="HTTP 500"):
        w.run_cycle()
    w.run_cycle()
    after_faults = table_counts(migrated_url)

    with psycopg.connect(migrated_url, autocommit=True) as conn:  # a clean run into emptied tables
        conn.execute("TRUNCATE evm_transactions, evm_wallet_transactions, evm_transfers, evm_nfts, sync_cursors")
    worker(migrated_url, seed).run_cycle()
    assert table_counts(migrated_url) == after_faults


def test_refused_log_ranges_are_split(
    migrated_url: str, ethereum: tuple[AnvilNode, ChainSeed], proxy: RpcProxy
) -> None:
    node, seed = ethereum
    proxy.max_log_range = 5  # as providers cap eth_getLogs
    worker(migrated_url, seed, rpc_url=proxy.url).run_cycle()
    w3 = node.web3()
    assert table_counts(migrated_url)["evm_transactions"] == len(
        touching(w3, {w.address for w in seed.tracked}, w3.eth.block_number - CONFIRMATIONS)
    )


# --- under the manager ------------------------------------------------------------------------------


def test_ethereum_and_base_are_healthy_under_the_manager(
    boot_manager: Any, ethereum: tuple[AnvilNode, ChainSeed], base: tuple[AnvilNode, ChainSeed]
) -> None:
    eth_node, eth_seed = ethereum
    _, base_seed = base
    common = {"module": "workers.evm", "interval_ms": 500, "heartbeat_interval_ms": 200}
    m = boot_manager(
        workers={
            "ethereum": {**common, **config(eth_seed)},
            "base": {**common, **config(base_seed), "ens_rpc_url": eth_node.url},
        }
    )
    for name in ("ethereum", "base"):
        status = m.wait_worker(name, lambda w: w["healthy"] and w["itemsProcessed"] > 0, timeout=30)
        assert status["lastError"] is None and status["state"] == "running"
    assert m.sql("SELECT chain, count(*) FROM evm_nfts GROUP BY chain ORDER BY chain") == [
        ("base", len(base_seed.nft.tokens)),
        ("ethereum", len(eth_seed.nft.tokens)),
    ]
