-- Named queries of the chain workers (workers/evm.py, workers/solana.py); tables in 0004_chains.sql.
-- Each block: `-- name: <name>`, a description line, then the statement.

-- ---- wallets ------------------------------------------------------------------------------------

-- name: seed_wallet
-- Adds a wallet from the worker's config; a configured label replaces the stored one.
INSERT INTO wallets (chain, address, label, source)
VALUES (%(chain)s, %(address)s, %(label)s, 'config')
ON CONFLICT (chain, address) DO UPDATE SET label = EXCLUDED.label, updated_at = now()
WHERE EXCLUDED.label <> '' AND wallets.label IS DISTINCT FROM EXCLUDED.label;

-- name: active_wallets
-- The wallets a worker tracks on its chain (config-seeded and hand-added), oldest first.
SELECT address, label, history_block FROM wallets WHERE chain = %s AND active ORDER BY added_at, address;

-- name: normalise_wallet_address
-- Rewrites a hand-added EVM address in its EIP-55 form (unless that row exists too).
UPDATE wallets SET address = %(fixed)s, updated_at = now()
WHERE chain = %(chain)s AND address = %(raw)s
  AND NOT EXISTS (SELECT 1 FROM wallets WHERE chain = %(chain)s AND address = %(fixed)s);

-- name: set_history_block
-- Records that the wallets' history is stored up to a block (in the transaction that stored it).
UPDATE wallets SET history_block = %(block)s
WHERE chain = %(chain)s AND address = ANY(%(wallets)s) AND (history_block IS NULL OR history_block < %(block)s);

-- name: rewind_wallet_history
-- After a reorg: the wallets' history ends before the first block read again.
UPDATE wallets SET history_block = %(from_block)s - 1
WHERE chain = %(chain)s AND history_block >= %(from_block)s;

-- ---- EVM balances and tokens ----------------------------------------------------------------------

-- name: upsert_native_balance
-- A wallet's ETH balance read at a block; never moves back to an older block.
INSERT INTO evm_native_balances (chain, address, balance_wei, block_number)
VALUES (%(chain)s, %(address)s, %(balance)s, %(block)s)
ON CONFLICT (chain, address) DO UPDATE SET
  balance_wei = EXCLUDED.balance_wei,
  block_number = EXCLUDED.block_number,
  changed_at = CASE WHEN evm_native_balances.balance_wei = EXCLUDED.balance_wei
                    THEN evm_native_balances.changed_at ELSE now() END,
  updated_at = now()
WHERE evm_native_balances.block_number <= EXCLUDED.block_number;

-- name: upsert_token_balances
-- A wallet's ERC-20 balances (base units, parallel arrays) read at a block; never back to an older block.
INSERT INTO evm_token_balances (chain, wallet, token, balance, block_number)
SELECT %(chain)s, %(wallet)s, t.token, t.balance, %(block)s
FROM unnest(%(tokens)s::text[], %(balances)s::numeric[]) AS t(token, balance)
ON CONFLICT (chain, wallet, token) DO UPDATE SET
  balance = EXCLUDED.balance,
  block_number = EXCLUDED.block_number,
  changed_at = CASE WHEN evm_token_balances.balance = EXCLUDED.balance
                    THEN evm_token_balances.changed_at ELSE now() END,
  updated_at = now()
WHERE evm_token_balances.block_number <= EXCLUDED.block_number;

-- name: fresh_tokens
-- Token contracts whose metadata was read recently enough (not read again this cycle).
SELECT address FROM evm_tokens
WHERE chain = %(chain)s AND fetched_at > now() - make_interval(secs => %(max_age_s)s);

-- name: unknown_nft_contracts
-- ERC-721 contracts seen in Transfer logs whose name and symbol were never read.
SELECT DISTINCT n.contract FROM evm_nfts n
WHERE n.chain = %s AND NOT EXISTS (SELECT 1 FROM evm_tokens t WHERE t.chain = n.chain AND t.address = n.contract);

