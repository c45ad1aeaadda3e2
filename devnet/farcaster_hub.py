"""Farcaster hub stand-in on loopback: the `/v1/...` HTTP read API of Hubble/Snapchain, seeded with a
deterministic social graph, so the Farcaster worker syncs against it unchanged and offline.

What it serves (GET, JSON, shapes from the hub docs and `message.proto`; see shared/DOMAIN.md §3):
`/v1/info`, `/v1/castsByFid`, `/v1/castById`, `/v1/castsByParent` (`fid`+`hash` or `url`),
`/v1/castsByMention`, `/v1/userDataByFid` (list, or one message with `user_data_type`),
`/v1/reactionsByFid`, `/v1/reactionsByCast`, `/v1/linksByFid`, `/v1/linksByTargetFid`,
`/v1/verificationsByFid`. Removals (`remove_cast`, `remove_reaction`, `remove_follow`,
`remove_verification`) take the message out of every listing, as a merged remove message does on a
real hub: the per-fid listings show only what is live.
Lists page with `pageSize` and an opaque `pageToken`; `nextPageToken` is `""` on the last page;
`reverse=1` gives newest first. Bad requests get the hub's `HubError` JSON with HTTP 400.

The data comes from `random.Random(seed)`: the same seed gives byte-identical answers, so tests can
compare database rows with `hub.cast_counts()` and friends. Casts arrive over ~120 days ending
2025-06-01 (Farcaster-epoch timestamps), a few users post most of them, about a third are replies,
some live in channels (`parentUrl`), some mention users (mentions cut out of `text`, byte offsets in
`mentionsPositions`, with emoji so bytes and characters differ) and some embed links or quote casts.
Likes and recasts point at real casts, follows form a skewed graph, and every user has a username,
display name, bio, pfp and (usually) a URL. `add_cast()` and friends add data at run time, from Python
or over `POST /_devnet/casts` for a hub in another process, to test incremental sync.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import random
import struct
import sys
import threading
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from devnet.http_stub import (
    Fault,
    HttpError,
    Request,
    Response,
    StubServer,
    add_server_arguments,
    retry_after_headers,
    serve_until_signal,
)

FARCASTER_EPOCH = 1_609_459_200  # 2021-01-01T00:00:00Z in unix seconds
HISTORY_END = 1_748_736_000 - FARCASTER_EPOCH  # seeded data ends 2025-06-01, in Farcaster time
HISTORY_DAYS = 120
NETWORK = "FARCASTER_NETWORK_MAINNET"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

CAST_ADD = "MESSAGE_TYPE_CAST_ADD"
REACTION_ADD = "MESSAGE_TYPE_REACTION_ADD"
LINK_ADD = "MESSAGE_TYPE_LINK_ADD"
USER_DATA_ADD = "MESSAGE_TYPE_USER_DATA_ADD"
VERIFICATION_ADD = "MESSAGE_TYPE_VERIFICATION_ADD_ETH_ADDRESS"  # Ethereum and Solana share this body
LIKE = "REACTION_TYPE_LIKE"
RECAST = "REACTION_TYPE_RECAST"
REACTION_TYPES = {"1": LIKE, "2": RECAST, LIKE: LIKE, RECAST: RECAST, "LIKE": LIKE, "RECAST": RECAST}
USER_DATA_TYPES = {
    1: "USER_DATA_TYPE_PFP",
    2: "USER_DATA_TYPE_DISPLAY",
    3: "USER_DATA_TYPE_BIO",
    5: "USER_DATA_TYPE_URL",
    6: "USER_DATA_TYPE_USERNAME",
}
USER_DATA_NUMBERS = {name: number for number, name in USER_DATA_TYPES.items()}


def unix_time(farcaster_timestamp: int) -> int:
    """Unix seconds of a hub `timestamp` (seconds since the Farcaster epoch)."""
    return farcaster_timestamp + FARCASTER_EPOCH


def farcaster_time(unix_seconds: float) -> int:
    return int(unix_seconds) - FARCASTER_EPOCH


def render_text(text: str, mentions: Sequence[int], positions: Sequence[int], names: dict[int, str]) -> str:
    """Put `@username` back into a cast's text at its byte offsets, as a client displays it."""
    raw = text.encode()
    out, last = [], 0
    for fid, pos in zip(mentions, positions, strict=True):
        out += [raw[last:pos].decode(), "@" + names.get(fid, f"fid:{fid}")]
        last = pos
    out.append(raw[last:].decode())
    return "".join(out)


# ---------------------------------------------------------------------------------------------------
# Messages: the JSON a hub returns, built once and kept as dicts.
# ---------------------------------------------------------------------------------------------------

Key = tuple[int, bytes]  # (timestamp, hash): the order a hub iterates a fid's messages in


@lru_cache(maxsize=4096)
def _signer(fid: int, seed: int) -> str:
    """Each fid signs with one stable Ed25519 app key (a 32-byte public key)."""
    return "0x" + hashlib.blake2b(f"signer:{seed}:{fid}".encode(), digest_size=32).hexdigest()


def make_message(data: dict[str, Any], seed: int) -> dict[str, Any]:
    """Wrap `data` as a signed hub message. The hash is a digest of the data (BLAKE2b standing in for
    the hub's BLAKE3, truncated to 20 bytes like the real one), so equal data means equal hash.
    `repr` rather than canonical JSON: the dicts are built in a fixed field order, and it is ~5x faster,
    which keeps start-up well under a second."""
    digest = hashlib.blake2b(repr(data).encode(), digest_size=20).digest()
    signature = hashlib.blake2b(digest + seed.to_bytes(8, "little"), digest_size=64).digest()
    return {
        "data": data,
        "hash": "0x" + digest.hex(),
        "hashScheme": "HASH_SCHEME_BLAKE3",
        "signature": base64.b64encode(signature).decode(),
        "signatureScheme": "SIGNATURE_SCHEME_ED25519",
        "signer": _signer(int(data["fid"]), seed),
    }


