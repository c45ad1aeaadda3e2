"""The EVM worker: one implementation, run as `ethereum` (chain_id 1) and as `base` (chain_id 8453).

Each cycle, for the tracked wallets of its chain (`wallets` table, seeded from the `wallets` setting):

1. token metadata — name/symbol/decimals of the configured ERC-20s and seen ERC-721s, read once;
2. balances — native and ERC-20 balances of every wallet, all read at one block through Multicall3
   (or JSON-RPC batches where the chain has no Multicall3), never one call per wallet per token;
3. history — confirmed blocks (`confirmations` below the head) after the block cursor, range by
   range: Transfer logs from/to the wallets and of the configured NFT contracts, the blocks' own
   transactions from/to the wallets, and their receipts; transactions, transfers, NFT ownership and
   the cursor commit together. A reorg below the confirmation depth is noticed (the next block's
   parent hash no longer matches the cursor's) and the affected blocks are rewound and read again;
4. NFT token URIs of held tokens, and ENS reverse names (mainnet ENS: on the chain itself when it
   is chain 1, else through `ens_rpc_url` if set), forward-verified by web3.py, refreshed daily.

Only standard JSON-RPC is used (no `trace_*`, `ots_*` or indexer APIs), so any provider works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import psycopg
from ens import ENS
from ens.constants import UNIVERSAL_RESOLVER_ADDR
from eth_utils import is_address, to_checksum_address
from pydantic import Field
from web3 import Web3

from sql import query
from workers.base import CycleResult, Worker, describe
from workers.errors import NotConfigured, UpstreamError
from workers.evm.reads import (
    DECIMALS,
    NAME,
    SYMBOL,
    TRANSFER_TOPIC,
    Call,
    ContractReader,
    NativeBalance,
    Read,
    address_topic,
    balance_of,
    decode_text,
    decode_uint,
    token_uri,
    topic_address,
)
from workers.evm.rpc import JsonRpcClient, RpcCallError, Web3Provider
from workers.settings import WorkerSettings

BLOCKS_CURSOR = "blocks"
MAINNET_CHAIN_ID = 1


def q(name: str) -> str:
    return query(name, "chains.sql")


def checksum(address: Any) -> str | None:
    """EIP-55 form of an address, or None if it is not one."""
    if not isinstance(address, str) or not is_address(address.strip()):
        return None
    return to_checksum_address(address.strip())


# ---- what a block range yields -------------------------------------------------------------------


@dataclass
class TxRecord:
    """A confirmed transaction touching tracked wallets, with its receipt, and the wallets' roles."""

    row: dict[str, Any]
    links: dict[str, str]  # wallet -> 'out' | 'in' | 'self' | 'log'


@dataclass
class TransferRecord:
    row: dict[str, Any]


@dataclass
class RangeData:
    start: int
    end: int
    parent_hash: str  # of block `start`
    end_hash: str
    transactions: list[TxRecord] = field(default_factory=list)
    transfers: list[TransferRecord] = field(default_factory=list)


class RangeTooLarge(Exception):
    """The node refused eth_getLogs for the range (result cap, range cap): try a smaller one."""


class EvmSettings(WorkerSettings):
    rpc_url: str | None = None
    chain: str | None = None  # the chain's name in the tables; default: the worker's name
    chain_id: int | None = None  # checked against the node's eth_chainId
    wallets: list[Any] = []  # [{address, label}] or plain addresses
    tokens: list[Any] = []  # ERC-20 contract addresses
    nft_contracts: list[Any] = []  # ERC-721 contracts whose every transfer is followed
    confirmations: int = Field(default=12, ge=0)
    start_block: int | None = Field(
        default=None, ge=0
    )  # first block of history; default: `backfill_blocks` below the head
    backfill_blocks: int = Field(default=1000, ge=0)
    max_block_range: int = Field(default=500, gt=0)  # blocks per eth_getLogs range (providers cap it)
    block_batch_size: int = Field(default=20, gt=0)  # full blocks per JSON-RPC batch while scanning
    max_ranges_per_cycle: int = Field(default=50, ge=0)
    requests_per_second: float = Field(default=0, ge=0)  # 0: no pacing (HTTP requests, a batch counts once)
    rpc_timeout_s: float = Field(default=10, gt=0)
    batch_size: int = Field(default=100, gt=0)  # calls per JSON-RPC batch
    multicall: str = "auto"  # auto | multicall | batch | naive
    multicall_size: int = Field(default=500, gt=0)  # reads per aggregate3 call
    token_refresh_s: float = Field(default=7 * 86400, ge=0)
    nft_uris_per_cycle: int = Field(default=500, ge=0)
    ens: bool | str = "auto"  # auto (chain 1 or ens_rpc_url set) | true | false
    ens_rpc_url: str | None = None
    ens_refresh_s: float = Field(default=86400, ge=0)
    ens_per_cycle: int = Field(default=100, ge=0)


