"""Verified addresses of a social profile → rows of the chain workers' wallet list.

A Farcaster verification holds an Ethereum address (`0x` + 20 bytes) or a Solana one (base58, 32
bytes) in the same body. Ethereum addresses are stored EIP-55 checksummed, as the EVM workers do;
each address kind goes to every chain the settings name for it (an Ethereum address is the same
account on every EVM chain).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from eth_utils import is_hex_address, to_checksum_address

_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58_bytes(text: str) -> int:
    number = 0
    for char in text:
        number = number * 58 + _B58_ALPHABET.index(char)
    leading = len(text) - len(text.lstrip("1"))
    return leading + (number.bit_length() + 7) // 8


def address_kind(address: str) -> tuple[str, str]:
    """("evm", checksummed) or ("solana", address); ValueError for anything else."""
    if address.startswith("0x"):
        if not is_hex_address(address):
            raise ValueError(f"not an Ethereum address: {address!r}")
        return "evm", to_checksum_address(address)
    if _BASE58.match(address) and _base58_bytes(address) == 32:
        return "solana", address
    raise ValueError(f"neither an Ethereum nor a Solana address: {address!r}")


def wallet_rows(
    addresses: Iterable[tuple[str, str]], limit: int, evm_chains: Sequence[str], solana_chains: Sequence[str]
) -> list[tuple[str, str]]:
    """(chain, address) for the first `limit` distinct (kind, address) pairs from `address_kind`, in the
    order given: oldest verification first, so a new one never pushes out one already tracked."""
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    for kind, address in addresses:
        if address in seen:
            continue
        if len(seen) >= limit:
            break
        seen.add(address)
        kept += [(chain, address) for chain in (evm_chains if kind == "evm" else solana_chains)]
    return kept
