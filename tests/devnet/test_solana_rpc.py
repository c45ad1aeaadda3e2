"""The Solana JSON-RPC stand-in, driven by the unchanged solana-py `AsyncClient` over loopback HTTP."""

from __future__ import annotations

import json
import struct
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.core import RPCException
from solana.rpc.models import TokenAccountOpts
from solders.pubkey import Pubkey
from solders.signature import Signature

from devnet.http_stub import StubProcess, control_request, inject_remote_fault
from devnet.solana_ledger import (
    LAMPORTS_PER_SOL,
    METADATA_PROGRAM,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    SolanaLedger,
    associated_token_address,
    metadata_address,
)
from devnet.solana_rpc import SolanaRpcServer


@pytest.fixture(scope="module")
def server() -> Iterator[SolanaRpcServer]:
    """The seeded node, read-only: tests that change state use `fresh`."""
    with SolanaRpcServer() as srv:
        yield srv


@pytest.fixture
def fresh() -> Iterator[SolanaRpcServer]:
    with SolanaRpcServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_leftover_faults(server: SolanaRpcServer) -> Iterator[None]:
    yield
    server.clear_faults()


@pytest.fixture
async def client(server: SolanaRpcServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, timeout=5) as c:
        yield c


def pk(server: SolanaRpcServer, label: str) -> Pubkey:
    return server.ledger.wallet(label).pubkey


