"""The farcaster worker: casts, profiles, follows and reactions of chosen fids, read from a Farcaster
Hub's HTTP API (Hubble or Snapchain `/v1/...`, or a hosted hub such as Neynar's) into the social tables.

Which fids: the `fids` setting (the `farcaster_fids` row), plus up to `follow_expansion_limit` more
found breadth first along their follows. For each fid, every cycle: its user data (→ `profiles`),
then its casts (→ `external_posts`), reactions (→ `reactions`) and follows (→ `follows`), each paged
oldest first with the hub's page tokens. Every page is written together with the fid's cursor
(`sync_cursors`, key `fid:<fid>`) in one transaction, so a restart resumes at the last commit. The
last page is read again next cycle to pick up what was added since; messages already stored are
recognised by their (timestamp, hash) key, which is the order hubs page in, and skipped.

Removals: a hub's per-fid listings show only live messages, so every `removal_check_s` each fid's
casts, reactions and follows are listed in full and stored rows missing from the listing are marked
`deleted_at` (never deleted). This was chosen over the hub's event stream because hubs keep events
for a limited window only: a worker that was down longer would have to re-list anyway, and re-listing
needs nothing but the endpoints already in use. Its cost is one full listing per fid per check.

Verified wallets: each fid's verified Ethereum and Solana addresses (`/v1/verificationsByFid`)
become rows of `wallets` linked to the profile (`profile_id`, source `farcaster`), at most
`max_linked_wallets` addresses per profile, for the chains named by `evm_chains` / `solana_chains`;
an address no longer verified stops being tracked. The chain workers pick them up by themselves.
Each part can be switched off by its flag (`FEATURES`).

Settings: `hub_url`, `fids`, `follow_expansion_limit` (0), `page_size` (1000), `timeout_s` (10),
`retries` (2, for 5xx, timeouts and broken replies), `requests_per_minute` (0: unpaced). The API key
of a hosted hub comes only from the environment, `FARCASTER_HUB_API_KEY`, sent as `x-api-key`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from pydantic import Field

from sql import query
from workers.base import CycleResult, Worker, describe
from workers.errors import NotConfigured, RateLimited, UpstreamError
from workers.pacing import Pacer, retry_after_seconds
from workers.settings import WorkerSettings
from workers.social.store import (
    FollowRow,
    PostRow,
    ProfileRow,
    ReactionRow,
    SocialStore,
    clean_text,
    to_json,
)
from workers.social.wallets import address_kind, wallet_rows

PLATFORM = "farcaster"
API_KEY_ENV = "FARCASTER_HUB_API_KEY"
FARCASTER_EPOCH = 1_609_459_200  # hub timestamps count seconds from 2021-01-01T00:00:00Z

CAST_ADD = "MESSAGE_TYPE_CAST_ADD"
REACTION_ADD = "MESSAGE_TYPE_REACTION_ADD"
LINK_ADD = "MESSAGE_TYPE_LINK_ADD"
USER_DATA_ADD = "MESSAGE_TYPE_USER_DATA_ADD"
REACTION_KINDS = {"REACTION_TYPE_LIKE": "like", "REACTION_TYPE_RECAST": "recast"}

Message = dict[str, Any]

#: The parts switched by `farcaster_<feature>_enabled` flags (seeded by the manager; see workers/features.py).
FEATURES = {
    "reactions": "Sync the likes and recasts of tracked fids",
    "follows": "Sync the follows of tracked fids (and expand along them)",
    "wallets": "Add tracked fids' verified Ethereum/Solana addresses to the chain workers' wallets",
}
Key = tuple[int, str]  # (timestamp, hash): the order a hub pages a fid's messages in


class HubRejected(Exception):
    """The hub refused one request (a 4xx other than 401, 403 and 429): that fid is recorded as
    failed and skipped; the cycle goes on with the others."""


# ---- messages → rows (pure functions) -------------------------------------------------------------


def unix_seconds(farcaster_timestamp: Any) -> float:
    return float(int(farcaster_timestamp) + FARCASTER_EPOCH)


def message_key(message: Message) -> Key:
    return int(message["data"]["timestamp"]), _hash(message["hash"])


def _hash(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"not a 0x-hex hash: {value!r}")
    return value.lower()


def _data(message: Message, expected_type: str) -> dict[str, Any]:
    data = message["data"]
    if data.get("type") != expected_type:
        raise ValueError(f"expected a {expected_type}, got {data.get('type')!r}")
    return dict(data)


def cast_row(message: Message, username: str | None = None) -> PostRow:
    """A CastAdd as an `external_posts` row. `body` is the text as the hub holds it (mentions cut
    out); `mentions` keeps each mentioned fid with its byte offset, so a reader can put them back."""
    data = _data(message, CAST_ADD)
    body = data["castAddBody"]
    text = body["text"]
    if not isinstance(text, str):
        raise ValueError("castAddBody.text is not a string")
    mentions = [
        {"fid": int(fid), "position": int(position)}
        for fid, position in zip(body.get("mentions") or [], body.get("mentionsPositions") or [], strict=True)
    ]
    embeds = body.get("embeds") or []
    if not isinstance(embeds, list):
        raise ValueError("castAddBody.embeds is not a list")
    parent = body.get("parentCastId")
    return PostRow(
        platform=PLATFORM,
        external_id=_hash(message["hash"]),
        author_external_id=str(int(data["fid"])),
        author_name=username,
        title=None,
        body=clean_text(text) or "",
        url=None,
        parent_external_id=_hash(parent["hash"]) if parent else None,
        root_external_id=None,
        channel=body.get("parentUrl"),
        mentions=to_json(mentions),
        embeds=to_json(embeds),
        score=None,
        created_epoch=unix_seconds(data["timestamp"]),
        raw=to_json(message),
    )


def reaction_row(message: Message) -> ReactionRow:
    data = _data(message, REACTION_ADD)
    body = data["reactionBody"]
    kind = REACTION_KINDS.get(body["type"])
    if kind is None:
        raise ValueError(f"unknown reaction type {body['type']!r}")
    target = body.get("targetCastId")
    target_id = _hash(target["hash"]) if target else str(body["targetUrl"])
    return ReactionRow(PLATFORM, str(int(data["fid"])), kind, target_id, unix_seconds(data["timestamp"]))


def follow_row(message: Message) -> FollowRow | None:
    """A LinkAdd of type follow; other link types are not follows (None)."""
    data = _data(message, LINK_ADD)
    body = data["linkBody"]
    if body.get("type") != "follow":
        return None
    when = body.get("displayTimestamp") or data["timestamp"]
    return FollowRow(PLATFORM, str(int(data["fid"])), str(int(body["targetFid"])), unix_seconds(when))


def profile_row(fid: int, messages: Sequence[Message]) -> ProfileRow | None:
    """The fid's profile from its UserDataAdd messages (the newest value of each type wins)."""
    values: dict[str, str] = {}
    for message in sorted(messages, key=message_key):
        body = _data(message, USER_DATA_ADD)["userDataBody"]
        values[str(body["type"])] = clean_text(str(body["value"])) or ""
    if not values:
        return None
    return ProfileRow(
        platform=PLATFORM,
        external_id=str(fid),
        username=values.get("USER_DATA_TYPE_USERNAME"),
        display_name=values.get("USER_DATA_TYPE_DISPLAY"),
        bio=values.get("USER_DATA_TYPE_BIO"),
        avatar_url=values.get("USER_DATA_TYPE_PFP"),
        url=values.get("USER_DATA_TYPE_URL"),
        raw=to_json(values),
    )


