"""The Solana devnet's state: accounts, SPL tokens, Metaplex NFTs and a signed transaction history.

No local validator installs from the package registries, so `devnet.solana_rpc` serves this ledger
over JSON-RPC instead. It is small but not fake where a client can tell: wallets are real ed25519
keypairs, every transaction is a real signed legacy or v0 message (system transfers, SPL
`TransferChecked`/`MintTo`, associated-token-account creation), fees and rent move lamports the way
the runtime does, token accounts and mints are packed in the SPL byte layouts (Token-2022 accounts
carry the ImmutableOwner extension their ATAs get), and NFT mints have a Metaplex metadata account at
the real PDA. Like a real node, `signatures_for` indexes a transaction under every account key in it,
so an incoming SPL transfer is listed under the recipient's token account, not its wallet.

Genesis (the faucet's SOL, mints and metadata accounts) is written directly; everything after that
goes through `transfer_sol`, `transfer_token` and `mint_to`, which tests can also call at run time.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams
from solders.system_program import transfer as system_transfer
from solders.transaction import Transaction, VersionedTransaction

SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ASSOCIATED_TOKEN_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
METADATA_PROGRAM = Pubkey.from_string("metaqbxxUerdq28cj1RbAWkYQm3ybzjb6a8bt518x1s")
TOKEN_PROGRAMS = (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)

LAMPORTS_PER_SOL = 1_000_000_000
FEE_PER_SIGNATURE = 5_000
RENT_EPOCH_EXEMPT = 2**64 - 1  # what real nodes report for rent-exempt accounts
METADATA_ACCOUNT_SIZE = 679  # Metaplex's classic fixed allocation; the tail is zero padding
GENESIS_SLOT = 360_000_000
GENESIS_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z: seeded history is fixed, so tests can compare it
SLOT_SECONDS = 0.4


class LedgerError(ValueError):
    """A request the ledger refuses (unknown wallet, insufficient funds); the RPC maps it to -32602."""


def rent_exempt_minimum(space: int) -> int:
    """Lamports for a rent-exempt account of `space` bytes: (space + 128) * 3480 * 2, as on mainnet."""
    return (space + 128) * 3480 * 2


def b58encode(data: bytes) -> str:
    """Base58 (bitcoin alphabet), for instruction data in `json`-encoded transactions."""
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = alphabet[rem] + out
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + out


def ui_amount_string(amount: int, decimals: int) -> str:
    """`uiAmountString` as nodes print it: exact, no exponent, no trailing zeros."""
    text = format(Decimal(amount).scaleb(-decimals), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def ui_token_amount(amount: int, decimals: int) -> dict[str, Any]:
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": amount / 10**decimals,
        "uiAmountString": ui_amount_string(amount, decimals),
    }


def associated_token_address(owner: Pubkey, mint: Pubkey, program: Pubkey) -> Pubkey:
    return Pubkey.find_program_address([bytes(owner), bytes(program), bytes(mint)], ASSOCIATED_TOKEN_PROGRAM)[0]


def metadata_address(mint: Pubkey) -> Pubkey:
    return Pubkey.find_program_address([b"metadata", bytes(METADATA_PROGRAM), bytes(mint)], METADATA_PROGRAM)[0]


def _coption_pubkey(key: Pubkey | None) -> bytes:
    return struct.pack("<I", 1) + bytes(key) if key else b"\x00" * 36


# ---------------------------------------------------------------------------------------------------
# Accounts.
# ---------------------------------------------------------------------------------------------------


@dataclass
class Mint:
    address: Pubkey
    program: Pubkey
    decimals: int
    authority: Pubkey
    symbol: str
    name: str
    supply: int = 0

    def data(self) -> bytes:
        """The 82-byte SPL Mint layout (Token-2022 mints without extensions are identical)."""
        return (
            _coption_pubkey(self.authority) + struct.pack("<QBB", self.supply, self.decimals, 1) + _coption_pubkey(None)
        )

    def parsed(self) -> dict[str, Any]:
        return {
            "type": "mint",
            "info": {
                "decimals": self.decimals,
                "freezeAuthority": None,
                "isInitialized": True,
                "mintAuthority": str(self.authority),
                "supply": str(self.supply),
            },
        }


@dataclass
class TokenAccount:
    address: Pubkey
    mint: Mint
    owner: Pubkey
    amount: int = 0

    @property
    def program(self) -> Pubkey:
        return self.mint.program

    def data(self) -> bytes:
        """The 165-byte SPL token account layout; a Token-2022 ATA adds the AccountType byte and an
        empty ImmutableOwner extension (TLV type 7), as the associated-token program creates it."""
        base = (
            bytes(self.mint.address)
            + bytes(self.owner)
            + struct.pack("<Q", self.amount)
            + _coption_pubkey(None)  # delegate
            + b"\x01"  # state: initialized
            + b"\x00" * 12  # is_native: None
            + struct.pack("<Q", 0)  # delegated_amount
            + _coption_pubkey(None)  # close_authority
        )
        if self.program == TOKEN_2022_PROGRAM:
            base += b"\x02" + struct.pack("<HH", 7, 0)
        return base

    def parsed(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "isNative": False,
            "mint": str(self.mint.address),
            "owner": str(self.owner),
            "state": "initialized",
            "tokenAmount": ui_token_amount(self.amount, self.mint.decimals),
        }
        if self.program == TOKEN_2022_PROGRAM:
            info["extensions"] = [{"extension": "immutableOwner"}]
        return {"type": "account", "info": info}

    def balance_entry(self, index: int) -> dict[str, Any]:
        """One `preTokenBalances`/`postTokenBalances` element."""
        return {
            "accountIndex": index,
            "mint": str(self.mint.address),
            "owner": str(self.owner),
            "programId": str(self.program),
            "uiTokenAmount": ui_token_amount(self.amount, self.mint.decimals),
        }


@dataclass
class NftMetadata:
    """A Metaplex Token Metadata account (MetadataV1), Borsh-encoded as the program stores it."""

    mint: Pubkey
    update_authority: Pubkey
    name: str
    symbol: str
    uri: str
    seller_fee_basis_points: int = 500

    def data(self) -> bytes:
        def padded(text: str, size: int) -> bytes:
            # On chain the strings keep their allocated size, NUL-padded; the length prefix says so.
            raw = text.encode()[:size].ljust(size, b"\x00")
            return struct.pack("<I", size) + raw

        out = (
            b"\x04"  # Key::MetadataV1
            + bytes(self.update_authority)
            + bytes(self.mint)
            + padded(self.name, 32)
            + padded(self.symbol, 10)
            + padded(self.uri, 200)
            + struct.pack("<H", self.seller_fee_basis_points)
            + b"\x01"
            + struct.pack("<I", 1)
            + bytes(self.update_authority)
            + b"\x01"
            + bytes([100])  # creators
            + b"\x01"  # primary_sale_happened
            + b"\x01"  # is_mutable
            + b"\x01\xff"  # edition_nonce: Some(255)
            + b"\x01\x00"  # token_standard: Some(NonFungible)
            + b"\x00"  # collection: None
            + b"\x00"  # uses: None
            + b"\x00"  # collection_details: None
            + b"\x00"  # programmable_config: None
        )
        return out.ljust(METADATA_ACCOUNT_SIZE, b"\x00")


@dataclass(frozen=True)
class AccountView:
    """An account as getAccountInfo reports it; `parsed` is the jsonParsed form when there is one."""

    lamports: int
    owner: Pubkey
    data: bytes
    executable: bool = False
    parsed: dict[str, Any] | None = None
    program_name: str | None = None


# ---------------------------------------------------------------------------------------------------
# Transactions.
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerTransaction:
    """A confirmed transaction, stored in the `json` encoding a node returns for getTransaction."""

    signature: str
    slot: int
    block_time: int
    version: Literal["legacy", 0]
    account_keys: tuple[str, ...]
    transaction: dict[str, Any]
    meta: dict[str, Any]

    @property
    def err(self) -> Any:
        return self.meta["err"]


@dataclass
class Wallet:
    label: str
    keypair: Keypair
    tracked: bool

    @property
    def pubkey(self) -> Pubkey:
        return self.keypair.pubkey()


@dataclass
class _Pending:
    """Mutations of one transaction, applied only if it succeeds (the fee is charged regardless)."""

    lamports: dict[Pubkey, int] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    units: int = 0
    effects: list[Callable[[], object]] = field(default_factory=list)
    error: Any = None


class SolanaLedger:
    """Accounts and history of the Solana devnet. Thread-safe: the RPC server calls it from many threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.slot = GENESIS_SLOT
        self.lamports: dict[Pubkey, int] = {}  # system-owned wallets
        self.mints: dict[Pubkey, Mint] = {}
        self.token_accounts: dict[Pubkey, TokenAccount] = {}
        self.metadata: dict[Pubkey, NftMetadata] = {}  # by metadata PDA
        self.transactions: list[LedgerTransaction] = []  # oldest first
        self.by_signature: dict[str, LedgerTransaction] = {}
        self.wallets: dict[str, Wallet] = {}
        self.faucet = self.add_wallet("faucet", tracked=False, lamports=1_000_000 * LAMPORTS_PER_SOL)
        self.wall_clock = False  # after seeding: new transactions get the real time

    # --- genesis ---------------------------------------------------------------------------------

    @staticmethod
    def keypair_for(label: str) -> Keypair:
        """Deterministic keypair per label, so addresses are the same on every run."""
        return Keypair.from_seed(hashlib.sha256(f"worker-manager devnet solana {label}".encode()).digest())

    def add_wallet(self, label: str, *, tracked: bool, lamports: int = 0) -> Wallet:
        wallet = Wallet(label, self.keypair_for(label), tracked)
        with self.lock:
            self.wallets[label] = wallet
            self.lamports[wallet.pubkey] = self.lamports.get(wallet.pubkey, 0) + lamports
        return wallet

    def create_mint(
        self, label: str, *, symbol: str, name: str, decimals: int, program: Pubkey = TOKEN_PROGRAM
    ) -> Mint:
        mint = Mint(self.keypair_for(f"mint {label}").pubkey(), program, decimals, self.faucet.pubkey, symbol, name)
        with self.lock:
            self.mints[mint.address] = mint
        return mint

    def create_nft(self, label: str, *, name: str, symbol: str, uri: str) -> Mint:
        """A mint with decimals 0 and a Metaplex metadata account; `mint_to(owner, 1)` gives it away."""
        mint = self.create_mint(label, symbol=symbol, name=name, decimals=0)
        with self.lock:
            self.metadata[metadata_address(mint.address)] = NftMetadata(
                mint.address, self.faucet.pubkey, name, symbol, uri
            )
        return mint

    # --- lookups ---------------------------------------------------------------------------------

    def wallet(self, who: str | Pubkey) -> Wallet:
        """A wallet by label or public key (only wallets the ledger holds keys for can sign)."""
        with self.lock:
            if isinstance(who, str) and who in self.wallets:
                return self.wallets[who]
            key = who if isinstance(who, Pubkey) else _pubkey(who)
            for wallet in self.wallets.values():
                if wallet.pubkey == key:
                    return wallet
        raise LedgerError(f"no devnet wallet {who}")

    def mint(self, which: str | Pubkey) -> Mint:
        """A mint by address or symbol."""
        with self.lock:
            for mint in self.mints.values():
                if which in (mint.address, mint.symbol, str(mint.address)):
                    return mint
        raise LedgerError(f"no devnet mint {which}")

    def balance(self, key: Pubkey) -> int:
        with self.lock:
            view = self.account(key)
            return view.lamports if view else 0

    def account(self, key: Pubkey) -> AccountView | None:
        """The account at `key` as a node would report it, or None if it does not exist."""
        with self.lock:
            if key in self.token_accounts:
                acc = self.token_accounts[key]
                data = acc.data()
                return AccountView(
                    rent_exempt_minimum(len(data)),
                    acc.program,
                    data,
                    parsed=acc.parsed(),
                    program_name=_program_name(acc.program),
                )
            if key in self.mints:
                mint = self.mints[key]
                data = mint.data()
                return AccountView(
                    rent_exempt_minimum(len(data)),
                    mint.program,
                    data,
                    parsed=mint.parsed(),
                    program_name=_program_name(mint.program),
                )
            if key in self.metadata:
                data = self.metadata[key].data()
                return AccountView(rent_exempt_minimum(len(data)), METADATA_PROGRAM, data)
            if key in self.lamports:
                return AccountView(self.lamports[key], SYSTEM_PROGRAM, b"")
            if key in (SYSTEM_PROGRAM, *TOKEN_PROGRAMS, ASSOCIATED_TOKEN_PROGRAM, METADATA_PROGRAM):
                return AccountView(
                    1, Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111"), b"", executable=True
                )
            return None

    def token_accounts_of(
        self, owner: Pubkey, *, mint: Pubkey | None = None, program: Pubkey | None = None
    ) -> list[TokenAccount]:
        with self.lock:
            return [
                acc
                for acc in self.token_accounts.values()
                if acc.owner == owner
                and (mint is None or acc.mint.address == mint)
                and (program is None or acc.program == program)
            ]

    def signatures_for(self, key: Pubkey) -> list[LedgerTransaction]:
        """Transactions that mention `key` among their account keys, newest first."""
        text = str(key)
        with self.lock:
            return [tx for tx in reversed(self.transactions) if text in tx.account_keys]

    def nfts_of(self, owner: Pubkey) -> list[tuple[Mint, NftMetadata]]:
        """NFTs (amount 1, decimals 0, with metadata) held by `owner`: what a worker should find."""
        with self.lock:
            return [
                (acc.mint, self.metadata[metadata_address(acc.mint.address)])
                for acc in self.token_accounts_of(owner)
                if acc.amount == 1 and acc.mint.decimals == 0 and metadata_address(acc.mint.address) in self.metadata
            ]

    def blockhash(self, slot: int | None = None) -> Hash:
        """A deterministic blockhash per slot."""
        slot = self.slot if slot is None else slot
        return Hash(hashlib.sha256(f"devnet blockhash {slot}".encode()).digest())

    # --- state changes that are not transactions -------------------------------------------------

    def set_balance(self, key: Pubkey, lamports: int) -> None:
        """Overwrite a wallet's SOL balance (an airdrop-like change with no history)."""
        with self.lock:
            self.lamports[key] = lamports

    def advance_slots(self, count: int = 1) -> int:
        with self.lock:
            self.slot += count
            return self.slot

    # --- transactions ----------------------------------------------------------------------------

    def transfer_sol(self, sender: str | Pubkey, to: str | Pubkey, lamports: int, *, v0: bool = False) -> str:
        """A system-program transfer signed by a devnet wallet; returns its signature."""
        with self.lock:
            payer = self.wallet(sender)
            dest = self.resolve(to)
            ix = system_transfer(TransferParams(from_pubkey=payer.pubkey, to_pubkey=dest, lamports=lamports))
            pending = _Pending()
            failure = self._move_lamports(pending, payer.pubkey, dest, lamports, 0)
            self._invoke(pending, SYSTEM_PROGRAM, [], 150, failure=failure)
            return self._commit(payer, [ix], pending, v0=v0)

    def transfer_token(self, sender: str | Pubkey, to: str | Pubkey, mint: str | Pubkey, amount: int) -> str:
        """`TransferChecked` from the sender's associated token account to the recipient's, creating the
        recipient's ATA (paid by the sender) in the same transaction when it does not exist yet."""
        with self.lock:
            payer = self.wallet(sender)
            recipient = self.resolve(to)
            token = self.mint(mint)
            source = self.token_accounts.get(associated_token_address(payer.pubkey, token.address, token.program))
            if source is None:
                raise LedgerError(f"{payer.label} holds no {token.symbol}")
            pending = _Pending()
            ixs = self._ensure_ata(pending, payer, recipient, token)
            dest_key = associated_token_address(recipient, token.address, token.program)
            ixs.append(
                Instruction(
                    token.program,
                    bytes([12]) + struct.pack("<QB", amount, token.decimals),
                    [
                        AccountMeta(source.address, False, True),
                        AccountMeta(token.address, False, False),
                        AccountMeta(dest_key, False, True),
                        AccountMeta(payer.pubkey, True, False),
                    ],
                )
            )
            short = pending.error is None and source.amount < amount
            if short:
                pending.error = {"InstructionError": [len(ixs) - 1, {"Custom": 1}]}  # InsufficientFunds
            self._invoke(
                pending,
                token.program,
                ["Instruction: TransferChecked"],
                6_200,
                failure="insufficient funds" if short else None,
            )

            def move() -> None:
                source.amount -= amount
                self.token_accounts[dest_key].amount += amount

            pending.effects.append(move)
            return self._commit(payer, ixs, pending)

    def mint_to(self, mint: str | Pubkey, to: str | Pubkey, amount: int) -> str:
        """`MintTo` into the recipient's ATA, signed by the faucet (every devnet mint's authority)."""
        with self.lock:
            token = self.mint(mint)
            recipient = self.resolve(to)
            pending = _Pending()
            ixs = self._ensure_ata(pending, self.faucet, recipient, token)
            dest_key = associated_token_address(recipient, token.address, token.program)
            ixs.append(
                Instruction(
                    token.program,
                    bytes([7]) + struct.pack("<Q", amount),
                    [
                        AccountMeta(token.address, False, True),
                        AccountMeta(dest_key, False, True),
                        AccountMeta(self.faucet.pubkey, True, False),
                    ],
                )
            )
            self._invoke(pending, token.program, ["Instruction: MintTo"], 4_500)

            def mint_tokens() -> None:
                token.supply += amount
                self.token_accounts[dest_key].amount += amount

            pending.effects.append(mint_tokens)
            return self._commit(self.faucet, ixs, pending)

    # --- transaction machinery -------------------------------------------------------------------

    def resolve(self, to: str | Pubkey) -> Pubkey:
        """A public key from a wallet label, a base-58 string or a Pubkey."""
        if isinstance(to, Pubkey):
            return to
        if to in self.wallets:
            return self.wallets[to].pubkey
        return _pubkey(to)

    def _ensure_ata(self, pending: _Pending, payer: Wallet, owner: Pubkey, token: Mint) -> list[Instruction]:
        ata = associated_token_address(owner, token.address, token.program)
        if ata in self.token_accounts:
            return []
        account = TokenAccount(ata, token, owner)
        rent = rent_exempt_minimum(len(account.data()))
        failure = self._move_lamports(pending, payer.pubkey, ata, rent, 0)
        self._invoke(pending, ASSOCIATED_TOKEN_PROGRAM, ["Create"], 20_000, failure=failure)
        pending.effects.append(lambda: self.token_accounts.setdefault(ata, account))
        return [
            Instruction(
                ASSOCIATED_TOKEN_PROGRAM,
                bytes([1]),  # CreateIdempotent
                [
                    AccountMeta(payer.pubkey, True, True),
                    AccountMeta(ata, False, True),
                    AccountMeta(owner, False, False),
                    AccountMeta(token.address, False, False),
                    AccountMeta(SYSTEM_PROGRAM, False, False),
                    AccountMeta(token.program, False, False),
                ],
            )
        ]

    @staticmethod
    def _invoke(
        pending: _Pending, program: Pubkey, logs: Iterable[str], units: int, failure: str | None = None
    ) -> None:
        """Append the log lines a node prints for one top-level instruction."""
        pending.logs.append(f"Program {program} invoke [1]")
        pending.logs.extend(f"Program log: {line}" for line in logs)
        if failure:
            pending.logs.append(f"Program log: Error: {failure}")
        pending.logs.append(f"Program {program} consumed {units} of {200_000 - pending.units} compute units")
        pending.logs.append(
            f"Program {program} failed: custom program error: 0x1" if failure else f"Program {program} success"
        )
        pending.units += units

    def _move_lamports(self, pending: _Pending, src: Pubkey, dst: Pubkey, lamports: int, ix_index: int) -> str | None:
        """Queue a lamport move; on a shortfall mark the transaction failed and return the log reason."""
        if pending.error is not None:
            return None
        have = self.lamports.get(src, 0) + pending.lamports.get(src, 0) - FEE_PER_SIGNATURE
        if have < lamports:
            # The system program's ResultWithNegativeLamports, as custom error 1.
            pending.error = {"InstructionError": [ix_index, {"Custom": 1}]}
            return "insufficient lamports"
        pending.lamports[src] = pending.lamports.get(src, 0) - lamports
        pending.lamports[dst] = pending.lamports.get(dst, 0) + lamports
        return None

    def _commit(self, payer: Wallet, ixs: list[Instruction], pending: _Pending, *, v0: bool = False) -> str:
        """Sign, apply (or only charge the fee, if an instruction failed) and record one transaction."""
        if self.lamports.get(payer.pubkey, 0) < FEE_PER_SIGNATURE:
            raise LedgerError(f"{payer.label} cannot pay the fee")  # a node rejects this before execution
        self.slot += 1
        blockhash = self.blockhash(self.slot - 1)
        if v0:
            message_v0 = MessageV0.try_compile(payer.pubkey, ixs, [], blockhash)
            signature = str(VersionedTransaction(message_v0, [payer.keypair]).signatures[0])
            message: Message | MessageV0 = message_v0
        else:
            message = Message.new_with_blockhash(ixs, payer.pubkey, blockhash)
            signature = str(Transaction([payer.keypair], message, blockhash).signatures[0])
        keys = list(message.account_keys)

        pre = [self.balance(k) for k in keys]
        pre_tokens = [a.balance_entry(i) for i, k in enumerate(keys) if (a := self.token_accounts.get(k))]
        self.lamports[payer.pubkey] -= FEE_PER_SIGNATURE
        if pending.error is None:  # transactions are atomic: a failed one only costs its fee
            for effect in pending.effects:
                effect()
            for key, delta in pending.lamports.items():
                # A token account's lamports are its rent, derived from its size: nothing to credit.
                if key not in self.token_accounts:
                    self.lamports[key] = self.lamports.get(key, 0) + delta
        post = [self.balance(k) for k in keys]
        post_tokens = [a.balance_entry(i) for i, k in enumerate(keys) if (a := self.token_accounts.get(k))]

        compiled = [
            {
                "programIdIndex": ix.program_id_index,
                "accounts": list(ix.accounts),
                "data": b58encode(bytes(ix.data)),
                "stackHeight": None,
            }
            for ix in message.instructions
        ]
        msg: dict[str, Any] = {
            "accountKeys": [str(k) for k in keys],
            "header": {
                "numRequiredSignatures": message.header.num_required_signatures,
                "numReadonlySignedAccounts": message.header.num_readonly_signed_accounts,
                "numReadonlyUnsignedAccounts": message.header.num_readonly_unsigned_accounts,
            },
            "instructions": compiled,
            "recentBlockhash": str(blockhash),
        }
        if v0:
            msg["addressTableLookups"] = []
        meta = {
            "err": pending.error,
            "status": {"Ok": None} if pending.error is None else {"Err": pending.error},
            "fee": FEE_PER_SIGNATURE,
            "preBalances": pre,
            "postBalances": post,
            "innerInstructions": [],
            "logMessages": pending.logs,
            "preTokenBalances": pre_tokens,
            "postTokenBalances": post_tokens,
            "rewards": [],
            "loadedAddresses": {"writable": [], "readonly": []},
            "computeUnitsConsumed": pending.units,
        }
        block_time = (
            int(time.time()) if self.wall_clock else GENESIS_TIME + int((self.slot - GENESIS_SLOT) * SLOT_SECONDS)
        )
        record = LedgerTransaction(
            signature,
            self.slot,
            block_time,
            0 if v0 else "legacy",
            tuple(str(k) for k in keys),
            {"signatures": [signature], "message": msg},
            meta,
        )
        self.transactions.append(record)
        self.by_signature[signature] = record
        return signature


