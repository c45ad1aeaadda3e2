"""Which workers a manager should hold, decided from what every manager can see in the database.

Pure functions (no I/O), so the decision is unit-tested and every manager computes the same
answer from the same rows: `assign` maps each worker to one live manager, `plan` turns that into
what this manager must acquire, keep or hand over.

Assignment: the most constrained workers first (fewest eligible managers, then by name); each
stays with its current owner while that owner is under its fair share (ceil(workers / managers)),
otherwise goes to the least loaded eligible manager (ties broken by a stable hash, so all
managers agree). A joining manager thus receives only the overflow, and a leaving manager's
workers spread over the rest. A pinned worker (`hosts: [...]`, host names or labels) only goes
to a manager that matches a pin.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Peer:
    """A live manager as the others see it."""

    id: str
    host: str
    labels: frozenset[str] = frozenset()
    workers: frozenset[str] = frozenset()  # the workers its config can run


@dataclass(frozen=True)
class LeaseRow:
    """One worker's lease: who holds it, and whether that still counts."""

    owner: str
    held: bool  # unexpired and its owner's session is alive


@dataclass(frozen=True)
class Plan:
    acquire: frozenset[str] = field(default_factory=frozenset)
    keep: frozenset[str] = field(default_factory=frozenset)
    hand_over: frozenset[str] = field(default_factory=frozenset)


def eligible(pins: Sequence[str], peer: Peer) -> bool:
    """No pins: any manager. Otherwise a pin must name the manager's host or one of its labels."""
    return not pins or peer.host in pins or bool(peer.labels.intersection(pins))


def _tiebreak(worker: str, manager: str) -> str:
    return hashlib.sha256(f"{worker}\0{manager}".encode()).hexdigest()


def assign(
    pins: Mapping[str, Sequence[str]], peers: Sequence[Peer], owners: Mapping[str, str]
) -> dict[str, str | None]:
    """Each worker (`pins`: name -> its hosts pins) -> the id of the manager that should run it,
    or None when no live manager may. `owners`: the current holder of each held lease."""
    candidates = {w: [p for p in peers if w in p.workers and eligible(pins[w], p)] for w in pins}
    placeable = [w for w in pins if candidates[w]]
    share = math.ceil(len(placeable) / len(peers)) if peers else 0
    load = {p.id: 0 for p in peers}
    target: dict[str, str | None] = {w: None for w in pins}
    for worker in sorted(placeable, key=lambda w: (len(candidates[w]), w)):
        ids = [p.id for p in candidates[worker]]
        owner = owners.get(worker)
        if owner in ids and load[owner] < share:
            chosen = owner
        else:
            chosen = min(ids, key=lambda m: (load[m], _tiebreak(worker, m)))
        target[worker] = chosen
        load[chosen] += 1
    return target


def plan(
    me: str,
    pins: Mapping[str, Sequence[str]],
    peers: Sequence[Peer],
    leases: Mapping[str, LeaseRow],
    holding: frozenset[str],
) -> Plan:
    """What manager `me` does now: acquire the free workers assigned to it, keep what it holds
    and is assigned, hand over what it holds but another live manager should run.

    A worker it holds that nobody live may run (a config that changed) is kept, never dropped."""
    owners = {w: row.owner for w, row in leases.items() if row.held}
    owners.update({w: me for w in holding})
    target = assign(pins, peers, owners)
    acquire: set[str] = set()
    keep: set[str] = set()
    hand_over: set[str] = set()
    for worker, chosen in target.items():
        if worker in holding:
            (keep if chosen in (me, None) else hand_over).add(worker)
        elif chosen == me and not (worker in leases and leases[worker].held):
            acquire.add(worker)
    return Plan(frozenset(acquire), frozenset(keep), frozenset(hand_over))