def message_key(message: dict[str, Any]) -> Key:
    return int(message["data"]["timestamp"]), bytes.fromhex(message["hash"][2:])


def cast_data(
    fid: int,
    timestamp: int,
    text: str,
    *,
    mentions: Sequence[int] = (),
    mentions_positions: Sequence[int] = (),
    embeds: Sequence[dict[str, Any]] = (),
    parent_cast_id: dict[str, Any] | None = None,
    parent_url: str | None = None,
) -> dict[str, Any]:
    """`data` of a CastAdd. Field order follows the protobuf JSON; the parent is a oneof."""
    if len(mentions) != len(mentions_positions):
        raise ValueError("mentions and mentions_positions must have the same length")
    if parent_cast_id is not None and parent_url is not None:
        raise ValueError("a cast has parent_cast_id or parent_url, not both")
    if len(text.encode()) > 1024:
        raise ValueError("cast text is limited to 1024 bytes")
    body: dict[str, Any] = {"embedsDeprecated": [], "mentions": list(mentions)}
    if parent_cast_id is not None:
        body["parentCastId"] = {"fid": int(parent_cast_id["fid"]), "hash": str(parent_cast_id["hash"])}
    body["text"] = text
    body["mentionsPositions"] = list(mentions_positions)
    body["embeds"] = [dict(e) for e in embeds]
    if parent_url is not None:
        body["parentUrl"] = parent_url
    return {"type": CAST_ADD, "fid": fid, "timestamp": timestamp, "network": NETWORK, "castAddBody": body}


def reaction_data(fid: int, timestamp: int, reaction_type: str, target_fid: int, target_hash: str) -> dict:
    body = {"type": reaction_type, "targetCastId": {"fid": target_fid, "hash": target_hash}}
    return {"type": REACTION_ADD, "fid": fid, "timestamp": timestamp, "network": NETWORK, "reactionBody": body}


def link_data(fid: int, timestamp: int, target_fid: int) -> dict[str, Any]:
    body = {"type": "follow", "targetFid": target_fid}
    return {"type": LINK_ADD, "fid": fid, "timestamp": timestamp, "network": NETWORK, "linkBody": body}


def verification_data(fid: int, timestamp: int, address: str, block_hash: str) -> dict[str, Any]:
    signature = base64.b64encode(hashlib.blake2b(f"{fid}:{address}".encode()).digest() + b"\x1b").decode()  # r, s, v
    body = {"address": address, "ethSignature": signature, "blockHash": block_hash}
    return {
        "type": VERIFICATION_ADD,
        "fid": fid,
        "timestamp": timestamp,
        "network": NETWORK,
        "verificationAddEthAddressBody": body,
    }


def user_data_data(fid: int, timestamp: int, type_name: str, value: str) -> dict[str, Any]:
    body = {"type": type_name, "value": value}
    return {"type": USER_DATA_ADD, "fid": fid, "timestamp": timestamp, "network": NETWORK, "userDataBody": body}


# ---------------------------------------------------------------------------------------------------
# The store: sorted indexes answering every list endpoint, shared by HTTP handlers and tests.
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Index:
    """Messages sorted by (timestamp, hash). A page token is the key of the last message returned,
    so paging stays correct when casts are added between pages (the real hub behaves the same)."""

    keys: list[Key] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def add(self, message: dict[str, Any]) -> None:
        key = message_key(message)
        at = bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.messages.insert(at, message)

    def remove(self, message: dict[str, Any]) -> None:
        at = bisect_left(self.keys, message_key(message))
        if at < len(self.keys) and self.messages[at]["hash"] == message["hash"]:
            del self.keys[at], self.messages[at]

    def page(self, size: int, after: Key | None, reverse: bool) -> tuple[list[dict[str, Any]], Key | None]:
        if not reverse:
            start = 0 if after is None else bisect_right(self.keys, after)
            chunk = self.messages[start : start + size]
            more = start + size < len(self.keys)
        else:
            end = len(self.keys) if after is None else bisect_left(self.keys, after)
            chunk = self.messages[max(0, end - size) : end][::-1]
            more = end - size > 0
        return chunk, (message_key(chunk[-1]) if more and chunk else None)


