-- Chain data: the wallets the ethereum, base and solana workers track, and what they read about them.
-- Amounts are NUMERIC in the chain's smallest unit (wei, token base units, lamports): never float.
-- Every table has a natural unique key and the workers only upsert, so a re-run writes no duplicates.
-- `chain` is the worker's chain name (`ethereum`, `base`, `solana`, or a worker's `chain` setting).

-- Tracked wallets. Workers seed them from their config (`wallets`) or the `<worker>_wallets`
-- setting; operators may add rows by hand (source 'manual') or switch one off (active = false).
CREATE TABLE IF NOT EXISTS wallets (
  chain       text NOT NULL,
  address     text NOT NULL,               -- EIP-55 checksum for EVM chains, base-58 for Solana
  label       text NOT NULL DEFAULT '',
  source      text NOT NULL DEFAULT 'manual',
  active      boolean NOT NULL DEFAULT true,
  history_block bigint,                    -- EVM: history stored up to this block (NULL: not yet)
  added_at    timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain, address)
);

-- ---- EVM (Ethereum, BASE) ---------------------------------------------------------------------

-- Native balance (wei) as read at `block_number`; `changed_at` moves only when the value changes.
CREATE TABLE IF NOT EXISTS evm_native_balances (
  chain         text NOT NULL,
  address       text NOT NULL,
  balance_wei   numeric(78, 0) NOT NULL,
  block_number  bigint NOT NULL,
  changed_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain, address)
);

-- Token contracts: metadata read from the contracts once and cached (ERC-20 and ERC-721).
CREATE TABLE IF NOT EXISTS evm_tokens (
  chain       text NOT NULL,
  address     text NOT NULL,
  standard    text NOT NULL CHECK (standard IN ('erc20', 'erc721')),
  name        text,
  symbol      text,
  decimals    smallint,                     -- NULL for ERC-721 and for tokens without decimals()
  fetched_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain, address)
);

-- ERC-20 balances in base units, as read at `block_number`.
CREATE TABLE IF NOT EXISTS evm_token_balances (
  chain         text NOT NULL,
  wallet        text NOT NULL,
  token         text NOT NULL,
  balance       numeric(78, 0) NOT NULL,
  block_number  bigint NOT NULL,
  changed_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain, wallet, token)
);

-- Balances with the token's decimals applied (exact: NUMERIC times a power of ten).
CREATE OR REPLACE VIEW evm_token_holdings AS
SELECT b.chain, b.wallet, b.token, t.symbol, t.decimals, b.balance,
       CASE WHEN t.decimals IS NULL THEN NULL ELSE trim_scale(b.balance * power(10::numeric, -t.decimals)) END AS amount,
       b.block_number, b.changed_at
FROM evm_token_balances b
LEFT JOIN evm_tokens t ON t.chain = b.chain AND t.address = b.token;

-- Transactions that touch a tracked wallet (sender, recipient, or a party of a Transfer log),
-- from confirmed blocks only (`confirmations` deep), with their receipt's outcome.
CREATE TABLE IF NOT EXISTS evm_transactions (
  chain                text NOT NULL,
  hash                 text NOT NULL,
  block_number         bigint NOT NULL,
  block_hash           text NOT NULL,
  block_time           timestamptz NOT NULL,
  tx_index             integer NOT NULL,
  from_address         text NOT NULL,
  to_address           text,                 -- NULL for contract creation
  value_wei            numeric(78, 0) NOT NULL,
  nonce                bigint NOT NULL,
  method_id            text,                 -- first 4 bytes of the input, 0x-hex; NULL for plain transfers
  status               smallint,             -- 1 success, 0 reverted
  gas_used             numeric(78, 0),
  effective_gas_price  numeric(78, 0),
  fee_wei              numeric(78, 0),
  contract_address     text,
  PRIMARY KEY (chain, hash)
);
CREATE INDEX IF NOT EXISTS evm_transactions_block_idx ON evm_transactions (chain, block_number);

-- Which wallet a transaction touches, and how: 'out', 'in', 'self' (native value or sender) or 'log'.
CREATE TABLE IF NOT EXISTS evm_wallet_transactions (
  chain         text NOT NULL,
  wallet        text NOT NULL,
  tx_hash       text NOT NULL,
  block_number  bigint NOT NULL,
  direction     text NOT NULL,
  PRIMARY KEY (chain, wallet, tx_hash)
);
CREATE INDEX IF NOT EXISTS evm_wallet_transactions_wallet_idx ON evm_wallet_transactions (chain, wallet, block_number DESC);