# ---- the hub ---------------------------------------------------------------------------------------


class HubClient:
    """One attempt per call at the hub's read API; failures come out as the worker's error types."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float) -> None:
        headers = {"accept": "application/json", "user-agent": "worker-manager-farcaster/0.1"}
        if api_key:
            headers["x-api-key"] = api_key
        self.has_key = bool(api_key)
        self.timeout_s = timeout_s
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self.http.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"hub timed out on {path} (after {self.timeout_s:g} s)") from exc
        except httpx.HTTPError as exc:  # refused, reset, closed mid-reply
            raise UpstreamError(f"hub unreachable on {path}: {describe(exc)}") from exc
        status = response.status_code
        if status == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"), 60.0)
            raise RateLimited(f"hub rate limit on {path} (HTTP 429)", wait)
        if status in (401, 403):
            hint = f"check {API_KEY_ENV}" if self.has_key else f"a hosted hub needs {API_KEY_ENV} set"
            raise UpstreamError(f"hub refused {path} (HTTP {status}): {hint}")
        if status >= 500:
            raise UpstreamError(f"hub error on {path}: HTTP {status}{_hub_detail(response)}")
        if status >= 400:
            raise HubRejected(f"hub rejected {path} for fid {params.get('fid')}: HTTP {status}{_hub_detail(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamError(f"malformed JSON from hub on {path} ({len(response.content)} bytes)") from exc

    def close(self) -> None:
        self.http.close()


def _hub_detail(response: httpx.Response) -> str:
    """The HubError `details` when the body has one (hub errors are JSON with errCode/details)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict) and body.get("details"):
        return f" ({body.get('errCode', '')}: {str(body['details'])[:200]})"
    return ""