def raw_rpc(url: str, body: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def decode_metaplex(data: bytes) -> dict[str, Any]:
    """Borsh MetadataV1 as laid out in shared/DOMAIN.md: what a worker's decoder has to do."""
    offset = 1 + 32 + 32
    assert data[0] == 4
    out: dict[str, Any] = {"update_authority": Pubkey(data[1:33]), "mint": Pubkey(data[33:65])}
    for field in ("name", "symbol", "uri"):
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        out[field] = data[offset : offset + length].decode().rstrip("\x00")
        offset += length
    (out["seller_fee_basis_points"],) = struct.unpack_from("<H", data, offset)
    offset += 2
    if data[offset]:  # creators: Option<Vec<Creator>>
        (count,) = struct.unpack_from("<I", data, offset + 1)
        offset += 5
        out["creators"] = []
        for _ in range(count):
            out["creators"].append((Pubkey(data[offset : offset + 32]), data[offset + 32], data[offset + 33]))
            offset += 34
    else:
        offset += 1
    out["primary_sale_happened"], out["is_mutable"] = bool(data[offset]), bool(data[offset + 1])
    offset += 2
    out["edition_nonce"] = data[offset + 1] if data[offset] else None
    offset += 2 if data[offset] else 1
    out["token_standard"] = data[offset + 1] if data[offset] else None
    return out


# --- plain reads ----------------------------------------------------------------------------------


async def test_health_slot_and_blockhash(client: AsyncClient, server: SolanaRpcServer) -> None:
    assert await client.is_connected()
    assert (await client.get_slot()).value == server.ledger.slot
    latest = (await client.get_latest_blockhash()).value
    assert str(latest.blockhash) == str(server.ledger.blockhash())
    assert latest.last_valid_block_height > 0


async def test_balances(client: AsyncClient, server: SolanaRpcServer) -> None:
    alice = (await client.get_balance(pk(server, "alice"))).value
    assert alice == server.ledger.balance(pk(server, "alice"))
    # funded 12.5 SOL; paid 0.25 SOL to bob, two fees and the rent of two new token accounts
    assert 12 * LAMPORTS_PER_SOL < alice < 12.25 * LAMPORTS_PER_SOL
    assert (await client.get_balance(Pubkey.new_unique())).value == 0


async def test_fungible_and_nft_token_accounts_for_both_token_programs(
    client: AsyncClient, server: SolanaRpcServer
) -> None:
    bob = pk(server, "bob")
    classic = (
        await client.get_token_accounts_by_owner_json_parsed(bob, TokenAccountOpts(program_id=TOKEN_PROGRAM))
    ).value
    t22 = (
        await client.get_token_accounts_by_owner_json_parsed(bob, TokenAccountOpts(program_id=TOKEN_2022_PROGRAM))
    ).value
    holdings = {}
    for entry in classic + t22:
        info = entry.account.data.parsed["info"]
        holdings[server.ledger.mint(Pubkey.from_string(info["mint"])).symbol] = info["tokenAmount"]
        assert Pubkey.from_string(info["owner"]) == bob
        assert entry.pubkey == associated_token_address(bob, Pubkey.from_string(info["mint"]), entry.account.owner)
    assert holdings["DUSDC"] == {"amount": "25000000", "decimals": 6, "uiAmount": 25.0, "uiAmountString": "25"}
    assert holdings["DBONK"]["amount"] == "12345678900000" and holdings["DBONK"]["decimals"] == 5
    assert holdings["DGECKO"]["amount"] == "1" and holdings["DGECKO"]["decimals"] == 0
    assert [e.account.owner for e in t22] == [TOKEN_2022_PROGRAM]
    assert t22[0].account.data.program == "spl-token-2022"


async def test_token_accounts_by_mint_and_as_raw_bytes(client: AsyncClient, server: SolanaRpcServer) -> None:
    alice = pk(server, "alice")
    usdc = server.ledger.mint("DUSDC")
    raw = (await client.get_token_accounts_by_owner(alice, TokenAccountOpts(mint=usdc.address))).value
    assert len(raw) == 1
    data = raw[0].account.data
    assert len(data) == 165
    assert Pubkey(data[:32]) == usdc.address and Pubkey(data[32:64]) == alice
    assert struct.unpack_from("<Q", data, 64)[0] == 1_475 * 10**6


async def test_nft_metadata_decodes_from_the_metaplex_pda(client: AsyncClient, server: SolanaRpcServer) -> None:
    alice = pk(server, "alice")
    accounts = (
        await client.get_token_accounts_by_owner_json_parsed(alice, TokenAccountOpts(program_id=TOKEN_PROGRAM))
    ).value
    nft_mints = [
        Pubkey.from_string(a.account.data.parsed["info"]["mint"])
        for a in accounts
        if a.account.data.parsed["info"]["tokenAmount"]["amount"] == "1"
        and a.account.data.parsed["info"]["tokenAmount"]["decimals"] == 0
    ]
    assert len(nft_mints) == 1  # #2 went to carol; alice keeps an empty token account for it
    pda = Pubkey.find_program_address([b"metadata", bytes(METADATA_PROGRAM), bytes(nft_mints[0])], METADATA_PROGRAM)[0]
    assert pda == metadata_address(nft_mints[0])
    info = (await client.get_account_info(pda)).value
    assert info is not None and info.owner == METADATA_PROGRAM and len(info.data) == 679
    meta = decode_metaplex(info.data)
    assert meta["mint"] == nft_mints[0]
    assert (meta["name"], meta["symbol"], meta["uri"]) == (
        "Devnet Gecko #1",
        "DGECKO",
        "ipfs://bafydevnetgecko/1.json",
    )
    assert meta["seller_fee_basis_points"] == 500 and meta["token_standard"] == 0
    assert meta["creators"] == [(server.ledger.faucet.pubkey, 1, 100)]


async def test_multiple_accounts_and_json_parsed_mint(client: AsyncClient, server: SolanaRpcServer) -> None:
    mint = server.ledger.mint("DUSDC")
    missing = Pubkey.new_unique()
    values = (await client.get_multiple_accounts([pk(server, "carol"), mint.address, missing])).value
    assert (
        values[0] is not None
        and values[0].data == b""
        and values[0].lamports == server.ledger.balance(pk(server, "carol"))
    )
    assert values[1] is not None and len(values[1].data) == 82 and values[1].owner == TOKEN_PROGRAM
    assert values[2] is None
    parsed = (await client.get_account_info_json_parsed(mint.address)).value
    assert parsed is not None
    assert parsed.data.parsed["info"]["decimals"] == 6
    assert parsed.data.parsed["info"]["supply"] == str(1_520_250_000)


# --- history --------------------------------------------------------------------------------------


async def test_signatures_are_newest_first_and_page(client: AsyncClient, server: SolanaRpcServer) -> None:
    alice = pk(server, "alice")
    every = [tx.signature for tx in server.ledger.signatures_for(alice)]
    assert len(every) >= 6
    first = (await client.get_signatures_for_address(alice, limit=2)).value
    assert [str(s.signature) for s in first] == every[:2]
    assert first[0].slot > first[1].slot and first[0].block_time >= first[1].block_time
    rest = (await client.get_signatures_for_address(alice, before=first[-1].signature, limit=1000)).value
    assert [str(s.signature) for s in rest] == every[2:]
    until = (await client.get_signatures_for_address(alice, until=Signature.from_string(every[3]))).value
    assert [str(s.signature) for s in until] == every[:3]
    unknown = Signature.new_unique()
    assert (await client.get_signatures_for_address(alice, before=unknown)).value == []
    assert len((await client.get_signatures_for_address(alice, until=unknown)).value) == len(every)


async def test_transactions_parse_with_meta(client: AsyncClient, server: SolanaRpcServer) -> None:
    bob = pk(server, "bob")
    for entry in (await client.get_signatures_for_address(bob)).value:
        tx = (await client.get_transaction(entry.signature, max_supported_transaction_version=0)).value
        assert tx is not None and tx.slot == entry.slot and tx.block_time == entry.block_time
        assert tx.transaction.meta is not None and tx.transaction.meta.fee == 5000
        keys = tx.transaction.transaction.message.account_keys
        assert bob in keys
        assert tx.transaction.transaction.signatures[0] == entry.signature
        meta = tx.transaction.meta
        assert len(meta.pre_balances) == len(meta.post_balances) == len(keys)


async def test_a_sol_transfer_balances_out(client: AsyncClient, server: SolanaRpcServer) -> None:
    alice, bob = pk(server, "alice"), pk(server, "bob")
    sig = next(
        tx.signature
        for tx in server.ledger.signatures_for(alice)
        if bob in [Pubkey.from_string(k) for k in tx.account_keys] and len(tx.account_keys) == 3
    )
    tx = (await client.get_transaction(Signature.from_string(sig), max_supported_transaction_version=0)).value
    assert tx is not None and tx.transaction.meta is not None
    meta, keys = tx.transaction.meta, tx.transaction.transaction.message.account_keys
    a, b = keys.index(alice), keys.index(bob)
    assert meta.pre_balances[a] - meta.post_balances[a] == LAMPORTS_PER_SOL // 4 + 5000
    assert meta.post_balances[b] - meta.pre_balances[b] == LAMPORTS_PER_SOL // 4


async def test_failed_transaction_and_token_balances(client: AsyncClient, server: SolanaRpcServer) -> None:
    carol = pk(server, "carol")
    newest = (await client.get_signatures_for_address(carol, limit=1)).value[0]
    assert newest.err is not None  # the seeded overdraft
    tx = (await client.get_transaction(newest.signature, max_supported_transaction_version=0)).value
    assert tx is not None and tx.transaction.meta is not None
    meta = tx.transaction.meta
    assert meta.err == newest.err
    assert [b.ui_token_amount.amount for b in meta.pre_token_balances] == [
        b.ui_token_amount.amount for b in meta.post_token_balances
    ]
    assert any("insufficient funds" in line for line in meta.log_messages or [])


async def test_v0_transactions_need_max_supported_version(client: AsyncClient, server: SolanaRpcServer) -> None:
    v0 = next(tx for tx in server.ledger.transactions if tx.version == 0)
    with pytest.raises(RPCException, match="maxSupportedTransactionVersion"):
        await client.get_transaction(Signature.from_string(v0.signature))
    tx = (await client.get_transaction(Signature.from_string(v0.signature), max_supported_transaction_version=0)).value
    assert tx is not None and tx.transaction.version == 0
    legacy = server.ledger.transactions[0]
    assert (await client.get_transaction(Signature.from_string(legacy.signature))).value is not None


async def test_unknown_transaction_is_null(client: AsyncClient) -> None:
    assert (await client.get_transaction(Signature.default(), max_supported_transaction_version=0)).value is None


# --- errors ---------------------------------------------------------------------------------------


async def test_bad_params_are_json_rpc_errors(client: AsyncClient, server: SolanaRpcServer) -> None:
    with pytest.raises(RPCException, match="Invalid limit"):
        await client.get_signatures_for_address(pk(server, "alice"), limit=1001)
    bad_pubkey = raw_rpc(server.url, {"jsonrpc": "2.0", "id": 7, "method": "getBalance", "params": ["not-a-key"]})
    assert bad_pubkey["id"] == 7 and bad_pubkey["error"]["code"] == -32602
    unknown = raw_rpc(server.url, {"jsonrpc": "2.0", "id": 1, "method": "getNothing", "params": []})
    assert unknown["error"]["code"] == -32601
    assert raw_rpc(server.url, b"{nope")["error"]["code"] == -32700
    program = raw_rpc(
        server.url,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getTokenAccountsByOwner",
            "params": [str(pk(server, "alice")), {"programId": str(METADATA_PROGRAM)}, {"encoding": "jsonParsed"}],
        },
    )
    assert program["error"]["code"] == -32602