class HubStore:
    """Everything the hub knows, indexed the ways the HTTP API asks. Thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fids: set[int] = set()
        self.casts_by_fid: defaultdict[int, _Index] = defaultdict(_Index)
        self.casts_by_parent: defaultdict[tuple[int, str] | str, _Index] = defaultdict(_Index)
        self.casts_by_mention: defaultdict[int, _Index] = defaultdict(_Index)
        self.cast_by_id: dict[tuple[int, str], dict[str, Any]] = {}
        self.reactions_by_fid: defaultdict[tuple[int, str | None], _Index] = defaultdict(_Index)
        self.reactions_by_cast: defaultdict[tuple[int, str, str | None], _Index] = defaultdict(_Index)
        self.reaction_ids: set[tuple[int, str, int, str]] = set()
        self.links_by_fid: defaultdict[int, _Index] = defaultdict(_Index)
        self.links_by_target: defaultdict[int, _Index] = defaultdict(_Index)
        self.link_ids: set[tuple[int, int]] = set()
        self.user_data: defaultdict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.verifications_by_fid: defaultdict[int, _Index] = defaultdict(_Index)
        self.message_count = 0
        self.last_hash = ""

    def add(self, message: dict[str, Any]) -> dict[str, Any]:
        """Index one message (CastAdd, ReactionAdd, LinkAdd or UserDataAdd) and return it."""
        data = message["data"]
        fid = int(data["fid"])
        with self.lock:
            self.fids.add(fid)
            kind = data["type"]
            if kind == CAST_ADD:
                self._add_cast(fid, message)
            elif kind == REACTION_ADD:
                body = data["reactionBody"]
                target = body["targetCastId"]
                ident = (fid, body["type"], int(target["fid"]), target["hash"])
                if ident in self.reaction_ids:
                    raise ValueError(f"fid {fid} already reacted {body['type']} to {target['hash']}")
                self.reaction_ids.add(ident)
                for index in (self.reactions_by_fid[(fid, None)], self.reactions_by_fid[(fid, body["type"])]):
                    index.add(message)
                for reaction_type in (None, body["type"]):
                    self.reactions_by_cast[(int(target["fid"]), target["hash"], reaction_type)].add(message)
            elif kind == LINK_ADD:
                target_fid = int(data["linkBody"]["targetFid"])
                if (fid, target_fid) in self.link_ids:
                    raise ValueError(f"fid {fid} already follows {target_fid}")
                self.link_ids.add((fid, target_fid))
                self.links_by_fid[fid].add(message)
                self.links_by_target[target_fid].add(message)
            elif kind == VERIFICATION_ADD:
                self.verifications_by_fid[fid].add(message)
            elif kind == USER_DATA_ADD:
                # User data is last-write-wins per type, like the hub's UserDataStore.
                self.user_data[fid][data["userDataBody"]["type"]] = message
            else:
                raise ValueError(f"unsupported message type {kind}")
            self.message_count += 1
            self.last_hash = message["hash"]
        return message

    def _add_cast(self, fid: int, message: dict[str, Any]) -> None:
        body = message["data"]["castAddBody"]
        self.cast_by_id[(fid, message["hash"])] = message
        self.casts_by_fid[fid].add(message)
        if "parentCastId" in body:
            parent = body["parentCastId"]
            self.casts_by_parent[(int(parent["fid"]), parent["hash"])].add(message)
        elif "parentUrl" in body:
            self.casts_by_parent[body["parentUrl"]].add(message)
        for mentioned in set(body["mentions"]):
            self.casts_by_mention[int(mentioned)].add(message)

    def remove(self, message: dict[str, Any]) -> None:
        """Take a cast, reaction, follow or verification out of every listing (a merged remove)."""
        data = message["data"]
        fid, kind = int(data["fid"]), data["type"]
        with self.lock:
            if kind == CAST_ADD:
                body = data["castAddBody"]
                self.cast_by_id.pop((fid, message["hash"]), None)
                self.casts_by_fid[fid].remove(message)
                if "parentCastId" in body:
                    parent = body["parentCastId"]
                    self.casts_by_parent[(int(parent["fid"]), parent["hash"])].remove(message)
                elif "parentUrl" in body:
                    self.casts_by_parent[body["parentUrl"]].remove(message)
                for mentioned in set(body["mentions"]):
                    self.casts_by_mention[int(mentioned)].remove(message)
            elif kind == REACTION_ADD:
                body = data["reactionBody"]
                target = body["targetCastId"]
                self.reaction_ids.discard((fid, body["type"], int(target["fid"]), target["hash"]))
                for index in (self.reactions_by_fid[(fid, None)], self.reactions_by_fid[(fid, body["type"])]):
                    index.remove(message)
                for reaction_type in (None, body["type"]):
                    self.reactions_by_cast[(int(target["fid"]), target["hash"], reaction_type)].remove(message)
            elif kind == LINK_ADD:
                target_fid = int(data["linkBody"]["targetFid"])
                self.link_ids.discard((fid, target_fid))
                self.links_by_fid[fid].remove(message)
                self.links_by_target[target_fid].remove(message)
            elif kind == VERIFICATION_ADD:
                self.verifications_by_fid[fid].remove(message)
            else:
                raise ValueError(f"cannot remove a {kind}")
            self.message_count += 1

    def find(self, index: _Index | None, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        with self.lock:
            return next((m for m in (index.messages if index else []) if match(m)), None)

    def page(
        self, index: _Index | None, size: int, after: Key | None, reverse: bool
    ) -> tuple[list[dict[str, Any]], Key | None]:
        if index is None:
            return [], None
        with self.lock:
            return index.page(size, after, reverse)


# ---------------------------------------------------------------------------------------------------
# Seeding: a deterministic, plausible slice of Farcaster.
# ---------------------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    """A word list written as one string: easier to read and extend than a column of literals."""
    return tuple(text.split())


_FIRST = _words(
    "alice bob carol dan erin frank grace heidi ivan judy mallory niaj olivia peggy rupert sybil "
    "trent victor walter yuki zoe ana ben chen dmitri emeka fatima goran hana ines jonas kofi lena "
    "mateo noor omar priya quinn rosa sven tariq uma vera wei xochitl yara zain"
)
_LAST = _words("chen garcia kim nguyen okafor patel rossi schmidt silva tanaka novak kowalski mensah haddad")
_HANDLE_SUFFIX = ("", "", ".eth", "builds", "onchain", "xyz", "dev", "gm")
_TOPICS = (
    "the new L2 fee market",
    "account abstraction",
    "frames v2",
    "restaking",
    "zk proofs in the browser",
    "Base gas prices",
    "onchain summer",
    "my first Solidity audit",
    "a tiny indexer in Rust",
    "EIP-4844 blobs",
    "stablecoin rails",
    "the Farcaster protocol",
    "decentralised social",
    "MEV on rollups",
    "wallet UX",
    "token-gated channels",
    "a Postgres-backed job queue",
    "Snapchain sync times",
    "ENS subnames",
    "NFT royalties",
)
_OPENERS = ("gm", "hot take:", "TIL", "shipping", "thinking about", "question:", "reminder:", "ok so", "PSA:")
_CLOSERS = (
    "what am I missing?",
    "thoughts?",
    "more soon",
    "wild times",
    "👀",
    "🚀",
    "🫡",
    "lfg",
    "not financial advice",
    "bullish",
    "🧵 below",
    "",
)
_REPLIES = (
    "this is great",
    "agree, and the tooling is finally there",
    "strong disagree tbh",
    "source?",
    "100%",
    "been saying this for months 😅",
    "how does it compare to last year?",
    "love this",
    "can you share the repo?",
    "huge if true",
    "ser this is a casino",
    "following",
)
_CHANNELS = (
    "https://warpcast.com/~/channel/ethereum",
    "https://warpcast.com/~/channel/base",
    "https://warpcast.com/~/channel/dev",
    "https://warpcast.com/~/channel/farcaster",
    "https://warpcast.com/~/channel/memes",
    "chain://eip155:1/erc721:0x39d89b649ffa044383333d297e325d42d31329b2",
)
_LINK_HOSTS = ("https://github.com/", "https://mirror.xyz/", "https://paragraph.xyz/@", "https://x.com/")
_BIOS = (
    "building onchain",
    "protocol engineer",
    "designer. coffee. cats.",
    "researching rollups",
    "founder @ a stealth startup",
    "writing about decentralised social",
    "solidity + rust",
    "collector, occasional degen",
    "ETH since 2017",
    "making tools for builders",
)


@dataclass(frozen=True)
class SeedSpec:
    """How much data to generate. Defaults: ~50 users, ~3000 casts, ~2-3 reactions per cast."""

    seed: int = 1
    fids: int = 50
    casts: int = 3000
    reactions_per_cast: float = 2.5
    follows_per_fid: int = 12


class _Seeder:
    """Generates the seeded dataset in time order into a `HubStore`."""

    def __init__(self, spec: SeedSpec, store: HubStore) -> None:
        self.spec = spec
        self.store = store
        self.rng = random.Random(spec.seed)
        self.usernames: dict[int, str] = {}

    def run(self) -> None:
        fids = self._fids()
        popularity = {fid: self.rng.paretovariate(1.6) for fid in fids}
        self._user_data(fids)
        self._follows(fids, popularity)
        casts = self._casts(fids, popularity)
        self._reactions(fids, casts)

    def _fids(self) -> list[int]:
        # A few early users (small fids) and the rest spread over the registered range.
        early = self.rng.sample(range(2, 2_000), k=min(5, self.spec.fids))
        rest = self.rng.sample(range(2_000, 900_000), k=max(0, self.spec.fids - len(early)))
        return sorted(set(early + rest))

    def _user_data(self, fids: list[int]) -> None:
        taken: set[str] = set()
        start = HISTORY_END - (HISTORY_DAYS + 400) * 86_400
        for fid in fids:
            first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
            handle = first + self.rng.choice(_HANDLE_SUFFIX)
            while handle in taken:
                handle = f"{first}{self.rng.randrange(2, 999)}"
            taken.add(handle)
            self.usernames[fid] = handle
            values = {
                "USER_DATA_TYPE_USERNAME": handle,
                "USER_DATA_TYPE_DISPLAY": f"{first.capitalize()} {last.capitalize()}",
                "USER_DATA_TYPE_BIO": self.rng.choice(_BIOS),
                "USER_DATA_TYPE_PFP": f"https://i.imgur.com/{self._token(7)}.jpg",
            }
            if self.rng.random() < 0.7:
                values["USER_DATA_TYPE_URL"] = f"https://{handle.replace('.', '-')}.xyz"
            ts = start + self.rng.randrange(0, 300 * 86_400)
            for type_name, value in values.items():
                self.store.add(make_message(user_data_data(fid, ts, type_name, value), self.spec.seed))
                ts += self.rng.randrange(1, 600)

    def _follows(self, fids: list[int], popularity: dict[int, float]) -> None:
        start = HISTORY_END - (HISTORY_DAYS + 200) * 86_400
        weights = [popularity[f] for f in fids]
        for fid in fids:
            wanted = min(len(fids) - 1, max(1, int(self.rng.expovariate(1 / self.spec.follows_per_fid))))
            targets: set[int] = set()
            for _ in range(wanted * 4):  # bounded: popular targets get picked repeatedly
                if len(targets) >= wanted:
                    break
                target = self.rng.choices(fids, weights)[0]
                if target != fid:
                    targets.add(target)
            for target in sorted(targets):
                ts = start + self.rng.randrange(0, (HISTORY_DAYS + 200) * 86_400)
                self.store.add(make_message(link_data(fid, ts, target), self.spec.seed))

    def _casts(self, fids: list[int], popularity: dict[int, float]) -> list[dict[str, Any]]:
        start = HISTORY_END - HISTORY_DAYS * 86_400
        times = sorted(self.rng.randrange(start, HISTORY_END) for _ in range(self.spec.casts))
        weights = [popularity[f] for f in fids]
        authors = self.rng.choices(fids, weights, k=self.spec.casts)
        casts: list[dict[str, Any]] = []
        for ts, fid in zip(times, authors, strict=True):
            roll = self.rng.random()
            parent_cast_id = parent_url = None
            if casts and roll < 0.32:
                # Replies mostly go to recent casts; conversations cluster in time.
                parent = casts[-1 - min(len(casts) - 1, int(self.rng.expovariate(1 / 40)))]["message"]
                parent_cast_id = {"fid": parent["data"]["fid"], "hash": parent["hash"]}
                text = self.rng.choice(_REPLIES)
                mentions: list[int] = []
                positions: list[int] = []
            else:
                if roll < 0.52:
                    parent_url = self.rng.choice(_CHANNELS)
                text, mentions, positions = self._text(fid, fids)
            embeds = self._embeds(casts)
            data = cast_data(
                fid,
                ts,
                text,
                mentions=mentions,
                mentions_positions=positions,
                embeds=embeds,
                parent_cast_id=parent_cast_id,
                parent_url=parent_url,
            )
            message = self.store.add(make_message(data, self.spec.seed))
            casts.append({"message": message})
        return [c["message"] for c in casts]

    def _text(self, fid: int, fids: list[int]) -> tuple[str, list[int], list[int]]:
        """A post, and sometimes mentions cut out of it, as the hub stores them."""
        topic = self.rng.choice(_TOPICS)
        opener, closer = self.rng.choice(_OPENERS), self.rng.choice(_CLOSERS)
        others = [f for f in fids if f != fid]
        n_mentions = 0 if not others else self.rng.choices((0, 1, 2), (70, 22, 8))[0]
        if n_mentions == 0:
            return f"{opener} {topic} {closer}".strip(), [], []
        mentioned = self.rng.sample(others, k=n_mentions)
        # "gm 🌞 " + @a + " what do you think of <topic>?" (+ " cc " + @b)
        pieces: list[str | int] = [f"{opener} 🌞 ", mentioned[0], f" what do you think of {topic}?"]
        if n_mentions == 2:
            pieces += [" cc ", mentioned[1]]
        text, mentions, positions = "", [], []
        for piece in pieces:
            if isinstance(piece, int):
                mentions.append(piece)
                positions.append(len(text.encode()))
            else:
                text += piece
        return text, mentions, positions

    def _embeds(self, casts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        roll = self.rng.random()
        if roll < 0.2:
            return [{"url": self.rng.choice(_LINK_HOSTS) + self._token(8)}]
        if roll < 0.26:
            return [{"url": f"https://i.imgur.com/{self._token(7)}.png"}]
        if roll < 0.3 and casts:
            quoted = self.rng.choice(casts)["message"]
            return [{"castId": {"fid": quoted["data"]["fid"], "hash": quoted["hash"]}}]
        return []

    def _reactions(self, fids: list[int], casts: list[dict[str, Any]]) -> None:
        seen: set[tuple[int, str, str]] = set()
        for cast in casts:
            author, ts = cast["data"]["fid"], cast["data"]["timestamp"]
            n = min(len(fids) - 1, int(self.rng.expovariate(1 / self.spec.reactions_per_cast)))
            for _ in range(n):
                fid = self.rng.choice(fids)
                reaction_type = LIKE if self.rng.random() < 0.8 else RECAST
                if fid == author or (fid, reaction_type, cast["hash"]) in seen:
                    continue
                seen.add((fid, reaction_type, cast["hash"]))
                when = min(HISTORY_END, ts + int(self.rng.expovariate(1 / 7200)) + 1)
                data = reaction_data(fid, when, reaction_type, author, cast["hash"])
                self.store.add(make_message(data, self.spec.seed))

    def _token(self, n: int) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return "".join(self.rng.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------------------------------------------
# HTTP: query parsing, HubError, routes.
# ---------------------------------------------------------------------------------------------------


def hub_error(status: int, err_code: str, details: str) -> HttpError:
    """A HubError response, as Hubble's HTTP server writes one."""
    body = {
        "errCode": err_code,
        "presentable": False,
        "name": "HubError",
        "code": 3 if err_code.startswith("bad_request") else 5,
        "details": details,
        "metadata": {"errcode": [err_code]},
    }
    return HttpError(Response.json(body, status))