-- Transfer logs: every ERC-20/ERC-721 transfer from or to a tracked wallet, and every transfer of a
-- configured NFT contract. ERC-20 carries `amount`, ERC-721 `token_id`.
CREATE TABLE IF NOT EXISTS evm_transfers (
  chain         text NOT NULL,
  tx_hash       text NOT NULL,
  log_index     integer NOT NULL,
  block_number  bigint NOT NULL,
  contract      text NOT NULL,
  standard      text NOT NULL CHECK (standard IN ('erc20', 'erc721')),
  from_address  text NOT NULL,
  to_address    text NOT NULL,
  amount        numeric(78, 0),
  token_id      numeric(78, 0),
  PRIMARY KEY (chain, tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS evm_transfers_block_idx ON evm_transfers (chain, block_number);

-- Current owner of each ERC-721 token seen in a Transfer log: the newest transfer wins, compared by
-- (block_number, log_index), so replays and out-of-order ranges cannot move ownership backwards.
CREATE TABLE IF NOT EXISTS evm_nfts (
  chain         text NOT NULL,
  contract      text NOT NULL,
  token_id      numeric(78, 0) NOT NULL,
  owner         text NOT NULL,
  block_number  bigint NOT NULL,
  log_index     integer NOT NULL,
  tx_hash       text NOT NULL,
  token_uri     text,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain, contract, token_id)
);
CREATE INDEX IF NOT EXISTS evm_nfts_owner_idx ON evm_nfts (chain, owner);

-- ENS reverse names (mainnet ENS): `name` is set only when the forward lookup of the reverse
-- record's name resolves back to the address; NULL means checked, no verified name.
CREATE TABLE IF NOT EXISTS ens_names (
  address     text PRIMARY KEY,
  name        text,
  checked_at  timestamptz NOT NULL DEFAULT now(),
  changed_at  timestamptz NOT NULL DEFAULT now()
);

-- ---- Solana -----------------------------------------------------------------------------------

-- SOL balance (lamports) at `slot`.
CREATE TABLE IF NOT EXISTS solana_balances (
  address     text PRIMARY KEY,
  lamports    numeric(20, 0) NOT NULL,
  slot        bigint NOT NULL,
  changed_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- SPL token accounts owned by tracked wallets (classic Token and Token-2022 programs).
-- Accounts a wallet no longer owns are deleted; empty accounts stay with amount 0.
CREATE TABLE IF NOT EXISTS solana_token_balances (
  token_account  text PRIMARY KEY,
  owner          text NOT NULL,
  mint           text NOT NULL,
  program        text NOT NULL,
  amount         numeric(20, 0) NOT NULL,   -- base units (u64)
  decimals       smallint NOT NULL,
  slot           bigint NOT NULL,
  changed_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS solana_token_balances_owner_idx ON solana_token_balances (owner);

-- Transactions of tracked wallets and of their token accounts (incremental by signature cursor).
CREATE TABLE IF NOT EXISTS solana_transactions (
  signature     text PRIMARY KEY,
  slot          bigint NOT NULL,
  block_time    timestamptz,
  succeeded     boolean NOT NULL,
  err           jsonb,
  fee_lamports  numeric(20, 0) NOT NULL,
  version       text NOT NULL,               -- 'legacy' or '0'
  fee_payer     text NOT NULL,
  program_ids   text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS solana_transactions_slot_idx ON solana_transactions (slot);

-- Which wallet a transaction touches (directly or through one of its token accounts, `via`),
-- and what it did to the wallet: SOL change in lamports and token changes by mint (base units).
CREATE TABLE IF NOT EXISTS solana_wallet_transactions (
  wallet          text NOT NULL,
  signature       text NOT NULL,
  via             text NOT NULL,
  slot            bigint NOT NULL,
  lamports_delta  numeric(21, 0),
  token_deltas    jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (wallet, signature)
);
CREATE INDEX IF NOT EXISTS solana_wallet_transactions_wallet_idx ON solana_wallet_transactions (wallet, slot DESC);

-- Metaplex metadata of NFT mints held by tracked wallets (decoded from the metadata PDA).
-- `metadata_address` without a name: the mint has no Metaplex metadata account.
CREATE TABLE IF NOT EXISTS solana_nft_metadata (
  mint                     text PRIMARY KEY,
  metadata_address         text NOT NULL,
  name                     text,
  symbol                   text,
  uri                      text,
  seller_fee_basis_points  integer,
  update_authority         text,
  token_standard           smallint,
  is_mutable               boolean,
  creators                 jsonb,
  fetched_at               timestamptz NOT NULL DEFAULT now()
);

-- NFTs held now: a token account with amount 1 and 0 decimals, with its metadata when known.
CREATE OR REPLACE VIEW solana_nft_holdings AS
SELECT b.owner, b.mint, b.token_account, m.name, m.symbol, m.uri, m.seller_fee_basis_points, b.slot
FROM solana_token_balances b
LEFT JOIN solana_nft_metadata m ON m.mint = b.mint
WHERE b.amount = 1 AND b.decimals = 0;