# ---- the worker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stream:
    """One per-fid list the hub pages: where, and how its messages become rows."""

    name: str  # its field in the fid's cursor
    feature: str | None  # the `farcaster_<feature>_enabled` flag that switches it, if any
    path: str
    params: dict[str, str]
    row: Callable[[Message, str | None], Any]
    write: Callable[[SocialStore, psycopg.Connection[Any], list[Any], Callable[[str, str], None]], int]


STREAMS = (
    _Stream("casts", None, "/v1/castsByFid", {}, cast_row, SocialStore.write_posts),
    _Stream(
        "reactions", "reactions", "/v1/reactionsByFid", {}, lambda m, _: reaction_row(m), SocialStore.write_reactions
    ),
    _Stream(
        "links",
        "follows",
        "/v1/linksByFid",
        {"link_type": "follow"},
        lambda m, _: follow_row(m),
        SocialStore.write_follows,
    ),
)


VERIFICATIONS = _Stream("verifications", "wallets", "/v1/verificationsByFid", {}, lambda m, _: None, lambda *_: 0)
REMOVAL_QUERIES = {
    "casts": query("mark_removed_casts", "social.sql"),
    "reactions": query("mark_removed_reactions", "social.sql"),
    "links": query("mark_removed_follows", "social.sql"),
}


def parse_fids(value: Any) -> list[int]:
    """The `fids` setting: a JSON list, or a comma-separated string as `${FARCASTER_FIDS}` gives."""
    if value in (None, "", []):
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise NotConfigured(f"fids must be a list of fids, got {value!r}")
    fids: list[int] = []
    for item in items:
        try:
            fid = int(str(item).strip())
        except ValueError:
            raise NotConfigured(f"fids must be positive integers, got {item!r}") from None
        if fid <= 0:
            raise NotConfigured(f"fids must be positive integers, got {item!r}")
        if fid not in fids:
            fids.append(fid)
    return fids