def _invalid(details: str) -> HttpError:
    return hub_error(400, "bad_request.validation_failure", details)


def _int_arg(request: Request, name: str) -> int:
    raw = request.arg(name)
    if raw is None or raw == "":
        raise _invalid(f"{name} is required")
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise _invalid(f"{name} must be non-negative")
    return value


def _hash_arg(request: Request, name: str) -> str:
    raw = (request.arg(name) or "").lower()
    body = raw.removeprefix("0x")
    if len(body) != 40 or any(c not in "0123456789abcdef" for c in body):
        raise _invalid(f"{name} must be a 20-byte 0x-prefixed hex string")
    return "0x" + body


def encode_page_token(key: Key) -> str:
    return base64.urlsafe_b64encode(struct.pack(">I", key[0]) + key[1]).decode()


def decode_page_token(token: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise _invalid("pageToken is not valid") from None
    if len(raw) != 24:
        raise _invalid("pageToken is not valid")
    return struct.unpack(">I", raw[:4])[0], raw[4:]


@dataclass(frozen=True)
class PageOptions:
    size: int
    after: Key | None
    reverse: bool


class FarcasterHub(StubServer):
    """The hub stand-in. `FarcasterHub(seed=7).start()`, then point the worker at `hub.url`.

    `api_key`: when set, every `/v1/` request needs header `x-api-key: <api_key>` (Neynar-style);
    otherwise no auth (a self-run hub). `fids`/`casts` size the seeded data.
    """

    name = "farcaster-hub"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 1,
        fids: int = 50,
        casts: int = 3000,
        api_key: str | None = None,
        default_page_size: int = DEFAULT_PAGE_SIZE,
        max_page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        super().__init__(host, port)
        self.seed = seed
        self.api_key = api_key
        self.default_page_size = default_page_size
        self.max_page_size = max_page_size
        self.store = HubStore()
        seeder = _Seeder(SeedSpec(seed=seed, fids=fids, casts=casts), self.store)
        seeder.run()
        self._seeded_fids = sorted(self.store.fids)
        self._routes = {
            "/v1/info": self._info,
            "/v1/castsByFid": self._casts_by_fid,
            "/v1/castById": self._cast_by_id,
            "/v1/castsByParent": self._casts_by_parent,
            "/v1/castsByMention": self._casts_by_mention,
            "/v1/userDataByFid": self._user_data_by_fid,
            "/v1/reactionsByFid": self._reactions_by_fid,
            "/v1/reactionsByCast": self._reactions_by_cast,
            "/v1/linksByFid": self._links_by_fid,
            "/v1/linksByTargetFid": self._links_by_target_fid,
            "/v1/verificationsByFid": self._verifications_by_fid,
        }

    # --- dataset, for tests ----------------------------------------------------------------------

    @property
    def fids(self) -> list[int]:
        """Every fid with at least one message, ascending."""
        with self.store.lock:
            return sorted(self.store.fids)

    def casts(self, fid: int) -> list[dict[str, Any]]:
        """The fid's casts, oldest first (the order `castsByFid` pages them in)."""
        with self.store.lock:
            index = self.store.casts_by_fid.get(fid)
            return list(index.messages) if index else []

    def all_casts(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [m for index in self.store.casts_by_fid.values() for m in index.messages]

    def cast(self, fid: int, hash_: str) -> dict[str, Any] | None:
        with self.store.lock:
            return self.store.cast_by_id.get((fid, hash_.lower()))

    def cast_count(self, fid: int) -> int:
        return len(self.casts(fid))

    def cast_counts(self) -> dict[int, int]:
        """{fid: number of casts} for every fid that has cast."""
        with self.store.lock:
            return {fid: len(index.keys) for fid, index in self.store.casts_by_fid.items() if index.keys}

    def replies(self, fid: int, hash_: str) -> list[dict[str, Any]]:
        with self.store.lock:
            index = self.store.casts_by_parent.get((fid, hash_.lower()))
            return list(index.messages) if index else []

    def reactions(self, fid: int, reaction_type: str | None = None) -> list[dict[str, Any]]:
        """The fid's reactions (optionally only `REACTION_TYPE_LIKE` / `..._RECAST`), oldest first."""
        kind = None if reaction_type is None else REACTION_TYPES[reaction_type.upper()]
        with self.store.lock:
            index = self.store.reactions_by_fid.get((fid, kind))
            return list(index.messages) if index else []

    def following(self, fid: int) -> list[int]:
        """Fids that `fid` follows."""
        with self.store.lock:
            index = self.store.links_by_fid.get(fid)
            return sorted(m["data"]["linkBody"]["targetFid"] for m in index.messages) if index else []

    def followers(self, fid: int) -> list[int]:
        with self.store.lock:
            index = self.store.links_by_target.get(fid)
            return sorted(m["data"]["fid"] for m in index.messages) if index else []

    def user_data(self, fid: int) -> dict[str, str]:
        """{"USER_DATA_TYPE_USERNAME": "alice", ...} for the fid."""
        with self.store.lock:
            return {t: m["data"]["userDataBody"]["value"] for t, m in self.store.user_data.get(fid, {}).items()}

    def usernames(self) -> dict[int, str]:
        with self.store.lock:
            return {
                fid: data["USER_DATA_TYPE_USERNAME"]["data"]["userDataBody"]["value"]
                for fid, data in self.store.user_data.items()
                if "USER_DATA_TYPE_USERNAME" in data
            }

    def totals(self) -> dict[str, int]:
        """Counts of everything, for comparing with database rows."""
        with self.store.lock:
            return {
                "fids": len(self.store.fids),
                "casts": len(self.store.cast_by_id),
                "reactions": len(self.store.reaction_ids),
                "likes": sum(1 for r in self.store.reaction_ids if r[1] == LIKE),
                "recasts": sum(1 for r in self.store.reaction_ids if r[1] == RECAST),
                "links": len(self.store.link_ids),
                "user_data": sum(len(v) for v in self.store.user_data.values()),
                "messages": self.store.message_count,
            }

    def describe(self) -> dict[str, Any]:
        return {"totals": self.totals()}

    # --- adding data at run time -----------------------------------------------------------------

    def _now(self, fid: int) -> int:
        """Current Farcaster time, but never before the fid's newest cast (seeded data may be later
        than a machine's clock in tests with a frozen or odd clock)."""
        now = farcaster_time(time.time())
        with self.store.lock:
            index = self.store.casts_by_fid.get(fid)
            newest = index.keys[-1][0] if index and index.keys else 0
        return max(now, newest + 1)

    def add_cast(
        self,
        fid: int,
        text: str,
        *,
        mentions: Sequence[int] = (),
        mentions_positions: Sequence[int] = (),
        embeds: Iterable[dict[str, Any]] = (),
        parent_cast_id: dict[str, Any] | None = None,
        parent_url: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """Publish a new cast (now, unless `timestamp` in Farcaster time is given); returns the message."""
        data = cast_data(
            fid,
            self._now(fid) if timestamp is None else timestamp,
            text,
            mentions=mentions,
            mentions_positions=mentions_positions,
            embeds=list(embeds),
            parent_cast_id=parent_cast_id,
            parent_url=parent_url,
        )
        return self.store.add(make_message(data, self.seed))

    def add_reaction(
        self, fid: int, target_fid: int, target_hash: str, reaction_type: str = LIKE, timestamp: int | None = None
    ) -> dict[str, Any]:
        kind = REACTION_TYPES[reaction_type.upper()]
        ts = self._now(fid) if timestamp is None else timestamp
        return self.store.add(make_message(reaction_data(fid, ts, kind, target_fid, target_hash), self.seed))

    def add_follow(self, fid: int, target_fid: int, timestamp: int | None = None) -> dict[str, Any]:
        ts = self._now(fid) if timestamp is None else timestamp
        return self.store.add(make_message(link_data(fid, ts, target_fid), self.seed))

    def set_user_data(self, fid: int, type_name: str, value: str, timestamp: int | None = None) -> dict:
        """Set e.g. `USER_DATA_TYPE_DISPLAY` (or its number, 2) for a new or existing fid."""
        name = USER_DATA_TYPES.get(int(type_name), "") if type_name.isdigit() else type_name
        if name not in USER_DATA_NUMBERS:
            raise ValueError(f"unknown user data type {type_name!r}")
        ts = self._now(fid) if timestamp is None else timestamp
        return self.store.add(make_message(user_data_data(fid, ts, name, value), self.seed))

    def add_verification(self, fid: int, address: str, timestamp: int | None = None) -> dict[str, Any]:
        """Verify an Ethereum (`0x…`) or Solana (base58) address for `fid`."""
        ts = self._now(fid) if timestamp is None else timestamp
        block = "0x" + hashlib.blake2b(f"block:{ts}".encode(), digest_size=32).hexdigest()
        return self.store.add(make_message(verification_data(fid, ts, address, block), self.seed))

    def verifications(self, fid: int) -> list[str]:
        with self.store.lock:
            index = self.store.verifications_by_fid.get(fid)
            return [m["data"]["verificationAddEthAddressBody"]["address"] for m in (index.messages if index else [])]

    def remove_cast(self, fid: int, hash_: str) -> None:
        message = self.cast(fid, hash_)
        if message is None:
            raise ValueError(f"no cast {fid}/{hash_}")
        self.store.remove(message)

    def remove_reaction(self, fid: int, target_hash: str, reaction_type: str = LIKE) -> None:
        kind = REACTION_TYPES[reaction_type.upper()]
        message = self.store.find(
            self.store.reactions_by_fid.get((fid, kind)),
            lambda m: m["data"]["reactionBody"]["targetCastId"]["hash"] == target_hash,
        )
        if message is None:
            raise ValueError(f"fid {fid} has no {kind} on {target_hash}")
        self.store.remove(message)

    def remove_follow(self, fid: int, target_fid: int) -> None:
        message = self.store.find(
            self.store.links_by_fid.get(fid), lambda m: int(m["data"]["linkBody"]["targetFid"]) == target_fid
        )
        if message is None:
            raise ValueError(f"fid {fid} does not follow {target_fid}")
        self.store.remove(message)

    def remove_verification(self, fid: int, address: str) -> None:
        message = self.store.find(
            self.store.verifications_by_fid.get(fid),
            lambda m: m["data"]["verificationAddEthAddressBody"]["address"].lower() == address.lower(),
        )
        if message is None:
            raise ValueError(f"fid {fid} has not verified {address}")
        self.store.remove(message)

    # --- HTTP ------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.method != "GET":
            raise hub_error(405, "bad_request", f"{request.method} is not supported; the read API is GET")
        if self.api_key is not None and request.header("x-api-key") != self.api_key:
            raise hub_error(401, "unauthorized", "a valid x-api-key header is required")
        route = self._routes.get(request.path.rstrip("/"))
        if route is None:
            raise hub_error(404, "not_found", f"no such endpoint: {request.path}")
        return Response.json(route(request))

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "429":
            err = hub_error(429, "unavailable.rate_limited", "rate limit exceeded (devnet fault)")
            err.response.headers.update(retry_after_headers(fault))
            return err.response
        return hub_error(500, "unavailable.storage_failure", "internal error (devnet fault)").response

    def _page_options(self, request: Request) -> PageOptions:
        size = self.default_page_size
        if request.arg("pageSize"):
            size = _int_arg(request, "pageSize")
            if size == 0:
                raise _invalid("pageSize must be positive")
        token = request.arg("pageToken") or ""
        reverse = (request.arg("reverse") or "").lower() in ("1", "true")
        return PageOptions(min(size, self.max_page_size), decode_page_token(token) if token else None, reverse)

    def _list(self, index: _Index | None, request: Request) -> dict[str, Any]:
        options = self._page_options(request)
        messages, next_key = self.store.page(index, options.size, options.after, options.reverse)
        return {"messages": messages, "nextPageToken": encode_page_token(next_key) if next_key else ""}

    def _info(self, request: Request) -> dict[str, Any]:
        with self.store.lock:
            count, last = self.store.message_count, self.store.last_hash
            fid_count = len(self.store.fids)
        root = hashlib.blake2b(f"{count}:{last}".encode(), digest_size=20).hexdigest()
        return {
            "version": "1.19.1",
            "isSyncing": False,
            "nickname": "devnet-hub",
            "rootHash": root,
            "dbStats": {"numMessages": count, "numFidEvents": fid_count, "numFnameEvents": fid_count},
            "peerId": "12D3KooW" + hashlib.blake2b(str(self.seed).encode(), digest_size=16).hexdigest(),
            "hubOperatorFid": self._seeded_fids[0] if self._seeded_fids else 0,
        }

    def _casts_by_fid(self, request: Request) -> dict[str, Any]:
        return self._list(self.store.casts_by_fid.get(_int_arg(request, "fid")), request)

    def _cast_by_id(self, request: Request) -> dict[str, Any]:
        fid, hash_ = _int_arg(request, "fid"), _hash_arg(request, "hash")
        message = self.cast(fid, hash_)
        if message is None:
            raise hub_error(404, "not_found", f"cast {fid}/{hash_} not found")
        return message

    def _casts_by_parent(self, request: Request) -> dict[str, Any]:
        url = request.arg("url")
        if url:
            return self._list(self.store.casts_by_parent.get(url), request)
        if request.arg("fid") is None and request.arg("hash") is None:
            raise _invalid("castsByParent needs fid and hash, or url")
        key = (_int_arg(request, "fid"), _hash_arg(request, "hash"))
        return self._list(self.store.casts_by_parent.get(key), request)

    def _casts_by_mention(self, request: Request) -> dict[str, Any]:
        return self._list(self.store.casts_by_mention.get(_int_arg(request, "fid")), request)

    def _user_data_by_fid(self, request: Request) -> dict[str, Any]:
        fid = _int_arg(request, "fid")
        raw_type = request.arg("user_data_type")
        if not raw_type:
            with self.store.lock:
                messages = sorted(self.store.user_data.get(fid, {}).values(), key=message_key)
            index = _Index([message_key(m) for m in messages], messages)
            return self._list(index, request)
        type_name = USER_DATA_TYPES.get(int(raw_type)) if raw_type.isdigit() else raw_type.upper()
        if type_name not in USER_DATA_NUMBERS:
            raise _invalid(f"user_data_type {raw_type!r} is not a known UserDataType")
        with self.store.lock:
            message = self.store.user_data.get(fid, {}).get(type_name)
        if message is None:
            raise hub_error(404, "not_found", f"no {type_name} for fid {fid}")
        return message

    def _reaction_type(self, request: Request) -> str | None:
        raw = request.arg("reaction_type")
        if not raw:
            return None
        kind = REACTION_TYPES.get(raw.upper())
        if kind is None:
            raise _invalid(f"reaction_type {raw!r} is not 1, 2, REACTION_TYPE_LIKE or REACTION_TYPE_RECAST")
        return kind

    def _reactions_by_fid(self, request: Request) -> dict[str, Any]:
        key = (_int_arg(request, "fid"), self._reaction_type(request))
        return self._list(self.store.reactions_by_fid.get(key), request)

    def _reactions_by_cast(self, request: Request) -> dict[str, Any]:
        fid, hash_ = _int_arg(request, "target_fid"), _hash_arg(request, "target_hash")
        key = (fid, hash_, self._reaction_type(request))
        return self._list(self.store.reactions_by_cast.get(key), request)

    def _link_type_ok(self, request: Request) -> bool:
        return (request.arg("link_type") or "follow") == "follow"

    def _links_by_fid(self, request: Request) -> dict[str, Any]:
        fid = _int_arg(request, "fid")
        index = self.store.links_by_fid.get(fid) if self._link_type_ok(request) else None
        return self._list(index, request)

    def _links_by_target_fid(self, request: Request) -> dict[str, Any]:
        fid = _int_arg(request, "target_fid")
        index = self.store.links_by_target.get(fid) if self._link_type_ok(request) else None
        return self._list(index, request)

    def _verifications_by_fid(self, request: Request) -> dict[str, Any]:
        index = self.store.verifications_by_fid.get(_int_arg(request, "fid"))
        address = (request.arg("address") or "").lower()
        if address and index is not None:
            with self.store.lock:
                chosen = [
                    m
                    for m in index.messages
                    if m["data"]["verificationAddEthAddressBody"]["address"].lower() == address
                ]
            index = _Index([message_key(m) for m in chosen], chosen)
        return self._list(index, request)

    # --- control endpoints for a hub in another process ------------------------------------------

    def handle_control(self, request: Request) -> Response | None:
        """`POST /_devnet/casts|reactions|follows` add data; `GET /_devnet/dataset` reads it back."""
        path = request.path.rstrip("/")
        if path == "/_devnet/dataset" and request.method == "GET":
            counts = {str(fid): n for fid, n in self.cast_counts().items()}
            return Response.json({"fids": self.fids, "castCounts": counts, "totals": self.totals()})
        if request.method != "POST" or path not in ("/_devnet/casts", "/_devnet/reactions", "/_devnet/follows"):
            return None
        spec = request.json()
        try:
            if path == "/_devnet/casts":
                message = self.add_cast(
                    int(spec["fid"]),
                    str(spec.get("text", "")),
                    mentions=spec.get("mentions", ()),
                    mentions_positions=spec.get("mentionsPositions", ()),
                    embeds=spec.get("embeds", ()),
                    parent_cast_id=spec.get("parentCastId"),
                    parent_url=spec.get("parentUrl"),
                    timestamp=spec.get("timestamp"),
                )
            elif path == "/_devnet/reactions":
                message = self.add_reaction(
                    int(spec["fid"]), int(spec["targetFid"]), str(spec["targetHash"]), str(spec.get("type", LIKE))
                )
            else:
                message = self.add_follow(int(spec["fid"]), int(spec["targetFid"]))
        except (KeyError, TypeError, ValueError) as err:
            raise _invalid(f"bad devnet request: {err!r}") from err
        return Response.json(message)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m devnet.farcaster_hub --port N --seed S`: serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m devnet.farcaster_hub", description=__doc__.splitlines()[0])
    add_server_arguments(parser)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fids", type=int, default=50, help="number of users")
    parser.add_argument("--casts", type=int, default=3000, help="number of casts in total")
    parser.add_argument("--api-key", default=None, help="require this x-api-key header (default: no auth)")
    args = parser.parse_args(argv)
    hub = FarcasterHub(args.host, args.port, seed=args.seed, fids=args.fids, casts=args.casts, api_key=args.api_key)
    return serve_until_signal(hub)


if __name__ == "__main__":
    sys.exit(main())
