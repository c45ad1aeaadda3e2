-- Named queries of GET /api/profiles/{platform}/{id} (manager/http/profiles.py) and GET /api/trending
-- (manager/http/trending.py). Each block: `-- name: <name>`, a description line, then the statement.

-- name: profile
-- One stored profile by platform and external id (fid, reddit username).
SELECT id, platform, external_id, username, display_name, bio, avatar_url, url,
       karma, account_created_at, first_seen_at, updated_at
FROM profiles WHERE platform = %(platform)s AND external_id = %(external_id)s;

-- name: profile_wallets
-- The wallets linked to a profile with their latest native balance (EVM wei or Solana lamports,
-- as text: exact) and verified ENS name.
SELECT w.chain, w.address, w.label, w.source, w.active, w.added_at,
       nb.balance_wei::text AS balance_wei, nb.block_number,
       sb.lamports::text AS lamports, sb.slot, e.name AS ens_name
FROM wallets w
LEFT JOIN evm_native_balances nb ON nb.chain = w.chain AND nb.address = w.address
LEFT JOIN solana_balances sb ON sb.address = w.address
LEFT JOIN ens_names e ON e.address = w.address
WHERE w.profile_id = %(profile_id)s
ORDER BY w.chain, w.added_at, w.address;

-- name: profile_tokens
-- Non-zero token balances of a profile's wallets: ERC-20 (decimals applied) and SPL.
SELECT h.chain, h.wallet, h.token, h.symbol, h.balance::text AS balance, h.amount::text AS amount, h.block_number
FROM evm_token_holdings h JOIN wallets w ON w.chain = h.chain AND w.address = h.wallet
WHERE w.profile_id = %(profile_id)s AND h.balance > 0
UNION ALL
SELECT w.chain, t.owner, t.mint, NULL, t.amount::text, trim_scale(t.amount * power(10::numeric, -t.decimals))::text, t.slot
FROM solana_token_balances t JOIN wallets w ON w.address = t.owner
WHERE w.profile_id = %(profile_id)s AND t.amount > 0
ORDER BY 1, 2, 3;

-- name: profile_nfts
-- NFTs (ERC-721) held by a profile's EVM wallets.
SELECT n.chain, n.owner AS wallet, n.contract, n.token_id::text AS token_id, n.token_uri
FROM evm_nfts n JOIN wallets w ON w.chain = n.chain AND w.address = n.owner
WHERE w.profile_id = %(profile_id)s
ORDER BY 1, 2, 3, n.token_id
LIMIT 500;

-- name: trending
-- Tags of one kind by how many posts used them in the window ending now, with the count of the
-- window before it (velocity). From the search worker's post_tags (deleted posts' tags are cleared).
WITH counts AS (
  SELECT tag,
         count(*) FILTER (WHERE created_at > now() - %(window)s::interval) AS posts,
         count(*) FILTER (WHERE created_at <= now() - %(window)s::interval) AS previous
  FROM post_tags
  WHERE kind = %(kind)s AND created_at > now() - 2 * %(window)s::interval AND created_at <= now()
  GROUP BY tag
)
SELECT tag, posts, previous FROM counts WHERE posts > 0
ORDER BY posts DESC, posts - previous DESC, tag
LIMIT %(limit)s;
