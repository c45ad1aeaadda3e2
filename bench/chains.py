"""Chain workers: RPC calls per cycle and wallet-cycle time for 100 wallets x 20 tokens.

EVM: anvil (chain 1) with 20 ERC-20 contracts and 100 wallets holding some of them, Multicall3 at
its canonical address, and `devnet.rpc_proxy` between the worker and the node counting what a
provider would see (HTTP requests, and JSON-RPC calls with each element of a batch counted). The
EVM worker runs its real `run_cycle()` against a real Postgres in three read modes:

- naive: one request per read (what "one call per wallet per token" costs: the baseline);
- batch: JSON-RPC batches of 100 calls;
- multicall: Multicall3 `aggregate3`, 500 reads per eth_call (the default where Multicall3 exists).

`cold` is the first cycle (token metadata, balances, and the whole history: every block scanned);
`steady` is a cycle with nothing new on chain (balances of every wallet for every token);
`+activity` follows 10 new transfers. Solana: the stand-in with 100 wallets x 20 SPL tokens.

Env: BENCH_WALLETS (100), BENCH_TOKENS (20), BENCH_CYCLES (7).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from web3 import Web3

from bench.stats import table
from devnet import chains
from devnet.rpc_proxy import RpcProxy
from devnet.solana_ledger import LAMPORTS_PER_SOL, seeded_ledger
from devnet.solana_rpc import SolanaRpcServer
from sql import apply_migrations
from tests.support.postgres import fresh_database, postgres_server
from workers.evm import EvmWorker
from workers.solana import SolanaWorker

WALLETS = int(os.environ.get("BENCH_WALLETS", "100"))
TOKENS = int(os.environ.get("BENCH_TOKENS", "20"))
CYCLES = int(os.environ.get("BENCH_CYCLES", "7"))


def bench_wallets(n: int) -> list[str]:
    return [Web3.to_checksum_address(Web3.keccak(text=f"bench wallet {i}")[-20:]) for i in range(n)]


def evm_chain() -> tuple[chains.AnvilNode, list[str], list[str]]:
    """anvil with TOKENS tokens; every wallet holds every 3rd token (the rest read as 0 all the same)."""
    node = chains.start_anvil(chains.ETHEREUM_CHAIN_ID)
    w3 = node.web3()
    deployer = w3.eth.accounts[0]
    chains.install_multicall3(w3)
    wallets = bench_wallets(WALLETS)
    tokens = [chains.deploy(w3, "DevToken", f"Bench {i}", f"B{i}", 18, sender=deployer).address for i in range(TOKENS)]
    for i, wallet in enumerate(wallets):
        chains.send_eth(w3, deployer, wallet, 10**15 + i)
        for j, token in enumerate(tokens):
            if (i + j) % 3 == 0:
                chains.mint_tokens(w3, token, wallet, 10**18 * (i + 1))
    return node, wallets, tokens


def measure_evm(
    mode: str, url: str, node: chains.AnvilNode, wallets: list[str], tokens: list[str]
) -> list[list[object]]:
    with RpcProxy(node.url) as proxy:
        worker = EvmWorker(
            name="ethereum",
            database_url=url,
            config={
                "rpc_url": proxy.url,
                "chain_id": 1,
                "confirmations": 0,
                "start_block": 0,
                "wallets": wallets,
                "tokens": tokens,
                "multicall": mode,
                "max_block_range": 1000,
                "ens": False,
                "rpc_timeout_s": 30,
            },
        )
        worker.validate()
        rows: list[list[object]] = []

        def cycle(label: str, runs: int) -> None:
            times, calls, posts = [], [], []
            for _ in range(runs):
                proxy.reset_counts()
                started = time.perf_counter()
                worker.run_cycle()
                times.append(time.perf_counter() - started)
                calls.append(proxy.calls)
                posts.append(proxy.http_posts)
            median = statistics.median(times)
            rows.append(
                [
                    mode,
                    label,
                    statistics.median(calls),
                    statistics.median(posts),
                    f"{median * 1000:.0f}",
                    f"{median * 1000 / len(wallets):.2f}",
                ]
            )

        cycle("cold", 1)
        cycle("steady", CYCLES)
        w3 = node.web3()
        snapshot = node.rpc("evm_snapshot")
        for i in range(10):
            chains.transfer_token(w3, tokens[0], wallets[3 * i], wallets[3 * i + 1], 1)
        cycle("+activity", 1)
        node.rpc("evm_revert", [snapshot])
        worker.close()
    return rows


def solana_ledger() -> tuple[Any, list[str]]:
    ledger = seeded_ledger()
    mints = [ledger.create_mint(f"bench {j}", symbol=f"S{j}", name=f"Bench {j}", decimals=6) for j in range(TOKENS)]
    labels = [f"bench{i}" for i in range(WALLETS)]
    for label in labels:
        ledger.add_wallet(label, tracked=True, lamports=LAMPORTS_PER_SOL)
    for i, label in enumerate(labels):
        for j, mint in enumerate(mints):
            if (i + j) % 3 == 0:
                ledger.mint_to(mint.address, label, 10**6)
    return ledger, [str(ledger.wallet(label).pubkey) for label in labels]


def measure_solana(url: str, follow: bool) -> list[list[object]]:
    ledger, wallets = solana_ledger()
    rows: list[list[object]] = []
    with SolanaRpcServer(ledger=ledger) as server:
        worker = SolanaWorker(
            name="solana",
            database_url=url,
            config={
                "rpc_url": server.url,
                "wallets": wallets,
                "follow_token_accounts": follow,
                "rpc_timeout_s": 30,
            },
        )
        for label, runs in (("cold", 1), ("steady", CYCLES)):
            times, calls = [], []
            for _ in range(runs):
                before = server.request_count()
                started = time.perf_counter()
                worker.run_cycle()
                times.append(time.perf_counter() - started)
                calls.append(server.request_count() - before)
            median = statistics.median(times)
            rows.append(
                [
                    f"solana{'' if follow else ' (wallets only)'}",
                    label,
                    statistics.median(calls),
                    statistics.median(calls),
                    f"{median * 1000:.0f}",
                    f"{median * 1000 / len(wallets):.2f}",
                ]
            )
    return rows


def main() -> None:
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp, postgres_server(Path(tmp) / "pg") as admin_url:
        print(f"seeding anvil: {WALLETS} wallets x {TOKENS} tokens ...", file=sys.stderr, flush=True)
        node, wallets, tokens = evm_chain()
        try:
            for mode in ("naive", "batch", "multicall"):
                print(f"evm, {mode} reads ...", file=sys.stderr, flush=True)
                with fresh_database(admin_url) as url:
                    with psycopg.connect(url) as conn:
                        apply_migrations(conn)
                    rows += measure_evm(mode, url, node, wallets, tokens)
        finally:
            node.stop()
        for follow in (True, False):
            print(f"solana, follow_token_accounts={follow} ...", file=sys.stderr, flush=True)
            with fresh_database(admin_url) as url:
                with psycopg.connect(url) as conn:
                    apply_migrations(conn)
                rows += measure_solana(url, follow)
    print(
        f"{WALLETS} wallets x {TOKENS} tokens; calls = JSON-RPC calls (batch elements count), "
        "requests = HTTP requests; medians"
    )
    print(table(rows, ["reads", "cycle", "RPC calls", "HTTP requests", "cycle ms", "ms per wallet"]))


if __name__ == "__main__":
    main()
