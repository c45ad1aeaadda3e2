"""Batched contract reads for the EVM worker: many `balanceOf`/`symbol`/`tokenURI` calls and native
balances, all pinned to one block, in as few RPC calls as the node allows.

Three ways, chosen by the `multicall` setting:

- `multicall` — Multicall3 `aggregate3` (at its canonical address on Ethereum, BASE and most chains):
  hundreds of reads per `eth_call`, and those `eth_call`s go out as one JSON-RPC batch;
- `batch` — one `eth_call` / `eth_getBalance` per read, sent as JSON-RPC batches;
- `naive` — one HTTP request per read: only for the benchmark's baseline.

`auto` (the default) uses Multicall3 when the chain has code at its address, else JSON-RPC batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address

from workers.errors import UpstreamError
from workers.evm.rpc import JsonRpcClient, RpcCallError

MULTICALL3_ADDRESS = to_checksum_address("0xcA11bde05977b3631167028862bE2a173976CA11")
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
ZERO_ADDRESS = "0x" + "00" * 20


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


BALANCE_OF = selector("balanceOf(address)")
NAME = selector("name()")
SYMBOL = selector("symbol()")
DECIMALS = selector("decimals()")
TOKEN_URI = selector("tokenURI(uint256)")
AGGREGATE3 = selector("aggregate3((address,bool,bytes)[])")
GET_ETH_BALANCE = selector("getEthBalance(address)")

MODES = ("auto", "multicall", "batch", "naive")


@dataclass(frozen=True)
class Call:
    """A read-only contract call."""

    target: str
    data: bytes


@dataclass(frozen=True)
class NativeBalance:
    """The ETH balance of an address."""

    address: str


Read = Call | NativeBalance


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def balance_of(token: str, wallet: str) -> Call:
    return Call(token, BALANCE_OF + _address_word(wallet))


def token_uri(contract: str, token_id: int) -> Call:
    return Call(contract, TOKEN_URI + _word(token_id))


# aggregate3's ABI coding by hand: eth_abi's generic coder spends ~40 us per element, which is most of
# a 2,000-read cycle. The layout is the standard one for `(address,bool,bytes)[]` / `(bool,bytes)[]`;
# tests check both against eth_abi.


def encode_aggregate3(calls: Sequence[Call]) -> bytes:
    """Calldata of `aggregate3(calls)` with allowFailure set on every call."""
    heads, tails, offset = [], [], 32 * len(calls)
    for call in calls:
        data = call.data
        tail = _address_word(call.target) + _word(1) + _word(0x60) + _word(len(data)) + data + bytes(-len(data) % 32)
        heads.append(_word(offset))
        tails.append(tail)
        offset += len(tail)
    return AGGREGATE3 + _word(0x20) + _word(len(calls)) + b"".join(heads) + b"".join(tails)


def decode_aggregate3(data: bytes) -> list[tuple[bool, bytes]]:
    """The `(bool success, bytes returnData)[]` that aggregate3 returns; ValueError if malformed."""

    def word(at: int) -> int:
        if at + 32 > len(data):
            raise ValueError("aggregate3 answer is cut short")
        return int.from_bytes(data[at : at + 32], "big")

    start = word(0)
    count = word(start)
    base = start + 32
    out = []
    for i in range(count):
        item = base + word(base + 32 * i)
        success = word(item) != 0
        blob = item + word(item + 32)
        length = word(blob)
        if blob + 32 + length > len(data):
            raise ValueError("aggregate3 answer is cut short")
        out.append((success, data[blob + 32 : blob + 32 + length]))
    return out


def decode_uint(data: bytes | None) -> int | None:
    """A uint256 return value; None for a failed call or a non-contract (empty return)."""
    if data is None or len(data) < 32:
        return None
    return int.from_bytes(data[:32], "big")


def decode_text(data: bytes | None) -> str | None:
    """A string return value; also the old bytes32 style (MKR, SAI). NULs and bad UTF-8 are dropped."""
    if not data:
        return None
    try:
        (text,) = decode(["string"], data)
        return str(text).replace("\x00", "")
    except (DecodingError, ValueError, OverflowError):
        pass
    if len(data) == 32:
        return data.rstrip(b"\x00").decode("utf-8", "replace").replace("\x00", "")
    return None


def address_topic(address: str) -> str:
    """An address as an indexed log topic (left-padded to 32 bytes, lowercase hex)."""
    return "0x" + "00" * 12 + address[2:].lower()


def topic_address(topic: str) -> str:
    return to_checksum_address("0x" + topic[-40:])


class ContractReader:
    """Runs many reads at one block number (see the module docstring)."""

    def __init__(
        self,
        client: JsonRpcClient,
        mode: str = "auto",
        multicall_size: int = 500,
        multicall_address: str = MULTICALL3_ADDRESS,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"multicall must be one of {', '.join(MODES)}, not {mode!r}")
        self.client = client
        self.mode = mode
        self.multicall_size = max(1, int(multicall_size))
        self.multicall_address = multicall_address
        self._resolved: str | None = None if mode == "auto" else mode

    def resolved_mode(self) -> str:
        """`multicall` or `batch` for `auto`, decided once by looking for Multicall3's code."""
        if self._resolved is None:
            code = self.client.call("eth_getCode", [self.multicall_address, "latest"])
            self._resolved = "multicall" if code not in (None, "0x", "0x0") else "batch"
        return self._resolved

    def read(self, reads: Sequence[Read], block: int) -> list[Any]:
        """Each read's result, in order: an int for a `NativeBalance`, the return bytes for a `Call`,
        or None where that read failed (a revert, no such contract)."""
        if not reads:
            return []
        mode = self.resolved_mode()
        if mode == "multicall":
            return self._multicall(reads, block)
        if mode == "batch":
            return self._batch(reads, block)
        out = []
        for r, (method, params) in zip(reads, self._rpc(reads, block), strict=True):
            try:
                out.append(self._decode(r, self.client.call(method, params)))
            except RpcCallError:
                out.append(None)
        return out

    # ---- the three ways -------------------------------------------------------------------------

    @staticmethod
    def _rpc(reads: Sequence[Read], block: int) -> list[tuple[str, list[Any]]]:
        tag = hex(block)
        return [
            ("eth_getBalance", [r.address, tag])
            if isinstance(r, NativeBalance)
            else ("eth_call", [{"to": r.target, "data": "0x" + r.data.hex()}, tag])
            for r in reads
        ]

    @staticmethod
    def _decode(read: Read, result: Any) -> Any:
        if isinstance(result, RpcCallError) or result is None:
            return None
        if isinstance(read, NativeBalance):
            return int(result, 16)
        return bytes.fromhex(result[2:]) if isinstance(result, str) and result.startswith("0x") else None

    def _multicall(self, reads: Sequence[Read], block: int) -> list[Any]:
        calls = [
            Call(self.multicall_address, GET_ETH_BALANCE + _address_word(r.address))
            if isinstance(r, NativeBalance)
            else r
            for r in reads
        ]
        chunks = [calls[i : i + self.multicall_size] for i in range(0, len(calls), self.multicall_size)]
        requests = [
            (
                "eth_call",
                [
                    {
                        "to": self.multicall_address,
                        "data": "0x" + encode_aggregate3(chunk).hex(),
                    },
                    hex(block),
                ],
            )
            for chunk in chunks
        ]
        out: list[Any] = []
        for chunk, answer in zip(chunks, self.client.batch(requests), strict=True):
            if isinstance(answer, RpcCallError) or not isinstance(answer, str):
                # The aggregate itself failed (gas cap, a node quirk): fall back to plain batching.
                offset = len(out)
                out.extend(self._batch(reads[offset : offset + len(chunk)], block))
                continue
            try:
                results = decode_aggregate3(bytes.fromhex(answer[2:]))
            except ValueError as exc:
                raise UpstreamError(f"Multicall3 answer did not decode: {exc}") from exc
            if len(results) != len(chunk):
                raise UpstreamError("Multicall3 answered the wrong number of results")
            for (ok, data), read in zip(results, reads[len(out) : len(out) + len(chunk)], strict=True):
                if not ok:
                    out.append(None)
                elif isinstance(read, NativeBalance):
                    out.append(decode_uint(bytes(data)))
                else:
                    out.append(bytes(data))
        return out

    def _batch(self, reads: Sequence[Read], block: int) -> list[Any]:
        return [self._decode(r, res) for r, res in zip(reads, self.client.batch(self._rpc(reads, block)), strict=True)]
