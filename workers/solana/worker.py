"""The Solana worker: SOL and SPL token balances, transaction history and Metaplex NFT metadata of
the tracked wallets (`wallets` rows with chain `solana`, seeded from the `wallets` setting).

Each cycle:

1. holdings — SOL balances through `getMultipleAccounts` (100 wallets a call), and every token
   account of each wallet under both token programs (classic SPL and Token-2022, `jsonParsed`);
   accounts a wallet no longer owns are dropped;
2. NFT metadata — for held NFTs (a token account with amount 1 and 0 decimals) whose mint has no
   or stale metadata: the Metaplex metadata PDAs, read 100 at a time and decoded;
3. history — per address (each wallet, and its token accounts, because transfers into an existing
   token account are listed under that account only): the signatures newer than the address's
   signature cursor, then those transactions (`maxSupportedTransactionVersion` 0). Rows and the
   cursor commit together; a transaction the node cannot serve yet stops the cursor there. A token
   account is polled when its balance changed since its last poll, and otherwise once per
   `token_account_sweep_s` (for transfers that leave the balance as it was).

solana-py 0.41 has only an async client: the RPC reads of each step run in `asyncio.run`, several
at once (`max_concurrency`), and the database writes stay synchronous like every other worker's.
Commitment `finalized` by default, so nothing stored is rolled back by a fork.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import httpx2
import psycopg
from psycopg.types.json import Jsonb
from pydantic import Field
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.models import TokenAccountOpts
from solders.errors import SerdeJSONError
from solders.pubkey import Pubkey
from solders.signature import Signature

from sql import query
from workers.base import CycleResult, Worker, describe
from workers.errors import NotConfigured, RateLimited, UpstreamError
from workers.pacing import retry_after_seconds
from workers.settings import WorkerSettings
from workers.solana.metaplex import MetadataError, decode_metadata, metadata_address

T = TypeVar("T")

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
TOKEN_PROGRAMS = (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)
MAX_ACCOUNTS_PER_CALL = 100  # getMultipleAccounts' limit
SIGNATURES_CURSOR = "signatures:{address}"


def q(name: str) -> str:
    return query(name, "chains.sql")


def pubkey(value: Any) -> Pubkey | None:
    try:
        return Pubkey.from_string(str(value).strip())
    except ValueError:
        return None


# ---- what the node told us ------------------------------------------------------------------------


@dataclass
class TokenAccount:
    address: str
    mint: str
    program: str
    amount: int
    decimals: int


@dataclass
class Holdings:
    wallet: str
    lamports: int
    slot: int
    accounts: list[TokenAccount] = field(default_factory=list)
    token_slot: int = 0


@dataclass
class AddressHistory:
    """New signatures of one address (newest first) and the wallet it belongs to."""

    address: str
    wallet: str
    signatures: list[str]
    cursor: str | None = None


class SolanaSettings(WorkerSettings):
    rpc_url: str | None = None
    chain: str | None = None  # the chain's name in the tables; default: the worker's name
    wallets: list[Any] = []  # [{address, label}] or plain base-58 addresses
    commitment: str = "finalized"  # processed | confirmed | finalized
    rpc_timeout_s: float = Field(default=10, gt=0)
    requests_per_second: float = Field(default=0, ge=0)  # 0: no pacing
    max_concurrency: int = Field(default=8, gt=0)  # RPC requests in flight at once
    retries: int = Field(default=2, ge=0)  # per request, for 5xx, timeouts, cut-off answers and node errors
    backfill_signatures: int = Field(default=1000, ge=0)  # per address on its first run
    signatures_page: int = Field(default=1000, gt=0, le=1000)
    follow_token_accounts: bool = True  # also poll token accounts (incoming SPL transfers list there)
    token_account_sweep_s: float = Field(
        default=3600, ge=0
    )  # ... every cycle if their balance changed, else this often
    metadata_refresh_s: float = Field(default=7 * 86400, ge=0)
    metadata_per_cycle: int = Field(default=500, ge=0)


class SolanaWorker(Worker[Any]):
    settings_model = SolanaSettings
    settings: SolanaSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limiter: asyncio.Semaphore | None = None

    @property
    def chain(self) -> str:
        return self.settings.chain or self.name

    def validate(self) -> None:
        if not self.settings.rpc_url:
            raise NotConfigured.missing(self.name, "rpc_url", "SOLANA_RPC_URL")

    # ---- RPC plumbing ------------------------------------------------------------------------------

    def _with_client(self, job: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run `job` with a fresh AsyncClient in its own event loop (the worker itself is synchronous)."""

        async def main() -> T:
            self._limiter = asyncio.Semaphore(self.settings.max_concurrency)
            async with AsyncClient(
                str(self.settings.rpc_url),
                commitment=Commitment(self.settings.commitment),
                timeout=self.settings.rpc_timeout_s,
                rate_limit=self.settings.requests_per_second,
            ) as client:
                return await job(client)

        return asyncio.run(main())

    async def _call(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        """One RPC request: retried when the failure may pass, 429 turned into `RateLimited`."""
        retries = self.settings.retries
        attempt = 0
        assert self._limiter is not None
        while True:
            try:
                async with self._limiter:
                    return await request()
            except SolanaRpcException as exc:
                cause = exc.__cause__
                if isinstance(cause, httpx2.HTTPStatusError) and cause.response.status_code == 429:
                    raise RateLimited(
                        f"{what}: HTTP 429 from the Solana node",
                        retry_after_seconds(cause.response.headers.get("Retry-After"), 1.0),
                    ) from None
                error = UpstreamError(f"{what}: {describe(cause) if cause else describe(exc)}")
                error.__cause__ = cause or exc  # keeps a connection failure recognisable (workers.blocked)
            except RPCException as exc:
                detail = exc.args[0] if exc.args else exc
                message = str(getattr(detail, "message", detail))
                if "rate limit" in message.lower() or "too many requests" in message.lower():
                    raise RateLimited(f"{what}: {message}", 1.0) from None
                error = UpstreamError(f"{what}: {message}")
            except SerdeJSONError as exc:  # a cut-off or garbled answer
                error = UpstreamError(f"{what}: unreadable answer ({exc})")
            if attempt >= retries:
                raise error
            await asyncio.sleep(0.2 * 2**attempt)
            attempt += 1

    # ---- the cycle ---------------------------------------------------------------------------------

    def run_cycle(self) -> CycleResult:
        total = CycleResult()
        wallets = self.sync_wallets()
        if not wallets:
            return total
        holdings = self._with_client(lambda client: self.read_holdings(client, wallets))
        total.add(self.write_holdings(holdings))
        # Slots between the oldest balance stored and the newest slot the node answered at this cycle.
        newest = max(max(h.slot, h.token_slot) for h in holdings) if holdings else None
        self.report_lag(None if newest is None else newest - min(h.slot for h in holdings), "slots")
        self.beat_if_due()
        if not self.stopping:
            self.sync_nft_metadata()
        if not self.stopping:
            total.add(self.sync_history(wallets))
        return total

    def sync_wallets(self) -> list[str]:
        """Seed the configured wallets into `wallets`; return every active Solana wallet."""
        seeds = []
        for entry in self.settings.wallets:
            raw, label = (entry.get("address"), entry.get("label") or "") if isinstance(entry, dict) else (entry, "")
            key = pubkey(raw)
            if key is None:
                self.record_error(f"wallets: {raw!r} is not a base-58 public key", "config wallets")
                continue
            seeds.append({"chain": self.chain, "address": str(key), "label": str(label)})
        with self.transaction() as tx:
            if seeds:
                with tx.cursor() as cur:
                    cur.executemany(q("seed_wallet"), seeds)
            rows = tx.execute(q("active_wallets"), (self.chain,)).fetchall()
        return [row[0] for row in rows if pubkey(row[0]) is not None]

    # ---- holdings ----------------------------------------------------------------------------------

    async def read_holdings(self, client: AsyncClient, wallets: Sequence[str]) -> list[Holdings]:
        keys = [Pubkey.from_string(w) for w in wallets]
        holdings: dict[str, Holdings] = {}
        for i in range(0, len(keys), MAX_ACCOUNTS_PER_CALL):
            chunk = keys[i : i + MAX_ACCOUNTS_PER_CALL]
            answer = await self._call("getMultipleAccounts", partial(client.get_multiple_accounts, chunk))
            for key, account in zip(chunk, answer.value, strict=True):
                holdings[str(key)] = Holdings(str(key), account.lamports if account else 0, answer.context.slot)

        async def token_accounts(key: Pubkey, program: Pubkey) -> tuple[str, int, list[TokenAccount]]:
            answer = await self._call(
                "getTokenAccountsByOwner",
                lambda: client.get_token_accounts_by_owner_json_parsed(key, TokenAccountOpts(program_id=program)),
            )
            found = []
            for entry in answer.value:
                parsed = getattr(entry.account.data, "parsed", None)
                info = parsed.get("info") if isinstance(parsed, dict) else None
                if not isinstance(info, dict) or "tokenAmount" not in info:
                    continue  # not a parsed token account: nothing to read
                amount = info["tokenAmount"]
                found.append(
                    TokenAccount(
                        str(entry.pubkey),
                        str(info["mint"]),
                        str(program),
                        int(amount["amount"]),
                        int(amount["decimals"]),
                    )
                )
            return str(key), answer.context.slot, found

        results = await asyncio.gather(*(token_accounts(k, p) for k in keys for p in TOKEN_PROGRAMS))
        for wallet, slot, accounts in results:
            holdings[wallet].accounts += accounts
            holdings[wallet].token_slot = max(holdings[wallet].token_slot, slot)
        return [holdings[w] for w in wallets]

    def write_holdings(self, holdings: Sequence[Holdings]) -> CycleResult:
        def write(item: Holdings, tx: psycopg.Connection[Any]) -> int:
            tx.execute(q("upsert_sol_balance"), {"address": item.wallet, "lamports": item.lamports, "slot": item.slot})
            if item.accounts:
                with tx.cursor() as cur:
                    cur.executemany(
                        q("upsert_spl_balance"),
                        [
                            {
                                "token_account": a.address,
                                "owner": item.wallet,
                                "mint": a.mint,
                                "program": a.program,
                                "amount": a.amount,
                                "decimals": a.decimals,
                                "slot": item.token_slot,
                            }
                            for a in item.accounts
                        ],
                    )
            tx.execute(
                q("drop_spl_accounts_not_held"),
                {
                    "owner": item.wallet,
                    "slot": item.token_slot,
                    "held": [a.address for a in item.accounts],
                },
            )
            return 1

        with self.transaction() as tx:
            result, _ = self.run_items(holdings, tx, write)
        return result

    # ---- NFT metadata ------------------------------------------------------------------------------

    def sync_nft_metadata(self) -> None:
        mints = [
            row[0]
            for row in self.db.execute(
                q("nft_mints_without_metadata"),
                {
                    "chain": self.chain,
                    "max_age_s": self.settings.metadata_refresh_s,
                    "limit": self.settings.metadata_per_cycle,
                },
            )
        ]
        if not mints:
            return
        pdas = [metadata_address(Pubkey.from_string(m)) for m in mints]

        async def read(client: AsyncClient) -> list[bytes | None]:
            out: list[bytes | None] = []
            for i in range(0, len(pdas), MAX_ACCOUNTS_PER_CALL):
                chunk = pdas[i : i + MAX_ACCOUNTS_PER_CALL]
                answer = await self._call("getMultipleAccounts", partial(client.get_multiple_accounts, chunk))
                out += [bytes(a.data) if a is not None else None for a in answer.value]
            return out

        accounts = self._with_client(read)

        def write(item: tuple[str, Pubkey, bytes | None], tx: psycopg.Connection[Any]) -> int:
            mint, pda, data = item
            row: dict[str, Any] = {
                "mint": mint,
                "metadata_address": str(pda),
                "name": None,
                "symbol": None,
                "uri": None,
                "seller_fee_basis_points": None,
                "update_authority": None,
                "token_standard": None,
                "is_mutable": None,
                "creators": None,
            }
            if data is not None:
                try:
                    meta = decode_metadata(data)
                except MetadataError as exc:
                    raise UpstreamError(f"metadata account {pda} of {mint}: {exc}") from exc
                if meta.mint != mint:
                    raise UpstreamError(f"metadata account {pda} names mint {meta.mint}, not {mint}")
                row.update(
                    name=meta.name,
                    symbol=meta.symbol,
                    uri=meta.uri,
                    seller_fee_basis_points=meta.seller_fee_basis_points,
                    update_authority=meta.update_authority,
                    token_standard=meta.token_standard,
                    is_mutable=meta.is_mutable,
                    creators=Jsonb(meta.creators),
                )
            tx.execute(q("upsert_nft_metadata"), row)
            return 1

        with self.transaction() as tx:
            self.run_items(list(zip(mints, pdas, accounts, strict=True)), tx, write)

    # ---- history -----------------------------------------------------------------------------------

    def sync_history(self, wallets: Sequence[str]) -> CycleResult:
        """New transactions of every wallet and (optionally) of its token accounts."""
        addresses: list[tuple[str, str]] = [(w, w) for w in wallets]
        if self.settings.follow_token_accounts:
            sweep_s = self.settings.token_account_sweep_s
            for wallet in wallets:
                follow = self.db.execute(
                    q("token_accounts_to_follow"), {"worker": self.name, "owner": wallet, "sweep_s": sweep_s}
                )
                addresses += [(row[0], wallet) for row in follow]
        cursors = {address: self.load_cursor(SIGNATURES_CURSOR.format(address=address)) for address, _ in addresses}

        async def fetch(client: AsyncClient) -> tuple[list[AddressHistory], dict[str, Any]]:
            histories = await asyncio.gather(
                *(self._new_signatures(client, address, wallet, cursors[address]) for address, wallet in addresses)
            )
            wanted = sorted({sig for h in histories for sig in h.signatures})
            found = await asyncio.gather(*(self._transaction(client, sig) for sig in wanted))
            return list(histories), dict(zip(wanted, found, strict=True))

        histories, transactions = self._with_client(fetch)
        total = CycleResult()
        for history in histories:
            if self.stopping:
                break
            total.add(self._write_history(history, transactions))
            self.beat_if_due()
        return total

    async def _new_signatures(self, client: AsyncClient, address: str, wallet: str, cursor: Any) -> AddressHistory:
        """Signatures of `address` newer than `cursor` (newest first); on the first run, the newest
        `backfill_signatures`."""
        key = Pubkey.from_string(address)
        until = Signature.from_string(cursor) if isinstance(cursor, str) else None
        page = self.settings.signatures_page
        backfill = self.settings.backfill_signatures
        signatures: list[str] = []
        before: Signature | None = None
        while True:
            answer = await self._call(
                "getSignaturesForAddress",
                partial(client.get_signatures_for_address, key, before=before, until=until, limit=page),
            )
            signatures += [str(s.signature) for s in answer.value]
            if len(answer.value) < page or (until is None and len(signatures) >= backfill):
                break
            before = answer.value[-1].signature
        if until is None:
            signatures = signatures[:backfill]
        return AddressHistory(address, wallet, signatures, cursor if isinstance(cursor, str) else None)

    async def _transaction(self, client: AsyncClient, signature: str) -> Any:
        answer = await self._call(
            "getTransaction",
            lambda: client.get_transaction(Signature.from_string(signature), max_supported_transaction_version=0),
        )
        return answer.value

    def _write_history(self, history: AddressHistory, transactions: dict[str, Any]) -> CycleResult:
        """Store one address's new transactions oldest first and move its cursor past them; stop at
        the first one the node could not serve yet."""
        ready: list[tuple[str, Any]] = []
        for signature in reversed(history.signatures):
            tx = transactions.get(signature)
            if tx is None:
                break
            ready.append((signature, tx))
        key = SIGNATURES_CURSOR.format(address=history.address)
        if not ready:
            if history.address != history.wallet and history.cursor is not None:
                with self.transaction() as conn:  # polled, nothing new: note when, for the sweep
                    self.save_cursor(conn, history.cursor, key)
            return CycleResult()

        def write(item: tuple[str, Any], conn: psycopg.Connection[Any]) -> int:
            signature, tx = item
            conn.execute(q("upsert_sol_transaction"), transaction_row(signature, tx))
            conn.execute(q("link_sol_transaction"), wallet_link(history.wallet, history.address, signature, tx))
            return 1

        with self.transaction() as conn:
            result, complete = self.run_items(ready, conn, write)
            if complete:
                self.save_cursor(conn, ready[-1][0], key)
        return result


# ---- turning solders objects into rows ------------------------------------------------------------


def _error_json(err: Any) -> Jsonb | None:
    if err is None:
        return None
    return Jsonb({"error": str(err)})


def _all_keys(tx: Any) -> list[str]:
    """Account keys in the order balances are listed: static keys, then v0 lookup-table addresses."""
    keys = [str(k) for k in tx.transaction.transaction.message.account_keys]
    loaded = tx.transaction.meta.loaded_addresses if tx.transaction.meta else None
    if loaded is not None:
        keys += [str(k) for k in loaded.writable] + [str(k) for k in loaded.readonly]
    return keys


def transaction_row(signature: str, tx: Any) -> dict[str, Any]:
    meta = tx.transaction.meta
    message = tx.transaction.transaction.message
    keys = _all_keys(tx)
    programs = []
    for ix in message.instructions:
        program = keys[ix.program_id_index] if ix.program_id_index < len(keys) else None
        if program and program not in programs:
            programs.append(program)
    version = tx.transaction.version
    return {
        "signature": signature,
        "slot": tx.slot,
        "block_time": tx.block_time,
        "succeeded": meta is None or meta.err is None,
        "err": _error_json(meta.err if meta else None),
        "fee": meta.fee if meta else 0,
        "version": "legacy" if version is None or "Legacy" in str(version) else str(version),
        "fee_payer": keys[0],
        "program_ids": programs,
    }


def wallet_link(wallet: str, via: str, signature: str, tx: Any) -> dict[str, Any]:
    """The wallet's SOL change (lamports) and token changes by mint (base units) in `tx`."""
    meta = tx.transaction.meta
    keys = _all_keys(tx)
    lamports = None
    if meta is not None and wallet in keys:
        index = keys.index(wallet)
        if index < len(meta.pre_balances) and index < len(meta.post_balances):
            lamports = meta.post_balances[index] - meta.pre_balances[index]
    deltas: dict[str, Decimal] = {}
    if meta is not None:
        for sign, balances in ((-1, meta.pre_token_balances or []), (1, meta.post_token_balances or [])):
            for entry in balances:
                if entry.owner is not None and str(entry.owner) == wallet:
                    mint = str(entry.mint)
                    deltas[mint] = deltas.get(mint, Decimal(0)) + sign * Decimal(entry.ui_token_amount.amount)
    return {
        "wallet": wallet,
        "signature": signature,
        "via": via,
        "slot": tx.slot,
        "lamports_delta": lamports,
        "token_deltas": Jsonb({mint: str(v) for mint, v in deltas.items() if v}),
    }
