"""The data tables of a fleet as comparable row sets: each table projected onto its natural key and
the columns that say what was synced, so two databases filled from the same upstream data compare
equal exactly when no row was lost or duplicated and none holds different content.

Left out of every projection: surrogate ids (each database numbers rows its own way; references
to them are replaced by the natural key of the row they point to), times of our own writing
(`updated_at`, `fetched_at`, ...), and the block or slot a balance was last read at (the chains go
on producing empty blocks, so two runs read the same balance at different heights). Left out as
whole tables: the manager's bookkeeping (heartbeats, cycles, events, leases), caches and work
queues, and `ai_topics`, whose clusters depend on the order posts arrive in.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg

POST = "(SELECT p.platform || ':' || p.external_id FROM external_posts p WHERE p.id = {col})"
PROFILE = "(SELECT p.platform || ':' || p.external_id FROM profiles p WHERE p.id = {col})"

PROJECTIONS: dict[str, str] = {
    "external_posts": "SELECT platform, external_id, author_external_id, author_name, title, body, url,"
    " parent_external_id, root_external_id, channel, mentions::text, embeds::text, created_at FROM external_posts",
    "profiles": "SELECT platform, external_id, username, display_name, bio, avatar_url, url FROM profiles",
    "follows": "SELECT platform, follower_id, target_id, created_at FROM follows",
    "reactions": "SELECT platform, actor_id, kind, target_external_id, created_at FROM reactions",
    "wallets": "SELECT chain, address, label, source, active, " + PROFILE.format(col="profile_id") + " FROM wallets",
    "evm_native_balances": "SELECT chain, address, balance_wei FROM evm_native_balances",
    "evm_tokens": "SELECT chain, address, standard, name, symbol, decimals FROM evm_tokens",
    "evm_token_balances": "SELECT chain, wallet, token, balance FROM evm_token_balances",
    "evm_transactions": "SELECT chain, hash, block_number, block_hash, block_time, tx_index, from_address,"
    " to_address, value_wei, nonce, method_id, status, gas_used, effective_gas_price, fee_wei, contract_address"
    " FROM evm_transactions",
    "evm_wallet_transactions": "SELECT chain, wallet, tx_hash, block_number, direction FROM evm_wallet_transactions",
    "evm_transfers": "SELECT chain, tx_hash, log_index, block_number, contract, standard, from_address, to_address,"
    " amount, token_id FROM evm_transfers",
    "evm_nfts": "SELECT chain, contract, token_id, owner, block_number, log_index, tx_hash, token_uri FROM evm_nfts",
    "ens_names": "SELECT address, name FROM ens_names",
    "solana_balances": "SELECT address, lamports FROM solana_balances",
    "solana_token_balances": "SELECT token_account, owner, mint, program, amount, decimals FROM solana_token_balances",
    "solana_transactions": "SELECT signature, slot, block_time, succeeded, err::text, fee_lamports, version,"
    " fee_payer, program_ids::text FROM solana_transactions",
    "solana_wallet_transactions": "SELECT wallet, signature, via, slot, lamports_delta, token_deltas::text"
    " FROM solana_wallet_transactions",
    "solana_nft_metadata": "SELECT mint, metadata_address, name, symbol, uri, seller_fee_basis_points,"
    " update_authority, token_standard, is_mutable, creators::text FROM solana_nft_metadata",
    "ai_posts": "SELECT " + POST.format(col="post_id") + ", content_hash, model, dims, md5(embedding::text),"
    " summary, sentiment, chat_model FROM ai_posts",
    "ai_profiles": "SELECT " + PROFILE.format(col="profile_id") + ", content_hash, model, dims,"
    " md5(embedding::text) FROM ai_profiles",
    "search_posts": "SELECT " + POST.format(col="post_id") + ", created_at, tsv::text FROM search_posts",
    "search_profiles": "SELECT " + PROFILE.format(col="profile_id") + ", tsv::text FROM search_profiles",
    "post_tags": "SELECT kind, tag, " + POST.format(col="post_id") + ", created_at FROM post_tags",
    "search_lexemes": "SELECT lexeme, ndoc, ntrigrams FROM search_lexemes",
    "search_lexeme_trigrams": "SELECT t.trigram, l.lexeme FROM search_lexeme_trigrams t"
    " JOIN search_lexemes l ON l.id = t.lexeme_id",
}

Snapshot = dict[str, Counter[tuple[Any, ...]]]


def snapshot(url: str) -> Snapshot:
    """Every data table's rows as a multiset (a duplicate shows as a count of 2)."""
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one consistent view
        return {table: Counter(conn.execute(query).fetchall()) for table, query in PROJECTIONS.items()}


def differences(expected: Snapshot, got: Snapshot, show: int = 3) -> list[str]:
    """What `got` misses, duplicates or holds extra, table by table, in words (empty: equal)."""
    out = []
    for table in PROJECTIONS:
        want, have = expected[table], got[table]
        if want == have:
            continue
        missing, extra = want - have, have - want
        out.append(
            f"{table}: {sum(want.values())} rows expected, {sum(have.values())} found;"
            f" missing {sum(missing.values())} e.g. {list(missing)[:show]};"
            f" extra or duplicated {sum(extra.values())} e.g. {list(extra)[:show]}"
        )
    return out


def row_count(tables: Snapshot) -> int:
    return sum(sum(rows.values()) for rows in tables.values())