-- name: upsert_token
-- Token metadata read from the contract (name, symbol, decimals).
INSERT INTO evm_tokens (chain, address, standard, name, symbol, decimals)
VALUES (%(chain)s, %(address)s, %(standard)s, %(name)s, %(symbol)s, %(decimals)s)
ON CONFLICT (chain, address) DO UPDATE SET
  standard = EXCLUDED.standard, name = EXCLUDED.name, symbol = EXCLUDED.symbol,
  decimals = EXCLUDED.decimals, fetched_at = now();

-- ---- EVM history --------------------------------------------------------------------------------

-- name: upsert_transaction
-- A confirmed transaction touching a tracked wallet, with its receipt's outcome.
INSERT INTO evm_transactions (chain, hash, block_number, block_hash, block_time, tx_index, from_address,
                              to_address, value_wei, nonce, method_id, status, gas_used,
                              effective_gas_price, fee_wei, contract_address)
VALUES (%(chain)s, %(hash)s, %(block_number)s, %(block_hash)s, to_timestamp(%(block_time)s), %(tx_index)s,
        %(from_address)s, %(to_address)s, %(value_wei)s, %(nonce)s, %(method_id)s, %(status)s, %(gas_used)s,
        %(effective_gas_price)s, %(fee_wei)s, %(contract_address)s)
ON CONFLICT (chain, hash) DO UPDATE SET
  block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash, block_time = EXCLUDED.block_time,
  tx_index = EXCLUDED.tx_index, status = EXCLUDED.status, gas_used = EXCLUDED.gas_used,
  effective_gas_price = EXCLUDED.effective_gas_price, fee_wei = EXCLUDED.fee_wei
WHERE (evm_transactions.block_hash, evm_transactions.status) IS DISTINCT FROM (EXCLUDED.block_hash, EXCLUDED.status);

-- name: link_wallet_transaction
-- Records that a transaction touches a wallet, and how.
INSERT INTO evm_wallet_transactions (chain, wallet, tx_hash, block_number, direction)
VALUES (%(chain)s, %(wallet)s, %(tx_hash)s, %(block_number)s, %(direction)s)
ON CONFLICT (chain, wallet, tx_hash) DO UPDATE SET
  block_number = EXCLUDED.block_number, direction = EXCLUDED.direction
WHERE (evm_wallet_transactions.block_number, evm_wallet_transactions.direction)
      IS DISTINCT FROM (EXCLUDED.block_number, EXCLUDED.direction);

-- name: insert_transfer
-- One Transfer log (ERC-20 amount or ERC-721 token id); a replayed log is ignored.
INSERT INTO evm_transfers (chain, tx_hash, log_index, block_number, contract, standard, from_address,
                           to_address, amount, token_id)
VALUES (%(chain)s, %(tx_hash)s, %(log_index)s, %(block_number)s, %(contract)s, %(standard)s,
        %(from_address)s, %(to_address)s, %(amount)s, %(token_id)s)
ON CONFLICT (chain, tx_hash, log_index) DO NOTHING;

-- name: move_nft
-- Applies an ERC-721 Transfer to the ownership table: only a newer transfer changes the owner.
INSERT INTO evm_nfts (chain, contract, token_id, owner, block_number, log_index, tx_hash)
VALUES (%(chain)s, %(contract)s, %(token_id)s, %(to_address)s, %(block_number)s, %(log_index)s, %(tx_hash)s)
ON CONFLICT (chain, contract, token_id) DO UPDATE SET
  owner = EXCLUDED.owner, block_number = EXCLUDED.block_number, log_index = EXCLUDED.log_index,
  tx_hash = EXCLUDED.tx_hash, updated_at = now()
WHERE (evm_nfts.block_number, evm_nfts.log_index) < (EXCLUDED.block_number, EXCLUDED.log_index);

-- name: nfts_without_uri
-- NFTs held by tracked wallets whose tokenURI was never read.
SELECT n.contract, n.token_id FROM evm_nfts n
JOIN wallets w ON w.chain = n.chain AND w.address = n.owner AND w.active
WHERE n.chain = %s AND n.token_uri IS NULL
ORDER BY n.contract, n.token_id LIMIT %s;