class EvmWorker(Worker[Any]):
    settings_model = EvmSettings
    settings: EvmSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reader: ContractReader | None = None
        self._verified_chain: tuple[str, int] | None = None
        self._ens_w3: Web3 | None = None
        self._ens_available: bool | None = None
        self._range_limit: int | None = None
        self._history_blocks: dict[str, int | None] = {}
        self._ranges_left = 0

    # ---- configuration ----------------------------------------------------------------------------

    @property
    def chain(self) -> str:
        return self.settings.chain or self.name

    def validate(self) -> None:
        url = self.settings.rpc_url
        if not url:
            env = f"{self.name.upper()}_RPC_URL"
            raise NotConfigured(f"rpc_url is not set (set {env} or workers.{self.name}.rpc_url)")
        expected = self.settings.chain_id
        if expected is None or self._verified_chain == (url, expected):
            return
        try:
            actual = int(self.client().call("eth_chainId"), 16)
        except UpstreamError:
            return  # cannot tell now; the cycle reports the node's failure
        if actual != expected:
            raise NotConfigured(f"rpc_url serves chain {actual}, but workers.{self.name}.chain_id is {expected}")
        self._verified_chain = (url, expected)

    def client(self) -> JsonRpcClient:
        """The node's client, rebuilt (with its contract reader) when its settings change."""
        s = self.settings
        key = (s.rpc_url, s.requests_per_second, s.rpc_timeout_s, s.batch_size, s.multicall, s.multicall_size)
        return self.cached_client("rpc", key, self._build_client)

    def _build_client(self) -> JsonRpcClient:
        s = self.settings
        client = JsonRpcClient(
            str(s.rpc_url), timeout=s.rpc_timeout_s, requests_per_second=s.requests_per_second, max_batch=s.batch_size
        )
        self._reader = ContractReader(client, s.multicall, s.multicall_size)
        self._range_limit = None
        return client

    def reader(self) -> ContractReader:
        self.client()
        assert self._reader is not None
        return self._reader

    def _addresses(self, key: str) -> list[str]:
        out = []
        for raw in getattr(self.settings, key):
            address = checksum(raw)
            if address is None:
                self.record_error(f"{key}: {raw!r} is not an address", f"config {key}")
            elif address not in out:
                out.append(address)
        return out

    # ---- the cycle ---------------------------------------------------------------------------------

    def run_cycle(self) -> CycleResult:
        self.client()  # (re)built for the current settings before anything reads
        total = CycleResult()
        wallets = self.sync_wallets()
        cursor = self.load_cursor(BLOCKS_CURSOR)
        head, cursor_block = self.read_head(cursor)
        self.sync_token_metadata(head)
        total.add(self.sync_balances(wallets, head))
        self.beat_if_due()
        if not self.stopping:
            total.add(self.sync_history(wallets, head, cursor, cursor_block))
        if not self.stopping:
            self.sync_nft_uris(head)
        if not self.stopping and self.flag("ens"):
            total.add(self.sync_ens())
        return total

    def read_head(self, cursor: dict[str, Any] | None) -> tuple[int, dict[str, Any] | None]:
        """The head block number and, in the same request, the block the cursor stands on (to see
        whether it is still part of the chain)."""
        if not cursor or cursor.get("hash") is None:
            return int(self.client().call("eth_blockNumber"), 16), None
        head, block = self.client().batch(
            [
                ("eth_blockNumber", []),
                ("eth_getBlockByNumber", [hex(int(cursor["block"])), False]),
            ]
        )
        if isinstance(head, RpcCallError):
            raise head
        return int(head, 16), block if isinstance(block, dict) else None

    # ---- wallets -------------------------------------------------------------------------------

    def sync_wallets(self) -> list[str]:
        """Seed the configured wallets into `wallets`; return every active wallet of this chain."""
        seeds = []
        for entry in self.settings.wallets:
            raw, label = (entry.get("address"), entry.get("label") or "") if isinstance(entry, dict) else (entry, "")
            address = checksum(raw)
            if address is None:
                self.record_error(f"wallets: {raw!r} is not an address", "config wallets")
                continue
            seeds.append({"chain": self.chain, "address": address, "label": str(label)})
        with self.transaction() as tx:
            if seeds:
                with tx.cursor() as cur:
                    cur.executemany(q("seed_wallet"), seeds)
            rows = tx.execute(q("active_wallets"), (self.chain,)).fetchall()
            wallets: list[str] = []
            self._history_blocks = {}
            for raw, _label, history_block in rows:
                address = checksum(raw)
                if address is None or address in wallets:
                    continue
                if address != raw:  # added by hand in another spelling: keep one form, EIP-55
                    tx.execute(q("normalise_wallet_address"), {"chain": self.chain, "raw": raw, "fixed": address})
                wallets.append(address)
                self._history_blocks[address] = history_block
        return wallets

    # ---- token metadata --------------------------------------------------------------------------

    def sync_token_metadata(self, head: int) -> None:
        """Read name/symbol/decimals of tokens not read recently (one batched read for all)."""
        fresh = {
            row[0]
            for row in self.db.execute(
                q("fresh_tokens"), {"chain": self.chain, "max_age_s": self.settings.token_refresh_s}
            )
        }
        wanted: dict[str, str] = {}
        for address in self._addresses("tokens"):
            wanted.setdefault(address, "erc20")
        for address in self._addresses("nft_contracts"):
            wanted.setdefault(address, "erc721")
        for (contract,) in self.db.execute(q("unknown_nft_contracts"), (self.chain,)).fetchall():
            wanted.setdefault(contract, "erc721")
        todo = [(address, standard) for address, standard in wanted.items() if address not in fresh]
        if not todo:
            return
        reads: list[Read] = []
        for address, _ in todo:
            reads += [Call(address, NAME), Call(address, SYMBOL), Call(address, DECIMALS)]
        results = self.reader().read(reads, head)
        rows = []
        for i, (address, standard) in enumerate(todo):
            name, symbol, decimals = results[3 * i : 3 * i + 3]
            dec = decode_uint(decimals) if standard == "erc20" else None
            if standard == "erc20" and (dec is None or dec > 255):
                self.record_error(
                    f"token {address} has no decimals(): not an ERC-20 on this chain?", f"token {address}"
                )
                dec = None
            rows.append(
                {
                    "chain": self.chain,
                    "address": address,
                    "standard": standard,
                    "name": decode_text(name),
                    "symbol": decode_text(symbol),
                    "decimals": dec,
                }
            )
        with self.transaction() as tx, tx.cursor() as cur:
            cur.executemany(q("upsert_token"), rows)

    # ---- balances ----------------------------------------------------------------------------------

    def sync_balances(self, wallets: Sequence[str], head: int) -> CycleResult:
        """Native and ERC-20 balances of every wallet at block `head`, in one batched read."""
        if not wallets:
            return CycleResult()
        tokens = self._addresses("tokens")
        reads: list[Read] = []
        for wallet in wallets:
            reads.append(NativeBalance(wallet))
            reads += [balance_of(token, wallet) for token in tokens]
        results = self.reader().read(reads, head)
        items = []
        failed: dict[str, int] = {}
        stride = 1 + len(tokens)
        for i, wallet in enumerate(wallets):
            chunk = results[i * stride : (i + 1) * stride]
            balances: dict[str, int] = {}
            for token, raw in zip(tokens, chunk[1:], strict=True):
                value = decode_uint(raw)
                if value is None:
                    failed[token] = failed.get(token, 0) + 1
                else:
                    balances[token] = value
            items.append((wallet, chunk[0], balances))
        for token, count in failed.items():
            self.record_error(f"balanceOf failed on {token} for {count} wallet(s) at block {head}", f"token {token}")

        def write(item: tuple[str, int | None, dict[str, int]], tx: psycopg.Connection[Any]) -> int:
            wallet, native, balances = item
            if native is not None:
                tx.execute(
                    q("upsert_native_balance"),
                    {"chain": self.chain, "address": wallet, "balance": native, "block": head},
                )
            if balances:
                tx.execute(
                    q("upsert_token_balances"),
                    {
                        "chain": self.chain,
                        "wallet": wallet,
                        "block": head,
                        "tokens": list(balances),
                        "balances": [Decimal(v) for v in balances.values()],
                    },
                )
            return 1

        with self.transaction() as tx:
            result, _ = self.run_items(items, tx, write)
        return result

    # ---- history -----------------------------------------------------------------------------------

    def sync_history(
        self, wallets: Sequence[str], head: int, cursor: dict[str, Any] | None, cursor_block: dict[str, Any] | None
    ) -> CycleResult:
        """Confirmed block ranges after the cursor: transactions, transfers and NFT ownership.
        `cursor_block` is the chain's block at the cursor now (None if it has none)."""
        total = CycleResult()
        safe = head - self.settings.confirmations
        if safe < 0:
            return total
        self._ranges_left = self.settings.max_ranges_per_cycle
        if cursor is None:
            start = self._first_block(safe)
            prev_hash: str | None = None
            current = list(wallets)
        else:
            start, prev_hash = int(cursor["block"]) + 1, cursor.get("hash")
            if prev_hash is not None and (cursor_block is None or cursor_block.get("hash") != prev_hash):
                # The cursor's block left the chain (a reorg that regrew to the same height shows only here).
                start, prev_hash = self.rewind(start - 1)
            current = [w for w in wallets if (self._history_blocks.get(w) or -1) >= start - 1]
            lagging = [w for w in wallets if w not in current]
            if lagging:  # wallets added since the cursor started: their past first, below the cursor
                total.add(self.catch_up(lagging, start - 1))
        while start <= safe and not self.stopping and self._ranges_left > 0:
            data = self._fetch_range_adaptive(start, safe, current, include_nft_contracts=True)
            if data is None:
                continue
            if prev_hash is not None and data.parent_hash != prev_hash:
                start, prev_hash = self.rewind(start - 1)
                self._ranges_left -= 1
                continue
            result, complete = self._store_range(data, current, cursor={"block": data.end, "hash": data.end_hash})
            total.add(result)
            if not complete:
                break
            start, prev_hash = data.end + 1, data.end_hash
        return total

    def catch_up(self, wallets: Sequence[str], until: int) -> CycleResult:
        """History of wallets added after the chain cursor started, up to the cursor's block, one
        group per starting block; each range records how far each wallet's history goes."""
        total = CycleResult()
        groups: dict[int, list[str]] = {}
        for wallet in wallets:
            done = self._history_blocks.get(wallet)
            groups.setdefault(done + 1 if done is not None else self._first_block(until), []).append(wallet)
        for start, group in sorted(groups.items()):
            while start <= until and not self.stopping and self._ranges_left > 0:
                data = self._fetch_range_adaptive(start, until, group, include_nft_contracts=False)
                if data is None:
                    continue
                result, complete = self._store_range(data, group, cursor=None)
                total.add(result)
                if not complete:
                    return total
                start = data.end + 1
        return total

    def _first_block(self, safe: int) -> int:
        start_block = self.settings.start_block
        return start_block if start_block is not None else max(0, safe - self.settings.backfill_blocks + 1)

    def _fetch_range_adaptive(
        self, start: int, last: int, wallets: Sequence[str], *, include_nft_contracts: bool
    ) -> RangeData | None:
        """The next range from `start` (at most `max_block_range`, less after the node refused
        larger ones); None when the node refused it and a smaller one should be tried."""
        configured = self.settings.max_block_range
        end = min(last, start + min(configured, self._range_limit or configured) - 1)
        try:
            data = self.fetch_range(start, end, wallets, include_nft_contracts=include_nft_contracts)
        except RangeTooLarge as exc:
            if end == start:
                raise UpstreamError(f"eth_getLogs refused even one block ({start}): {exc}") from exc
            self._range_limit = max(1, (end - start + 1) // 2)
            self.log(f"eth_getLogs refused blocks {start}-{end} ({exc}); trying {self._range_limit} at a time")
            return None
        if self._range_limit is not None:  # it worked: let the range grow back
            self._range_limit = min(configured, self._range_limit * 2)
        self._ranges_left -= 1
        self.beat_if_due()
        return data

    def _store_range(
        self, data: RangeData, wallets: Sequence[str], cursor: dict[str, Any] | None
    ) -> tuple[CycleResult, bool]:
        """Write one range's rows, the wallets' history marks and (main pass) the chain cursor together."""
        items: list[TxRecord | TransferRecord] = [
            *data.transactions,
            *sorted(data.transfers, key=lambda t: (t.row["block_number"], t.row["log_index"])),
        ]
        with self.transaction() as tx:
            result, complete = self.run_items(items, tx, self._write_history)
            if complete:
                tx.execute(q("set_history_block"), {"chain": self.chain, "wallets": list(wallets), "block": data.end})
                if cursor is not None:
                    self.save_cursor(tx, cursor, BLOCKS_CURSOR)
        return result, complete

    def rewind(self, cursor_block: int) -> tuple[int, str | None]:
        """The chain changed below the confirmed cursor: drop what came from the last blocks and
        move the cursor back before them, so they are read again. Returns (start, parent hash)."""
        depth = max(2 * self.settings.confirmations, 16)
        back_to = max(0, cursor_block - depth + 1)  # first block to read again
        parent = None
        if back_to > 0:
            block = self.client().call("eth_getBlockByNumber", [hex(back_to - 1), False])
            parent = block["hash"] if block else None
        params = {"chain": self.chain, "from_block": back_to}
        with self.transaction() as tx:
            for name in (
                "rewind_nft_owners",
                "forget_rewound_nfts",
                "forget_rewound_transfers",
                "forget_rewound_links",
                "forget_rewound_transactions",
                "rewind_wallet_history",
            ):
                tx.execute(q(name), params)
            self.save_cursor(tx, {"block": back_to - 1, "hash": parent}, BLOCKS_CURSOR)
        self._history_blocks = {
            w: (b if b is None or b < back_to else back_to - 1) for w, b in self._history_blocks.items()
        }
        self.record_error(
            f"chain reorganised below block {cursor_block + 1} (deeper than {self.settings.confirmations} "
            f"confirmations): rewound to block {back_to} and reading it again",
            "reorg",
        )
        return back_to, parent

    def fetch_range(
        self, start: int, end: int, wallets: Sequence[str], *, include_nft_contracts: bool = True
    ) -> RangeData:
        """Everything blocks `start`..`end` hold for the wallets (read-only: nothing is written)."""
        client = self.client()
        wallet_set = set(wallets)
        logs = self._transfer_logs(start, end, wallets, include_nft_contracts)
        log_parties: dict[str, set[str]] = {}
        transfers: dict[tuple[str, int], TransferRecord] = {}
        for log in logs:
            record = self._transfer_record(log)
            if record is None:
                continue
            transfers[(record.row["tx_hash"], record.row["log_index"])] = record
            parties = {record.row["from_address"], record.row["to_address"]} & wallet_set
            log_parties.setdefault(record.row["tx_hash"], set()).update(parties)

        log_hashes = {tx_hash for tx_hash, parties in log_parties.items() if parties}  # NFT logs may touch none

        # Blocks with their transactions: native transfers to/from wallets, and the transactions the
        # logs point at (their sender and value, which logs do not carry).
        # Without wallets only the range's ends are needed (the hash chain), and no transactions.
        numbers = list(range(start, end + 1)) if wallet_set else sorted({start, end})
        step = self.settings.block_batch_size
        picked: list[tuple[dict[str, Any], dict[str, Any]]] = []
        parent_hash = end_hash = ""
        for i in range(0, len(numbers), step):
            batch = client.batch([("eth_getBlockByNumber", [hex(n), bool(wallet_set)]) for n in numbers[i : i + step]])
            for number, block in zip(numbers[i : i + step], batch, strict=True):
                if isinstance(block, RpcCallError):
                    raise block
                if not isinstance(block, dict):
                    raise UpstreamError(f"the node has no block {number} (head moved back?)")
                if number == start:
                    parent_hash = block["parentHash"]
                if number == end:
                    end_hash = block["hash"]
                for tx in block.get("transactions") or []:
                    sender, to = checksum(tx.get("from")), checksum(tx.get("to"))
                    if sender in wallet_set or to in wallet_set or tx["hash"] in log_hashes:
                        picked.append((block, tx))
            self.beat_if_due()

        receipts = client.batch([("eth_getTransactionReceipt", [tx["hash"]]) for _, tx in picked]) if picked else []
        data = RangeData(start, end, parent_hash, end_hash, transfers=list(transfers.values()))
        for (block, tx), receipt in zip(picked, receipts, strict=True):
            if isinstance(receipt, RpcCallError):
                raise receipt
            if not isinstance(receipt, dict):
                raise UpstreamError(f"no receipt for {tx['hash']} in block {int(block['number'], 16)}")
            data.transactions.append(
                self._tx_record(block, tx, receipt, wallet_set, log_parties.get(tx["hash"], set()))
            )
        return data

    def _transfer_logs(
        self, start: int, end: int, wallets: Sequence[str], include_nft_contracts: bool
    ) -> list[dict[str, Any]]:
        """Transfer logs from or to the wallets (any contract) and of the configured NFT contracts."""
        span = {"fromBlock": hex(start), "toBlock": hex(end)}
        filters: list[dict[str, Any]] = []
        nft_contracts = self._addresses("nft_contracts") if include_nft_contracts else []
        if nft_contracts:
            filters.append({**span, "address": nft_contracts, "topics": [TRANSFER_TOPIC]})
        topics = [address_topic(w) for w in wallets]
        for i in range(0, len(topics), 100):  # providers cap the topic OR-list
            chunk = topics[i : i + 100]
            filters.append({**span, "topics": [TRANSFER_TOPIC, chunk]})
            filters.append({**span, "topics": [TRANSFER_TOPIC, None, chunk]})
        if not filters:
            return []
        logs: list[dict[str, Any]] = []
        for answer in self.client().batch([("eth_getLogs", [f]) for f in filters]):
            if isinstance(answer, RpcCallError):
                raise RangeTooLarge(answer.rpc_message)
            logs += [log for log in answer or [] if not log.get("removed")]
        return logs

    def _transfer_record(self, log: dict[str, Any]) -> TransferRecord | None:
        topics = log.get("topics") or []
        if not topics or topics[0] != TRANSFER_TOPIC or len(topics) not in (3, 4):
            return None  # not a standard indexed Transfer (some old tokens index nothing)
        row: dict[str, Any] = {
            "chain": self.chain,
            "tx_hash": log["transactionHash"],
            "log_index": int(log["logIndex"], 16),
            "block_number": int(log["blockNumber"], 16),
            "contract": to_checksum_address(log["address"]),
            "from_address": topic_address(topics[1]),
            "to_address": topic_address(topics[2]),
            "amount": None,
            "token_id": None,
        }
        if len(topics) == 4:
            row["standard"], row["token_id"] = "erc721", int(topics[3], 16)
        else:
            data = log.get("data") or "0x"
            if len(data) < 66:
                return None
            row["standard"], row["amount"] = "erc20", int(data[2:66], 16)
        return TransferRecord(row)

    def _tx_record(
        self,
        block: dict[str, Any],
        tx: dict[str, Any],
        receipt: dict[str, Any],
        wallets: set[str],
        log_wallets: set[str],
    ) -> TxRecord:
        sender, to = checksum(tx["from"]), checksum(tx.get("to"))
        gas_used = int(receipt["gasUsed"], 16) if receipt.get("gasUsed") else None
        price_hex = receipt.get("effectiveGasPrice") or tx.get("gasPrice")
        price = int(price_hex, 16) if price_hex else None
        data = tx.get("input") or "0x"
        row = {
            "chain": self.chain,
            "hash": tx["hash"],
            "block_number": int(block["number"], 16),
            "block_hash": block["hash"],
            "block_time": int(block["timestamp"], 16),
            "tx_index": int(tx["transactionIndex"], 16),
            "from_address": sender,
            "to_address": to,
            "value_wei": int(tx.get("value") or "0x0", 16),
            "nonce": int(tx["nonce"], 16),
            "method_id": data[:10] if len(data) >= 10 else None,
            "status": int(receipt["status"], 16) if receipt.get("status") is not None else None,
            "gas_used": gas_used,
            "effective_gas_price": price,
            "fee_wei": gas_used * price if gas_used is not None and price is not None else None,
            "contract_address": checksum(receipt.get("contractAddress")),
        }
        links: dict[str, str] = {w: "log" for w in log_wallets}
        if sender in wallets:
            links[sender] = "self" if sender == to else "out"
        if to in wallets and to != sender:
            links[to] = "in"
        return TxRecord(row, links)

    def _write_history(self, item: TxRecord | TransferRecord, tx: psycopg.Connection[Any]) -> int:
        if isinstance(item, TxRecord):
            tx.execute(q("upsert_transaction"), item.row)
            for wallet, direction in item.links.items():
                tx.execute(
                    q("link_wallet_transaction"),
                    {
                        "chain": self.chain,
                        "wallet": wallet,
                        "tx_hash": item.row["hash"],
                        "block_number": item.row["block_number"],
                        "direction": direction,
                    },
                )
            return 1
        tx.execute(q("insert_transfer"), item.row)
        if item.row["standard"] == "erc721":
            tx.execute(q("move_nft"), item.row)
        return 1

    # ---- NFT token URIs ------------------------------------------------------------------------------

    def sync_nft_uris(self, head: int) -> None:
        """tokenURI of NFTs now held by tracked wallets, read once (batched)."""
        rows = self.db.execute(q("nfts_without_uri"), (self.chain, self.settings.nft_uris_per_cycle)).fetchall()
        if not rows:
            return
        results = self.reader().read([token_uri(contract, int(token_id)) for contract, token_id in rows], head)
        with self.transaction() as tx, tx.cursor() as cur:
            cur.executemany(
                q("set_nft_uri"),
                [
                    {"chain": self.chain, "contract": contract, "token_id": token_id, "uri": decode_text(raw) or ""}
                    for (contract, token_id), raw in zip(rows, results, strict=True)
                ],
            )

    # ---- ENS ---------------------------------------------------------------------------------------

    def ens_web3(self) -> Web3 | None:
        """A Web3 on mainnet ENS: `ens_rpc_url` if set, else this chain when it is chain 1."""
        s = self.settings
        mode = s.ens
        if mode in (False, "false", "off", "no"):
            return None
        url = s.ens_rpc_url
        if not url and not (mode in (True, "true", "on", "yes") or s.chain_id == MAINNET_CHAIN_ID):
            return None
        if url:
            client = self.cached_client(
                "ens",
                (url, s.rpc_timeout_s, s.requests_per_second),
                lambda: JsonRpcClient(url, timeout=s.rpc_timeout_s, requests_per_second=s.requests_per_second),
            )
        else:
            self.drop_client("ens")
            client = self.client()
        if self._ens_w3 is None or getattr(self._ens_w3.provider, "client", None) is not client:
            self._ens_w3 = Web3(Web3Provider(client))
            self._ens_available = None
        return self._ens_w3

    def sync_ens(self) -> CycleResult:
        w3 = self.ens_web3()
        if w3 is None:
            return CycleResult()
        due = [
            row[0]
            for row in self.db.execute(
                q("ens_due"),
                {
                    "chain": self.chain,
                    "max_age_s": self.settings.ens_refresh_s,
                    "limit": self.settings.ens_per_cycle,
                },
            )
        ]
        if not due:
            return CycleResult()
        if self._ens_available is None:
            provider = w3.provider
            assert isinstance(provider, Web3Provider)
            code = provider.client.call("eth_getCode", [UNIVERSAL_RESOLVER_ADDR, "latest"])
            self._ens_available = code not in (None, "0x", "0x0")
            if not self._ens_available:
                self.log("no ENS UniversalResolver on the ENS chain: ENS names are skipped")
        if not self._ens_available:
            return CycleResult()
        ens = cast(ENS, w3.ens)
        found: list[tuple[str, str | None]] = []
        for address in due:
            if self.stopping:
                break
            try:
                name = ens.name(address)  # reverse record, then forward check: None unless both agree
            except UpstreamError:
                raise
            except Exception as exc:  # a malformed name or resolver: this address only
                self.record_error(describe(exc), f"ens {address}")
                continue
            found.append((address, name))
            self.beat_if_due()

        def write(item: tuple[str, str | None], tx: psycopg.Connection[Any]) -> int:
            tx.execute(q("upsert_ens_name"), {"address": item[0], "name": item[1]})
            return 1

        with self.transaction() as tx:
            result, _ = self.run_items(found, tx, write)
        return result
