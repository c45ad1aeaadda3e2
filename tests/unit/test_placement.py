"""Placement across managers: spread, pins, stickiness and hand-over, as pure decisions."""

from __future__ import annotations

import math

from manager.placement import LeaseRow, Peer, assign, eligible, plan

SEVEN = [f"w{i}" for i in range(7)]


def peers(*ids: str, labels: dict[str, set[str]] | None = None) -> list[Peer]:
    labels = labels or {}
    return [Peer(i, f"host-{i}", frozenset(labels.get(i, set())), frozenset(SEVEN)) for i in ids]


def test_seven_workers_spread_over_three_managers_at_most_the_fair_share_each() -> None:
    target = assign({w: [] for w in SEVEN}, peers("a", "b", "c"), {})
    counts = {m: list(target.values()).count(m) for m in "abc"}
    assert sum(counts.values()) == 7
    assert max(counts.values()) <= math.ceil(7 / 3)
    assert min(counts.values()) >= 1


def test_a_joining_manager_takes_only_the_overflow_from_the_incumbent() -> None:
    owners = {w: "a" for w in SEVEN}  # a ran everything alone
    target = assign({w: [] for w in SEVEN}, peers("a", "b"), owners)
    moved = [w for w in SEVEN if target[w] != "a"]
    assert len(moved) == 3 and all(target[w] == "b" for w in moved)


def test_a_departed_managers_workers_spread_over_the_rest() -> None:
    owners = {"w0": "a", "w1": "a", "w2": "a", "w3": "b", "w4": "b", "w5": "c", "w6": "c"}
    target = assign({w: [] for w in SEVEN}, peers("b", "c"), owners)  # a is gone
    assert all(target[w] == owners[w] for w in ("w3", "w4", "w5", "w6"))  # nobody else moves
    assert sorted(list(target.values()).count(m) for m in "bc") == [3, 4]


def test_pins_by_host_name_or_label_win_over_spread() -> None:
    fleet = peers("a", "b", "c", labels={"c": {"gpu"}})
    pins = {w: [] for w in SEVEN} | {"w0": ["gpu"], "w1": ["gpu"], "w2": ["host-a"]}
    target = assign(pins, fleet, {})
    assert target["w0"] == target["w1"] == "c"
    assert target["w2"] == "a"
    assert eligible(["gpu"], fleet[2]) and not eligible(["gpu"], fleet[0])


def test_a_pinned_worker_with_no_matching_manager_goes_nowhere() -> None:
    assert assign({"w0": ["nowhere"]}, peers("a"), {}) == {"w0": None}


def test_every_manager_computes_the_same_assignment() -> None:
    fleet = peers("a", "b", "c")
    pins = {w: [] for w in SEVEN}
    assert assign(pins, fleet, {}) == assign(pins, list(reversed(fleet)), {})


def test_plan_acquires_free_workers_hands_over_the_overflow_and_never_takes_a_held_lease() -> None:
    pins = {w: [] for w in SEVEN}
    leases = {w: LeaseRow("a", held=True) for w in SEVEN}
    of_a = plan("a", pins, peers("a", "b"), leases, frozenset(SEVEN))
    of_b = plan("b", pins, peers("a", "b"), leases, frozenset())
    assert len(of_a.keep) == 4 and len(of_a.hand_over) == 3 and not of_a.acquire
    assert not of_b.acquire  # still held by a: b waits for the release
    released = {w: LeaseRow("a", held=w in of_a.keep) for w in SEVEN}
    of_b = plan("b", pins, peers("a", "b"), released, frozenset())
    assert of_b.acquire == of_a.hand_over


def test_plan_takes_the_workers_of_an_expired_lease() -> None:
    leases = {"w0": LeaseRow("gone", held=False)}
    assert plan("a", {"w0": []}, peers("a"), leases, frozenset()).acquire == {"w0"}