-- name: set_nft_uri
-- Stores a token's URI ('' when the contract has none, so it is not asked again).
UPDATE evm_nfts SET token_uri = %(uri)s
WHERE chain = %(chain)s AND contract = %(contract)s AND token_id = %(token_id)s;

-- name: rewind_nft_owners
-- After a reorg below the confirmation depth: owners set from rewound blocks fall back to the newest
-- transfer before them (tokens with none are deleted by `forget_rewound_nfts`).
WITH latest AS (
  SELECT DISTINCT ON (t.contract, t.token_id) t.contract, t.token_id, t.to_address, t.block_number,
         t.log_index, t.tx_hash
  FROM evm_transfers t
  JOIN evm_nfts n ON n.chain = t.chain AND n.contract = t.contract AND n.token_id = t.token_id
  WHERE t.chain = %(chain)s AND t.standard = 'erc721' AND n.block_number >= %(from_block)s
    AND t.block_number < %(from_block)s
  ORDER BY t.contract, t.token_id, t.block_number DESC, t.log_index DESC
)
UPDATE evm_nfts n SET owner = latest.to_address, block_number = latest.block_number,
  log_index = latest.log_index, tx_hash = latest.tx_hash, updated_at = now()
FROM latest
WHERE n.chain = %(chain)s AND n.contract = latest.contract AND n.token_id = latest.token_id;

-- name: forget_rewound_nfts
-- After a reorg: NFT owners known only from rewound blocks (re-read when the blocks are scanned again).
DELETE FROM evm_nfts WHERE chain = %(chain)s AND block_number >= %(from_block)s;

-- name: forget_rewound_transfers
-- After a reorg: Transfer logs from rewound blocks.
DELETE FROM evm_transfers WHERE chain = %(chain)s AND block_number >= %(from_block)s;

-- name: forget_rewound_links
-- After a reorg: wallet links of transactions from rewound blocks.
DELETE FROM evm_wallet_transactions WHERE chain = %(chain)s AND block_number >= %(from_block)s;

-- name: forget_rewound_transactions
-- After a reorg: transactions from rewound blocks.
DELETE FROM evm_transactions WHERE chain = %(chain)s AND block_number >= %(from_block)s;

-- ---- ENS ----------------------------------------------------------------------------------------

-- name: ens_due
-- Tracked wallets of a chain whose ENS name was never checked, or not for `max_age_s`.
SELECT w.address FROM wallets w
LEFT JOIN ens_names e ON e.address = w.address
WHERE w.chain = %(chain)s AND w.active
  AND (e.address IS NULL OR e.checked_at < now() - make_interval(secs => %(max_age_s)s))
ORDER BY e.checked_at NULLS FIRST, w.address
LIMIT %(limit)s;

-- name: upsert_ens_name
-- A forward-verified ENS name (or NULL: none) for an address.
INSERT INTO ens_names (address, name) VALUES (%(address)s, %(name)s)
ON CONFLICT (address) DO UPDATE SET
  name = EXCLUDED.name,
  checked_at = now(),
  changed_at = CASE WHEN ens_names.name IS NOT DISTINCT FROM EXCLUDED.name THEN ens_names.changed_at ELSE now() END;

-- ---- Solana ---------------------------------------------------------------------------------------

-- name: upsert_sol_balance
-- A wallet's SOL balance (lamports) at a slot; never moves back to an older slot.
INSERT INTO solana_balances (address, lamports, slot) VALUES (%(address)s, %(lamports)s, %(slot)s)
ON CONFLICT (address) DO UPDATE SET
  lamports = EXCLUDED.lamports,
  slot = EXCLUDED.slot,
  changed_at = CASE WHEN solana_balances.lamports = EXCLUDED.lamports THEN solana_balances.changed_at ELSE now() END,
  updated_at = now()
WHERE solana_balances.slot <= EXCLUDED.slot;