def _program_name(program: Pubkey) -> str:
    return "spl-token-2022" if program == TOKEN_2022_PROGRAM else "spl-token"


def _pubkey(text: str) -> Pubkey:
    try:
        return Pubkey.from_string(text)
    except ValueError as err:
        raise LedgerError(f"not a public key: {text!r}") from err


# ---------------------------------------------------------------------------------------------------
# The seeded devnet.
# ---------------------------------------------------------------------------------------------------

WALLETS: tuple[tuple[str, bool], ...] = (("alice", True), ("bob", True), ("carol", True), ("dave", False))
NFT_URI = "ipfs://bafydevnetgecko/{n}.json"


def seeded_ledger() -> SolanaLedger:
    """The deterministic Solana devnet: four wallets (dave untracked), a classic SPL token (DUSDC, 6
    decimals), a Token-2022 token (DBONK, 5 decimals), three Metaplex NFTs, and a history of SOL and
    token transfers including one v0 transaction and one that failed."""
    ledger = SolanaLedger()
    for label, tracked in WALLETS:
        ledger.add_wallet(label, tracked=tracked)
    sol = LAMPORTS_PER_SOL
    for label, lamports in (("alice", 12 * sol + sol // 2), ("bob", 3 * sol), ("carol", sol // 2), ("dave", sol)):
        ledger.transfer_sol("faucet", label, lamports)

    usdc = ledger.create_mint("dusdc", symbol="DUSDC", name="Devnet USD Coin", decimals=6)
    bonk = ledger.create_mint("dbonk", symbol="DBONK", name="Devnet Bonk", decimals=5, program=TOKEN_2022_PROGRAM)
    ledger.mint_to(usdc.address, "alice", 1_500 * 10**6)
    ledger.mint_to(usdc.address, "carol", 20 * 10**6 + 250_000)
    ledger.mint_to(bonk.address, "bob", 123_456_789_00000)
    ledger.mint_to(bonk.address, "carol", 5_000_00000)
    geckos = []
    for n, owner in ((1, "alice"), (2, "alice"), (3, "bob")):
        nft = ledger.create_nft(f"gecko {n}", name=f"Devnet Gecko #{n}", symbol="DGECKO", uri=NFT_URI.format(n=n))
        ledger.mint_to(nft.address, owner, 1)
        geckos.append(nft)

    ledger.transfer_sol("alice", "bob", sol // 4)
    ledger.transfer_token("alice", "bob", usdc.address, 25 * 10**6)
    ledger.transfer_token("carol", "dave", bonk.address, 1_000_00000)
    ledger.transfer_token("alice", "carol", geckos[1].address, 1)
    ledger.transfer_sol("bob", "dave", sol // 10, v0=True)
    ledger.transfer_token("carol", "alice", usdc.address, 999 * 10**6)  # fails: carol has 20.25
    ledger.wall_clock = True
    return ledger