def test_batches_answer_each_call(server: SolanaRpcServer) -> None:
    answers = raw_rpc(
        server.url,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
            {"jsonrpc": "2.0", "id": 2, "method": "getBalance", "params": ["bad"]},
        ],
    )
    assert answers[0] == {"jsonrpc": "2.0", "result": server.ledger.slot, "id": 1}
    assert answers[1]["error"]["code"] == -32602


# --- faults ---------------------------------------------------------------------------------------


async def test_429_raises_solana_rpc_exception_with_retry_after(client: AsyncClient, server: SolanaRpcServer) -> None:
    server.inject_fault("429", retry_after=3)
    with pytest.raises(SolanaRpcException) as caught:
        await client.get_balance(pk(server, "alice"))
    cause = caught.value.__cause__
    assert isinstance(cause, httpx2.HTTPStatusError)
    assert cause.response.status_code == 429 and cause.response.headers["Retry-After"] == "3"
    assert (await client.get_balance(pk(server, "alice"))).value > 0  # one fault, then normal


async def test_500_raises_solana_rpc_exception(client: AsyncClient, server: SolanaRpcServer) -> None:
    server.inject_fault("500")
    with pytest.raises(SolanaRpcException) as caught:
        await client.get_slot()
    assert isinstance(caught.value.__cause__, httpx2.HTTPStatusError)


