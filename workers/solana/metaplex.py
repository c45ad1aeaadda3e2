"""Metaplex Token Metadata: where an NFT mint's metadata account lives and how to read it.

The account is Borsh-encoded `MetadataV1`: key (4), update authority, mint, then name, symbol and uri
(u32-LE length + bytes, NUL-padded on chain to 32/10/200), seller fee basis points, optional
creators, two flags, then optional edition nonce and token standard. Fields after `uri` are read
only as far as the data goes, since older accounts end early.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from solders.pubkey import Pubkey

METADATA_PROGRAM = Pubkey.from_string("metaqbxxUerdq28cj1RbAWkYQm3ybzjb6a8bt518x1s")
METADATA_V1_KEY = 4


class MetadataError(ValueError):
    """The account is not Metaplex MetadataV1 (or is cut short before its uri)."""


def metadata_address(mint: Pubkey) -> Pubkey:
    """The metadata PDA of `mint`: seeds ["metadata", program id, mint]."""
    return Pubkey.find_program_address([b"metadata", bytes(METADATA_PROGRAM), bytes(mint)], METADATA_PROGRAM)[0]


@dataclass
class NftMetadata:
    update_authority: str
    mint: str
    name: str
    symbol: str
    uri: str
    seller_fee_basis_points: int | None = None
    creators: list[dict[str, Any]] = field(default_factory=list)
    primary_sale_happened: bool | None = None
    is_mutable: bool | None = None
    edition_nonce: int | None = None
    token_standard: int | None = None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise MetadataError(f"account data ends at byte {len(self.data)}, wanted {self.offset + size}")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def text(self) -> str:
        return self.take(self.u32()).decode("utf-8", "replace").replace("\x00", "").strip()

    def pubkey(self) -> str:
        return str(Pubkey(self.take(32)))


def decode_metadata(data: bytes) -> NftMetadata:
    """Decode a MetadataV1 account; raises MetadataError if it is not one."""
    reader = _Reader(bytes(data))
    if not data or reader.u8() != METADATA_V1_KEY:
        raise MetadataError("not a Metaplex MetadataV1 account")
    meta = NftMetadata(reader.pubkey(), reader.pubkey(), reader.text(), reader.text(), reader.text())
    try:
        meta.seller_fee_basis_points = reader.u16()
        if reader.u8():
            for _ in range(reader.u32()):
                meta.creators.append({"address": reader.pubkey(), "verified": bool(reader.u8()), "share": reader.u8()})
        meta.primary_sale_happened = bool(reader.u8())
        meta.is_mutable = bool(reader.u8())
        meta.edition_nonce = reader.u8() if reader.u8() else None
        meta.token_standard = reader.u8() if reader.u8() else None
    except MetadataError:
        pass  # an older, shorter layout: what was read stands
    return meta