class FarcasterSettings(WorkerSettings):
    hub_url: str | None = None
    api_key: Any = None  # refused by validate(): hub keys come from the environment only
    fids: Any = []  # a JSON list or a comma-separated string; parse_fids() checks it
    follow_expansion_limit: int = Field(default=0, ge=0)
    page_size: int = Field(default=1000, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    retries: int = Field(default=2, ge=0)
    requests_per_minute: float = Field(default=0, ge=0)  # 0: no pacing
    removal_check_s: float = Field(default=3600, ge=0)  # how often each fid is re-listed in full (0: every cycle)
    max_linked_wallets: int = Field(default=10, ge=0)  # verified addresses tracked per profile
    evm_chains: list[str] = ["ethereum", "base"]  # chain workers an Ethereum address is tracked on
    solana_chains: list[str] = ["solana"]


class FarcasterWorker(Worker[Message]):
    settings_model = FarcasterSettings
    settings: FarcasterSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = SocialStore()
        self.pacer = Pacer()
        self._hub: HubClient | None = None
        self._checked: dict[int, float] = {}  # fid -> when its removals were last checked (monotonic)

    def validate(self) -> None:
        hub_url = self.settings.hub_url or ""
        if not hub_url:
            raise NotConfigured("hub_url is not set (set FARCASTER_HUB_URL or workers.farcaster.hub_url)")
        if not hub_url.startswith(("http://", "https://")):
            raise NotConfigured(f"hub_url must be an http(s) URL, got {hub_url!r}")
        if self.settings.api_key is not None:
            raise NotConfigured(
                f"hub API keys are read from the environment only: set {API_KEY_ENV}, not workers.farcaster.api_key"
            )
        if not parse_fids(self.settings.fids):
            raise NotConfigured(
                "no fids to sync: set the farcaster_fids setting "
                "(e.g. python -m manager settings set farcaster_fids '[3, 2]') or workers.farcaster.fids"
            )

    # ---- the cycle ----------------------------------------------------------------------------

    def run_cycle(self) -> CycleResult:
        """Every tracked fid in turn; the follow graph adds fids as their followers are synced."""
        self._connect_hub()
        self.store.prepare(self.db)
        total = CycleResult()
        tracked = parse_fids(self.settings.fids)
        seen = set(tracked)
        spare = self.settings.follow_expansion_limit
        position = 0
        while position < len(tracked) and not self.stopping:
            fid = tracked[position]
            position += 1
            try:
                self.sync_fid(fid, total)
            except HubRejected as exc:
                total.item_errors += 1
                self.record_error(str(exc), item_key=f"fid {fid}")
            if spare and not self.stopping:
                # Breadth first, in numeric order: the same graph always gives the same fids.
                for target in map(int, self.store.followed_ids(self.db, PLATFORM, str(fid))):
                    if spare and target not in seen:
                        tracked.append(target)
                        seen.add(target)
                        spare -= 1
        return total

    def sync_fid(self, fid: int, result: CycleResult) -> None:
        """The fid's profile, casts, reactions and follows, from its cursor; counts go into `result`."""
        key = f"fid:{fid}"
        cursor = dict(self.load_cursor(key) or {})
        username = self._sync_profile(fid, result)
        enabled = [s for s in STREAMS if not s.feature or self.flag(s.feature)]  # off: the cursor waits
        for stream in enabled:
            if self.stopping:
                return
            self._sync_stream(fid, stream, cursor, key, username, result)
        if self.flag("wallets") and not self.stopping:
            self._sync_wallets(fid, username, result)
        if time.monotonic() - self._checked.get(fid, -1e18) >= self.settings.removal_check_s and not self.stopping:
            self._mark_removed(fid, enabled, result)

    def _listing(self, fid: int, stream: _Stream) -> list[Message]:
        """Every message of one of the fid's lists, oldest first."""
        messages: list[Message] = []
        token = ""
        while True:
            page, next_token = self._page(stream.path, {"fid": fid, **stream.params, "pageToken": token})
            messages += page
            if not next_token or next_token == token:
                return messages
            token = next_token
            self.beat_if_due()

    def _mark_removed(self, fid: int, streams: list[_Stream], result: CycleResult) -> None:
        """List the fid's streams in full; stored rows the hub no longer lists are marked deleted.
        When each fid was last checked is kept in memory: a restarted worker checks once more."""
        live: dict[str, list[str]] = {}
        for stream in streams:
            try:
                named = [_live_id(stream.name, m) for m in self._listing(fid, stream)]
                live[stream.name] = [i for i in named if i is not None]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # A message we cannot read would look like a removal: leave this stream unmarked.
                self._item_error(result, f"fid {fid} {stream.name}", f"removal check skipped: {describe(exc)}")
            if self.stopping:
                return
        with self.transaction() as tx:
            for name, ids in live.items():
                marked = tx.execute(
                    REMOVAL_QUERIES[name], {"platform": PLATFORM, "author": str(fid), "live": ids}
                ).rowcount
                result.items += max(marked, 0)
        self._checked[fid] = time.monotonic()

    def _sync_wallets(self, fid: int, username: str | None, result: CycleResult) -> None:
        """The fid's verified addresses as wallets linked to its profile (bounded, oldest first)."""
        found: list[tuple[str, str]] = []
        for message in self._listing(fid, VERIFICATIONS):
            try:
                data = message["data"]
                body = data.get("verificationAddEthAddressBody") or data.get("verificationAddAddressBody")
                found.append(address_kind(str(body["address"])))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self._item_error(result, _message_name(message, "verification"), f"not linked: {describe(exc)}")
        s = self.settings
        rows = wallet_rows(found, s.max_linked_wallets, s.evm_chains, s.solana_chains)
        with self.transaction() as tx:
            profile = tx.execute(
                query("profile_id", "social.sql"), {"platform": PLATFORM, "external_id": str(fid)}
            ).fetchone()
            if profile is None:
                return  # no profile stored yet: linked on a later cycle
            label = f"farcaster @{username}" if username else f"farcaster fid {fid}"
            for chain, address in rows:
                params = {"chain": chain, "address": address, "label": label, "profile_id": profile[0]}
                result.items += max(tx.execute(query("link_wallet", "social.sql"), params).rowcount, 0)
            keep = [f"{chain} {address}" for chain, address in rows]
            unlink = {"profile_id": profile[0], "keep": keep}
            result.items += max(tx.execute(query("unlink_wallets", "social.sql"), unlink).rowcount, 0)

    def _sync_profile(self, fid: int, result: CycleResult) -> str | None:
        """Re-read the fid's user data (a handful of messages) and store the profile if it changed."""
        messages: list[Message] = []
        token = ""
        while True:
            page, token = self._page("/v1/userDataByFid", {"fid": fid, "pageToken": token})
            messages += page
            if not token:
                break
        try:
            row = profile_row(fid, messages)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._item_error(result, f"profile {fid}", f"malformed user data: {describe(exc)}")
            return None
        if row is not None:
            with self.transaction() as tx:
                result.items += self.store.write_profiles(tx, [row], self._on_write_error(result))
        return row.username if row else None

    def _sync_stream(
        self, fid: int, stream: _Stream, cursor: dict[str, Any], key: str, username: str | None, result: CycleResult
    ) -> None:
        """Page one of the fid's lists from its cursor to the end, one transaction per page."""
        state = dict(cursor.get(stream.name) or {})
        token = str(state.get("token") or "")
        saved = state.get("last")
        last: Key | None = (int(saved[0]), str(saved[1])) if saved else None
        while True:
            messages, next_token = self._page(stream.path, {"fid": fid, **stream.params, "pageToken": token})
            rows = []
            for message in messages:
                try:
                    message_at = message_key(message)
                except (KeyError, TypeError, ValueError, AttributeError):
                    message_at = None  # malformed: reported below
                if message_at is not None and last is not None and message_at <= last:
                    continue  # stored on an earlier read of this page
                try:
                    row = stream.row(message, username)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    self._item_error(
                        result, _message_name(message, stream.name), f"malformed {stream.name} message: {describe(exc)}"
                    )
                    row = None
                if row is not None:
                    rows.append(row)
                if message_at is not None and (last is None or message_at > last):
                    last = message_at
            # At the end of the list keep the token of this last page: it is re-read next cycle.
            new_state = {"token": next_token or token, "last": list(last) if last else None}
            if rows or new_state != state:
                with self.transaction() as tx:
                    result.items += stream.write(self.store, tx, rows, self._on_write_error(result))
                    cursor[stream.name] = new_state
                    self.save_cursor(tx, cursor, key)
                state = new_state
            self.beat_if_due()
            if not next_token or next_token == token or self.stopping:  # the end (or a hub going nowhere)
                return
            token = next_token

    # ---- hub calls ----------------------------------------------------------------------------

    def _connect_hub(self) -> None:
        """The hub client for the current settings (settings rows apply live) and the pace."""
        api_key = os.environ.get(API_KEY_ENV) or None
        url, timeout_s = str(self.settings.hub_url), self.settings.timeout_s
        self._hub = self.cached_client("hub", (url, api_key, timeout_s), lambda: HubClient(url, api_key, timeout_s))
        self.pacer.per_minute = self.settings.requests_per_minute

    def _page(self, path: str, params: dict[str, Any]) -> tuple[list[Message], str]:
        """One page of a list: its messages and the next page token ("" on the last page)."""
        body = self._get(path, {**params, "pageSize": self.settings.page_size})
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise UpstreamError(f"unexpected reply from hub on {path}: no messages list")
        token = body.get("nextPageToken") or ""
        if not isinstance(token, str):
            raise UpstreamError(f"unexpected reply from hub on {path}: nextPageToken is not a string")
        return body["messages"], token

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        """A hub call, paced, with a few quick retries for 5xx, timeouts and broken replies (a 429
        is not retried here: the cycle ends and the base waits out Retry-After)."""
        assert self._hub is not None
        attempts = 1 + self.settings.retries
        for attempt in range(attempts):
            self.pacer.wait(self.sleep)
            try:
                return self._hub.get(path, params)
            except RateLimited:
                raise
            except UpstreamError as exc:
                if attempt + 1 >= attempts or self.stopping:
                    raise
                self.log(f"{exc}; retry {attempt + 1} of {attempts - 1}", err=True)
                self.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    # ---- errors -------------------------------------------------------------------------------

    def _item_error(self, result: CycleResult, item_key: str, message: str) -> None:
        result.item_errors += 1
        self.record_error(message, item_key=item_key)

    def _on_write_error(self, result: CycleResult) -> Callable[[str, str], None]:
        return lambda item_key, message: self._item_error(result, item_key, f"not stored: {message}")


def _live_id(stream: str, message: Message) -> str | None:
    """How a live message is named in the stored rows of its stream (None: not a row we store)."""
    if stream == "casts":
        return _hash(message["hash"])
    if stream == "reactions":
        row = reaction_row(message)
        return f"{row.kind} {row.target_external_id}"
    follow = follow_row(message)
    return follow.target_id if follow else None


def _message_name(message: Any, stream: str) -> str:
    try:
        return f"{stream} message {message['hash']} of fid {message['data']['fid']}"
    except (KeyError, TypeError):
        return f"{stream} message {str(message)[:80]}"


if __name__ == "__main__":
    FarcasterWorker.main()