-- name: upsert_spl_balance
-- One SPL token account of a wallet at a slot (both token programs).
INSERT INTO solana_token_balances (token_account, owner, mint, program, amount, decimals, slot)
VALUES (%(token_account)s, %(owner)s, %(mint)s, %(program)s, %(amount)s, %(decimals)s, %(slot)s)
ON CONFLICT (token_account) DO UPDATE SET
  owner = EXCLUDED.owner, mint = EXCLUDED.mint, program = EXCLUDED.program, amount = EXCLUDED.amount,
  decimals = EXCLUDED.decimals, slot = EXCLUDED.slot,
  changed_at = CASE WHEN (solana_token_balances.amount, solana_token_balances.owner)
                         = (EXCLUDED.amount, EXCLUDED.owner)
                    THEN solana_token_balances.changed_at ELSE now() END,
  updated_at = now()
WHERE solana_token_balances.slot <= EXCLUDED.slot;

-- name: drop_spl_accounts_not_held
-- Token accounts a wallet no longer owns (closed or handed over), as of a slot.
DELETE FROM solana_token_balances
WHERE owner = %(owner)s AND slot <= %(slot)s AND NOT (token_account = ANY(%(held)s));

-- name: token_accounts_to_follow
-- A wallet's token accounts whose signatures to poll: never polled, amount or owner changed since
-- the last poll (an incoming transfer lists under the account only), or not polled for `sweep_s`.
SELECT b.token_account FROM solana_token_balances b
LEFT JOIN sync_cursors c ON c.worker_name = %(worker)s AND c.cursor_key = 'signatures:' || b.token_account
WHERE b.owner = %(owner)s
  AND (c.cursor_key IS NULL OR b.changed_at >= c.updated_at
       OR c.updated_at < clock_timestamp() - make_interval(secs => %(sweep_s)s))
ORDER BY b.token_account;

-- name: nft_mints_without_metadata
-- NFT mints (amount 1, 0 decimals) held by tracked wallets with no or stale Metaplex metadata.
SELECT DISTINCT b.mint FROM solana_token_balances b
JOIN wallets w ON w.chain = %(chain)s AND w.address = b.owner AND w.active
LEFT JOIN solana_nft_metadata m ON m.mint = b.mint
WHERE b.amount = 1 AND b.decimals = 0
  AND (m.mint IS NULL OR m.fetched_at < now() - make_interval(secs => %(max_age_s)s))
ORDER BY b.mint LIMIT %(limit)s;

-- name: upsert_nft_metadata
-- Decoded Metaplex metadata of one mint (name NULL: no metadata account).
INSERT INTO solana_nft_metadata (mint, metadata_address, name, symbol, uri, seller_fee_basis_points,
                                 update_authority, token_standard, is_mutable, creators)
VALUES (%(mint)s, %(metadata_address)s, %(name)s, %(symbol)s, %(uri)s, %(seller_fee_basis_points)s,
        %(update_authority)s, %(token_standard)s, %(is_mutable)s, %(creators)s)
ON CONFLICT (mint) DO UPDATE SET
  metadata_address = EXCLUDED.metadata_address, name = EXCLUDED.name, symbol = EXCLUDED.symbol,
  uri = EXCLUDED.uri, seller_fee_basis_points = EXCLUDED.seller_fee_basis_points,
  update_authority = EXCLUDED.update_authority, token_standard = EXCLUDED.token_standard,
  is_mutable = EXCLUDED.is_mutable, creators = EXCLUDED.creators, fetched_at = now();

-- name: upsert_sol_transaction
-- One transaction of a tracked wallet or of one of its token accounts.
INSERT INTO solana_transactions (signature, slot, block_time, succeeded, err, fee_lamports, version,
                                 fee_payer, program_ids)
VALUES (%(signature)s, %(slot)s, to_timestamp(%(block_time)s), %(succeeded)s, %(err)s, %(fee)s,
        %(version)s, %(fee_payer)s, %(program_ids)s)
ON CONFLICT (signature) DO NOTHING;

-- name: link_sol_transaction
-- What a transaction did to one tracked wallet (SOL and token changes), found via `via`.
INSERT INTO solana_wallet_transactions (wallet, signature, via, slot, lamports_delta, token_deltas)
VALUES (%(wallet)s, %(signature)s, %(via)s, %(slot)s, %(lamports_delta)s, %(token_deltas)s)
ON CONFLICT (wallet, signature) DO NOTHING;