async def test_rpc_error_fault_hits_only_its_method(client: AsyncClient, server: SolanaRpcServer) -> None:
    server.inject_fault("rpc_error", count=1, method="getBalance")
    assert (await client.get_slot()).value > 0
    with pytest.raises(RPCException, match="behind"):
        await client.get_balance(pk(server, "alice"))
    assert (await client.get_balance(pk(server, "alice"))).value > 0


async def test_slow_answers_time_out(server: SolanaRpcServer) -> None:
    # solana-py retries a transport error once, so two slow answers are needed to see the failure.
    server.inject_fault("slow", count=2, delay=1.0)
    async with AsyncClient(server.url, timeout=0.2) as c:
        started = time.monotonic()
        with pytest.raises(SolanaRpcException) as caught:
            await c.get_slot()
        assert isinstance(caught.value.__cause__, httpx2.TimeoutException)
        assert time.monotonic() - started < 1.5


# --- changing state at run time -------------------------------------------------------------------


async def test_runtime_transfers_show_up(fresh: SolanaRpcServer) -> None:
    ledger: SolanaLedger = fresh.ledger
    alice, dave = ledger.wallet("alice").pubkey, ledger.wallet("dave").pubkey
    usdc = ledger.mint("DUSDC").address
    before = ledger.balance(dave)
    sig = ledger.transfer_sol("alice", "dave", 1234)
    creating = ledger.transfer_token("bob", "dave", "DUSDC", 5 * 10**6)  # creates dave's DUSDC account
    plain = ledger.transfer_token("bob", "dave", "DUSDC", 1)
    async with AsyncClient(fresh.url) as c:
        assert (await c.get_balance(dave)).value == before + 1234
        newest = (await c.get_signatures_for_address(alice, limit=1)).value[0]
        assert str(newest.signature) == sig and abs(newest.block_time - time.time()) < 60
        # As on a real node, a transfer into an existing token account lists under that account only;
        # the one that created it also names the owner's wallet (the ATA program takes it as input).
        ata = associated_token_address(dave, usdc, TOKEN_PROGRAM)
        by_ata = [str(s.signature) for s in (await c.get_signatures_for_address(ata)).value]
        by_wallet = [str(s.signature) for s in (await c.get_signatures_for_address(dave, limit=2)).value]
        assert by_ata == [plain, creating]
        assert by_wallet == [creating, sig]
        held = (await c.get_token_accounts_by_owner_json_parsed(dave, TokenAccountOpts(mint=usdc))).value
        assert held[0].account.data.parsed["info"]["tokenAmount"]["amount"] == "5000001"
    ledger.set_balance(dave, 7)
    assert ledger.balance(dave) == 7


def test_runs_as_a_process_with_http_controls() -> None:
    with StubProcess("devnet.solana_rpc", ["--port", "0"], python=sys.executable) as proc:
        assert proc.url.startswith("http://127.0.0.1:")
        seed = control_request(proc.url, "GET", "/_devnet/seed")
        labels = {w["label"]: w for w in seed["wallets"]}
        assert {"alice", "bob", "carol", "dave"} <= labels.keys() and labels["alice"]["tracked"]
        assert {m["symbol"] for m in seed["mints"]} >= {"DUSDC", "DBONK", "DGECKO"}

        moved = control_request(proc.url, "POST", "/_devnet/transfer", {"from": "bob", "to": "carol", "lamports": 99})
        answer = raw_rpc(
            proc.url,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "getSignaturesForAddress",
                "params": [labels["carol"]["pubkey"], {"limit": 1}],
            },
        )
        assert answer["result"][0]["signature"] == moved["signature"]

        inject_remote_fault(
            proc.url, "rpc_error", count=1, method="getSlot", code=-32004, message="Block not available"
        )
        faulted = raw_rpc(proc.url, {"jsonrpc": "2.0", "id": 1, "method": "getSlot"})
        assert faulted["error"] == {"code": -32004, "message": "Block not available"}
        inject_remote_fault(proc.url, "429", count=1)
        with pytest.raises(urllib.error.HTTPError) as caught:
            raw_rpc(proc.url, {"jsonrpc": "2.0", "id": 1, "method": "getSlot"})
        assert caught.value.code == 429
        assert raw_rpc(proc.url, {"jsonrpc": "2.0", "id": 1, "method": "getSlot"})["result"] == moved["slot"]
