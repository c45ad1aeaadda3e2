"""The Farcaster hub stand-in, read over real loopback HTTP with httpx the way the worker reads a hub."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devnet.farcaster_hub import (
    FARCASTER_EPOCH,
    LIKE,
    RECAST,
    FarcasterHub,
    render_text,
    unix_time,
)
from devnet.http_stub import StubProcess, control_request, inject_remote_fault

HASH_RE = re.compile(r"^0x[0-9a-f]{40}$")
SIGNER_RE = re.compile(r"^0x[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def hub() -> Iterator[FarcasterHub]:
    with FarcasterHub(seed=11) as server:
        yield server


@pytest.fixture(scope="module")
def client(hub: FarcasterHub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, timeout=5) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_leftover_faults(hub: FarcasterHub) -> Iterator[None]:
    yield
    hub.clear_faults()


def page_all(
    client: httpx.Client, path: str, page_size: int = 100, token: str = "", **params: Any
) -> list[dict[str, Any]]:
    """Follow `nextPageToken` (from `token`) until it is empty, as a sync worker does."""
    messages: list[dict[str, Any]] = []
    for _ in range(10_000):
        response = client.get(path, params={**params, "pageSize": page_size, "pageToken": token})
        response.raise_for_status()
        body = response.json()
        messages += body["messages"]
        token = body["nextPageToken"]
        if not token:
            return messages
    raise AssertionError("paging never ended")


def hashes(messages: list[dict[str, Any]]) -> list[str]:
    return [m["hash"] for m in messages]


# --- paging -----------------------------------------------------------------------------------------


def test_paging_casts_by_fid_returns_exactly_the_seeded_casts(hub: FarcasterHub, client: httpx.Client) -> None:
    total = 0
    for fid in hub.fids:
        got = page_all(client, "/v1/castsByFid", fid=fid)
        assert hashes(got) == hashes(hub.casts(fid))
        assert got == hub.casts(fid)
        total += len(got)
    assert total == hub.totals()["casts"] == sum(hub.cast_counts().values())
    assert total >= 2000, "the default dataset is a few thousand casts"


def test_reverse_pages_newest_first(hub: FarcasterHub, client: httpx.Client) -> None:
    fid = max(hub.cast_counts(), key=hub.cast_count)
    newest_first = page_all(client, "/v1/castsByFid", page_size=37, fid=fid, reverse=1)
    assert hashes(newest_first) == hashes(hub.casts(fid))[::-1]
    stamps = [m["data"]["timestamp"] for m in newest_first]
    assert stamps == sorted(stamps, reverse=True)


def test_last_page_has_empty_token_and_page_size_is_clamped(hub: FarcasterHub, client: httpx.Client) -> None:
    fid = hub.fids[0]
    body = client.get("/v1/castsByFid", params={"fid": fid, "pageSize": 100_000}).json()
    assert len(body["messages"]) == min(hub.cast_count(fid), hub.max_page_size)
    assert body["nextPageToken"] == ""
    unknown = client.get("/v1/castsByFid", params={"fid": 1}).json()
    assert unknown == {"messages": [], "nextPageToken": ""}


def test_page_token_stays_valid_when_casts_arrive_between_pages(hub: FarcasterHub, client: httpx.Client) -> None:
    fid = max(hub.cast_counts(), key=hub.cast_count)
    before = hashes(hub.casts(fid))
    first = client.get("/v1/castsByFid", params={"fid": fid, "pageSize": 10}).json()
    old_cast = hub.add_cast(fid, "back-dated cast", timestamp=hub.casts(fid)[0]["data"]["timestamp"] - 10)
    rest = page_all(client, "/v1/castsByFid", token=first["nextPageToken"], fid=fid)
    # The back-dated cast sorts before the token, so it is not returned twice or shifted into view.
    assert hashes(first["messages"]) + hashes(rest)[: len(before) - 10] == before
    assert old_cast["hash"] not in hashes(rest)


# --- message shapes ---------------------------------------------------------------------------------


def test_cast_messages_have_the_documented_shape(hub: FarcasterHub) -> None:
    casts = hub.all_casts()
    for message in casts:
        assert set(message) == {"data", "hash", "hashScheme", "signature", "signatureScheme", "signer"}
        assert HASH_RE.match(message["hash"]) and SIGNER_RE.match(message["signer"])
        assert message["hashScheme"] == "HASH_SCHEME_BLAKE3"
        assert message["signatureScheme"] == "SIGNATURE_SCHEME_ED25519"
        assert len(base64.b64decode(message["signature"])) == 64
        data = message["data"]
        assert data["type"] == "MESSAGE_TYPE_CAST_ADD" and data["network"] == "FARCASTER_NETWORK_MAINNET"
        # Farcaster-epoch seconds: the seeded casts are from 2025, not unix time.
        assert 2024 <= time.gmtime(unix_time(data["timestamp"])).tm_year <= 2026
        body = data["castAddBody"]
        assert {"embedsDeprecated", "mentions", "text", "mentionsPositions", "embeds"} <= set(body)
        assert not ("parentCastId" in body and "parentUrl" in body), "the parent is a oneof"
        assert len(body["mentions"]) == len(body["mentionsPositions"])
        assert all(p <= len(body["text"].encode()) for p in body["mentionsPositions"])
        for embed in body["embeds"]:
            assert set(embed) in ({"url"}, {"castId"})
    share = lambda pred: sum(1 for m in casts if pred(m["data"]["castAddBody"])) / len(casts)  # noqa: E731
    assert 0.2 < share(lambda b: "parentCastId" in b) < 0.45, "about a third are replies"
    assert 0.05 < share(lambda b: "parentUrl" in b) < 0.3, "some live in channels"
    assert 0.05 < share(lambda b: b["mentions"]) < 0.4
    assert 0.1 < share(lambda b: b["embeds"]) < 0.5
    assert share(lambda b: any("castId" in e for e in b["embeds"])) > 0, "some quote casts"


def test_mentions_are_cut_out_at_byte_offsets(hub: FarcasterHub) -> None:
    names = hub.usernames()
    mentioning = [m for m in hub.all_casts() if m["data"]["castAddBody"]["mentions"]]
    with_emoji = [
        m for m in mentioning if len(m["data"]["castAddBody"]["text"].encode()) > len(m["data"]["castAddBody"]["text"])
    ]
    assert with_emoji, "offsets must be tested where bytes and characters differ"
    body = with_emoji[0]["data"]["castAddBody"]
    rendered = render_text(body["text"], body["mentions"], body["mentionsPositions"], names)
    assert f"🌞 @{names[body['mentions'][0]]} what do you think of" in rendered
    assert "@" not in body["text"]


def test_replies_point_at_real_casts_and_cast_by_id_finds_them(hub: FarcasterHub, client: httpx.Client) -> None:
    reply = next(m for m in hub.all_casts() if "parentCastId" in m["data"]["castAddBody"])
    parent = reply["data"]["castAddBody"]["parentCastId"]
    got = client.get("/v1/castById", params={"fid": parent["fid"], "hash": parent["hash"]}).json()
    assert got["hash"] == parent["hash"] and got["data"]["fid"] == parent["fid"]
    replies = page_all(client, "/v1/castsByParent", fid=parent["fid"], hash=parent["hash"])
    assert reply["hash"] in hashes(replies)
    assert hashes(replies) == hashes(hub.replies(parent["fid"], parent["hash"]))
    missing = client.get("/v1/castById", params={"fid": parent["fid"], "hash": "0x" + "00" * 20})
    assert missing.status_code == 404 and missing.json()["errCode"] == "not_found"


def test_casts_by_parent_url_lists_a_channel(hub: FarcasterHub, client: httpx.Client) -> None:
    url = "https://warpcast.com/~/channel/ethereum"
    channel = page_all(client, "/v1/castsByParent", url=url)
    expected = [m for m in hub.all_casts() if m["data"]["castAddBody"].get("parentUrl") == url]
    assert channel and sorted(hashes(channel)) == sorted(hashes(expected))


def test_user_data_as_a_list_and_as_single_messages(hub: FarcasterHub, client: httpx.Client) -> None:
    fid = hub.fids[3]
    listed = client.get("/v1/userDataByFid", params={"fid": fid}).json()
    values = {m["data"]["userDataBody"]["type"]: m["data"]["userDataBody"]["value"] for m in listed["messages"]}
    assert values == hub.user_data(fid)
    assert {"USER_DATA_TYPE_USERNAME", "USER_DATA_TYPE_DISPLAY", "USER_DATA_TYPE_BIO", "USER_DATA_TYPE_PFP"} <= set(
        values
    )
    for asked in ("6", "USER_DATA_TYPE_USERNAME"):
        single = client.get("/v1/userDataByFid", params={"fid": fid, "user_data_type": asked}).json()
        assert single["data"]["type"] == "MESSAGE_TYPE_USER_DATA_ADD"
        assert single["data"]["userDataBody"] == {
            "type": "USER_DATA_TYPE_USERNAME",
            "value": values["USER_DATA_TYPE_USERNAME"],
        }
    assert len(set(hub.usernames().values())) == len(hub.fids), "usernames are unique"


def test_reactions_by_fid_filter_by_numeric_or_named_type(hub: FarcasterHub, client: httpx.Client) -> None:
    fid = max(hub.fids, key=lambda f: len(hub.reactions(f)))
    likes = page_all(client, "/v1/reactionsByFid", fid=fid, reaction_type=1)
    recasts = page_all(client, "/v1/reactionsByFid", fid=fid, reaction_type="REACTION_TYPE_RECAST")
    everything = page_all(client, "/v1/reactionsByFid", fid=fid)
    assert hashes(likes) == hashes(hub.reactions(fid, LIKE)) and likes
    assert hashes(recasts) == hashes(hub.reactions(fid, RECAST))
    assert sorted(hashes(everything)) == sorted(hashes(likes) + hashes(recasts))
    for reaction in everything:
        body = reaction["data"]["reactionBody"]
        assert reaction["data"]["type"] == "MESSAGE_TYPE_REACTION_ADD"
        target = body["targetCastId"]
        assert hub.cast(target["fid"], target["hash"]) is not None, "reactions point at real casts"
        assert target["fid"] != fid
    bad = client.get("/v1/reactionsByFid", params={"fid": fid, "reaction_type": "LOVE"})
    assert bad.status_code == 400


def test_follow_links_form_a_graph(hub: FarcasterHub, client: httpx.Client) -> None:
    fids = set(hub.fids)
    total = 0
    for fid in hub.fids:
        links = page_all(client, "/v1/linksByFid", fid=fid, link_type="follow")
        targets = sorted(m["data"]["linkBody"]["targetFid"] for m in links)
        assert targets == hub.following(fid)
        assert set(targets) <= fids - {fid}
        total += len(links)
    assert total == hub.totals()["links"] > len(fids)
    popular = max(hub.fids, key=lambda f: len(hub.followers(f)))
    followers = page_all(client, "/v1/linksByTargetFid", target_fid=popular)
    assert sorted(m["data"]["fid"] for m in followers) == hub.followers(popular)
    assert len(followers) > 3, "popular users have many followers"


def test_info_reports_counts(hub: FarcasterHub, client: httpx.Client) -> None:
    info = client.get("/v1/info", params={"dbstats": 1}).json()
    assert {"version", "isSyncing", "nickname", "rootHash", "dbStats", "peerId", "hubOperatorFid"} <= set(info)
    assert info["dbStats"]["numMessages"] == hub.totals()["messages"]


@pytest.mark.parametrize(
    "params",
    [{}, {"fid": "abc"}, {"fid": 2, "pageToken": "not-a-token"}, {"fid": 2, "pageSize": "x"}],
)
def test_bad_requests_get_a_hub_error(client: httpx.Client, params: dict[str, Any]) -> None:
    response = client.get("/v1/castsByFid", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["errCode"] == "bad_request.validation_failure" and body["name"] == "HubError"
    assert body["details"]


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = (FarcasterHub(seed=s, fids=8, casts=200) for s in (5, 5, 6))
    assert a.all_casts() == b.all_casts()
    assert hashes(a.all_casts()) != hashes(c.all_casts())
    for server in (a, b, c):
        server.stop()


# --- run-time additions -------------------------------------------------------------------------------


def test_added_casts_appear_for_incremental_sync(hub: FarcasterHub, client: httpx.Client) -> None:
    fid, other = hub.fids[1], hub.fids[2]
    seen = page_all(client, "/v1/castsByFid", fid=fid)
    new = hub.add_cast(fid, "hello from the test  and friends", mentions=[other], mentions_positions=[20])
    reply = hub.add_cast(other, "nice", parent_cast_id={"fid": fid, "hash": new["hash"]})
    newest = client.get("/v1/castsByFid", params={"fid": fid, "reverse": 1, "pageSize": 1}).json()
    assert newest["messages"] == [new]
    again = page_all(client, "/v1/castsByFid", fid=fid)
    assert hashes(again) == [*hashes(seen), new["hash"]]
    assert new["data"]["timestamp"] > seen[-1]["data"]["timestamp"]
    assert abs(new["data"]["timestamp"] + FARCASTER_EPOCH - time.time()) < 5, "published now, in Farcaster time"
    assert hashes(page_all(client, "/v1/castsByParent", fid=fid, hash=new["hash"])) == [reply["hash"]]
    mentions = page_all(client, "/v1/castsByMention", fid=other)
    assert new["hash"] in hashes(mentions)
    like = hub.add_reaction(other, fid, new["hash"], "like")
    assert like["hash"] in hashes(page_all(client, "/v1/reactionsByCast", target_fid=fid, target_hash=new["hash"]))


# --- faults -------------------------------------------------------------------------------------------


def test_429_carries_retry_after_then_recovers(hub: FarcasterHub, client: httpx.Client) -> None:
    hub.inject_fault("429", retry_after=2, path_prefix="/v1/castsByFid")
    assert client.get("/v1/info").status_code == 200, "other paths are not affected"
    limited = client.get("/v1/castsByFid", params={"fid": hub.fids[0]})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["name"] == "HubError"
    assert client.get("/v1/castsByFid", params={"fid": hub.fids[0]}).status_code == 200


def test_500_slow_truncated_and_disconnect(hub: FarcasterHub, client: httpx.Client) -> None:
    params = {"fid": hub.fids[0]}
    hub.inject_fault("500", count=2)
    assert [client.get("/v1/castsByFid", params=params).status_code for _ in range(3)] == [500, 500, 200]

    hub.inject_fault("slow", delay=1.0)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/castsByFid", params=params, timeout=0.2)
    hub.inject_fault("slow", delay=0.2)
    started = time.monotonic()
    assert client.get("/v1/castsByFid", params=params).status_code == 200
    assert time.monotonic() - started >= 0.2

    hub.inject_fault("truncated")
    truncated = client.get("/v1/castsByFid", params=params)
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        truncated.json()

    hub.inject_fault("disconnect")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1/castsByFid", params=params)
    assert client.get("/v1/castsByFid", params=params).status_code == 200
    assert hub.pending_faults() == []


def test_faults_over_the_control_endpoint(hub: FarcasterHub, client: httpx.Client) -> None:
    inject_remote_fault(hub.url, "429", count=1, path_prefix="/v1/info", retry_after=5)
    assert control_request(hub.url, "GET", "/_devnet/fault")["faults"][0]["kind"] == "429"
    response = client.get("/v1/info")
    assert response.status_code == 429 and response.headers["Retry-After"] == "5"
    bad = client.post("/_devnet/fault", json={"kind": "teapot"})
    assert bad.status_code == 400


def test_api_key_is_required_when_configured() -> None:
    with FarcasterHub(seed=2, fids=5, casts=40, api_key="k-123") as keyed:
        fid = keyed.fids[0]
        assert httpx.get(keyed.url + "/v1/castsByFid", params={"fid": fid}).status_code == 401
        wrong = httpx.get(keyed.url + "/v1/castsByFid", params={"fid": fid}, headers={"x-api-key": "nope"})
        assert wrong.status_code == 401
        ok = httpx.get(keyed.url + "/v1/castsByFid", params={"fid": fid}, headers={"x-api-key": "k-123"})
        assert ok.status_code == 200 and len(ok.json()["messages"]) == keyed.cast_count(fid)


# --- as a process -------------------------------------------------------------------------------------


def test_runs_as_a_process_until_sigterm() -> None:
    started = time.monotonic()
    with StubProcess("devnet.farcaster_hub", ["--port", "0", "--seed", "4", "--fids", "10", "--casts", "300"]) as proc:
        startup = time.monotonic() - started
        dataset = control_request(proc.url, "GET", "/_devnet/dataset")
        assert dataset["totals"]["casts"] == 300 and len(dataset["fids"]) == 10
        fid = dataset["fids"][0]
        with httpx.Client(base_url=proc.url, timeout=5) as c:
            before = page_all(c, "/v1/castsByFid", fid=fid)
            assert len(before) == dataset["castCounts"][str(fid)]
            added = control_request(proc.url, "POST", "/_devnet/casts", {"fid": fid, "text": "from afar"})
            assert hashes(page_all(c, "/v1/castsByFid", fid=fid)) == [*hashes(before), added["hash"]]
            proc.inject_fault("500", path_prefix="/v1/")
            assert c.get("/v1/info").status_code == 500
    assert proc.process is not None and proc.process.returncode == 0
    assert startup < 3, f"start-up took {startup:.2f} s"
