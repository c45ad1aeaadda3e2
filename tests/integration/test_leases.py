"""Several managers on one database: each worker runs exactly once, moves when its manager dies,
and a worker that lost its lease is refused by the database."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from sql import query
from tests.support.manager import ROOT, ManagerHandle, example_worker, pid_alive
from tests.support.waiting import wait_for
from workers.lease import FENCE_SQLSTATE, LeaseLost, fence

TTL = 1.5
# Exec'd workers: `running_copies` identifies them by /proc/<pid>/environ, which a template-forked
# worker does not have (it shows the template's environment at exec time).
LEASES = {"lease_ttl_s": TTL, "template_fork": False}


def running_copies(handles: list[ManagerHandle]) -> dict[str, list[int]]:
    """Worker name -> pids of its live processes under any of the managers."""
    found: dict[str, list[int]] = {}
    for handle in handles:
        if handle.proc is None or handle.proc.poll() is not None:
            continue
        for child in handle.descendants():
            try:
                name = child.environ().get("WORKER_NAME")
                alive = child.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                continue
            if name and alive:
                found.setdefault(name, []).append(child.pid)
    return found


def converged(view: ManagerHandle, names: list[str], owners: set[str]) -> list[dict[str, Any]] | None:
    status = view.status()
    ok = all(w["state"] == "running" and w["owner"] and w["owner"]["managerId"] in owners for w in status)
    return status if ok and sorted(w["name"] for w in status) == sorted(names) else None


def boot_together(boot_manager: Any, count: int, workers: dict[str, Any]) -> list[ManagerHandle]:
    handles = [boot_manager(workers=workers, healdec=LEASES, start=False) for _ in range(count)]
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda h: h.start(), handles))
    return handles


def terminate_together(handles: list[ManagerHandle]) -> None:
    """SIGTERM every manager at once (one by one, each would hand its workers to the next)."""
    for handle in handles:
        if handle.proc is not None and handle.proc.poll() is None:
            handle.proc.send_signal(signal.SIGTERM)
    for handle in handles:
        if handle.proc is not None:
            handle.proc.wait(20)


def per_manager(status: list[dict[str, Any]]) -> dict[str, int]:
    held: dict[str, int] = {}
    for w in status:
        held[w["owner"]["managerId"]] = held.get(w["owner"]["managerId"], 0) + 1
    return held


def manager_id(handle: ManagerHandle) -> str:
    return str(handle.http.get("/healthz").json()["manager"]["managerId"])


def assert_instances_never_overlap(view: ManagerHandle, names: list[str]) -> list[tuple[Any, ...]]:
    """The audit (worker_instances): every instance closed, and per worker, each one ended no later
    than the next one started. Returns the rows."""
    audit = view.sql(
        "SELECT worker_name, epoch, pid, manager_id, started_at, ended_at, end_reason FROM worker_instances "
        "WHERE worker_name = ANY(%s) ORDER BY worker_name, started_at",
        (names,),
    )
    assert {r[0] for r in audit} == set(names)
    for earlier, later in itertools.pairwise(audit):
        assert earlier[5] is not None, f"instance never closed: {earlier}"
        if earlier[0] == later[0]:
            assert earlier[5] <= later[4], f"two live instances of {earlier[0]}: {earlier} and {later}"
            assert earlier[1] <= later[1]  # epochs only grow
    assert audit[-1][5] is not None
    return audit


def test_fence_refuses_a_stale_epoch_and_blocks_acquisition_until_commit(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO worker_leases (worker_name, owner, host, pid, epoch, expires_at) "
            "VALUES ('w', 'old', 'h', 1, 1, clock_timestamp() - interval '1 s')"
        )
    with psycopg.connect(migrated_url) as stale, psycopg.connect(migrated_url, autocommit=True) as taker:
        fence(stale, "w", 1)  # epoch 1 is current: passes and share-locks the row
        taker.execute("SET lock_timeout = '100ms'")
        acquire = query("acquire_leases", "leases.sql")
        args = {"id": "new", "host": "h", "pid": 2, "ttl": 5, "names": ["w"], "dead": []}
        with pytest.raises(psycopg.errors.LockNotAvailable):  # the bump waits for the stale commit
            taker.execute(acquire, args)
        stale.commit()
        assert taker.execute(acquire, args).fetchall() == [("w", 2)]
        with pytest.raises(LeaseLost, match="epoch 2"):
            fence(stale, "w", 1)
        stale.rollback()
        with pytest.raises(psycopg.Error) as raw:  # the check itself lives in the database
            stale.execute("SELECT check_worker_lease('w', 1)")
        assert raw.value.sqlstate == FENCE_SQLSTATE
        stale.rollback()
        fence(stale, "w", 2)


def test_three_managers_run_each_worker_once_and_take_over_from_a_killed_one(boot_manager: Any, tmp_path: Path) -> None:
    names = ["w1", "w2", "w3", "w4"]
    workers = {n: example_worker() for n in names}
    handles = boot_together(boot_manager, 3, workers)
    ids = {manager_id(h): h for h in handles}

    def spread() -> list[dict[str, Any]] | None:  # ceil(4 / 3) = 2: nobody keeps everything
        status = converged(handles[2], names, set(ids))
        return status if status and max(per_manager(status).values()) <= 2 else None

    status = wait_for(spread, 20, 0.1, "every worker running, at most two per manager")
    copies = wait_for(lambda: (c := running_copies(handles)) and all(len(c.get(n, [])) == 1 for n in names) and c)
    held = per_manager(status)
    owners = {w["name"]: w["owner"]["managerId"] for w in status}
    for other in handles[:2]:  # every manager shows the same owners (published every lease_ttl_s / 3)

        def same_owners(view: ManagerHandle = other) -> bool:
            seen = converged(view, names, set(ids)) or []
            return {w["name"]: w["owner"]["managerId"] for w in seen} == owners

        wait_for(same_owners, 10, 0.1, "every manager to show the same owners")

    # run-worker refuses a worker a manager holds, naming the holder
    victim_id = max(held, key=lambda i: held[i])
    victim = ids[victim_id]
    taken = [w["name"] for w in status if w["owner"]["managerId"] == victim_id]
    env = {**os.environ}
    env.pop("DATABASE_URL", None)
    refused = subprocess.run(
        [sys.executable, "-m", "manager", "--config", str(victim.config_path), "run-worker", taken[0]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert f"{taken[0]} is running under manager {victim_id}" in refused.stderr
    assert f"pid {victim.proc.pid}" in refused.stderr  # type: ignore[union-attr]

    # kill -9 the busiest manager: its workers run elsewhere, still once each
    old_pids = [pid for name in taken for pid in copies[name]]
    victim.proc.kill()  # type: ignore[union-attr]
    victim.proc.wait()  # type: ignore[union-attr]
    survivors = [h for h in handles if h is not victim]
    alive_ids = {i for i, h in ids.items() if h is not victim}
    wait_for(lambda: converged(survivors[0], names, alive_ids), TTL + 6, 0.05, "the killed manager's workers elsewhere")
    wait_for(lambda: not any(pid_alive(p) for p in old_pids), 5, 0.05, "the killed manager's workers to die")
    copies = wait_for(lambda: (c := running_copies(survivors)) and all(len(c.get(n, [])) == 1 for n in names) and c)
    assert not set(old_pids) & {p for pids in copies.values() for p in pids}

    # an operator action on a worker owned by the other manager travels through the database
    mine = {w["name"] for w in survivors[0].status() if w["owner"]["managerId"] == manager_id(survivors[0])}
    theirs = next(n for n in names if n not in mine)
    assert survivors[0].api("POST", f"/api/workers/{theirs}/stop").status_code == 202
    survivors[1].wait_worker(theirs, lambda w: w["state"] == "stopped", 10, f"{theirs} stopped by its owner")
    terminate_together(handles)

    # the audit: no two instances of a worker were live at once, across the kill
    audit = assert_instances_never_overlap(survivors[0], names)
    for name in taken:  # the killed manager's last instance of each: ended by the next owner's takeover
        rows_of = [r for r in audit if r[0] == name]
        last_victim = max(i for i, r in enumerate(rows_of) if r[3] == victim_id)
        assert rows_of[last_victim][6].startswith("fenced: lease taken over"), rows_of[last_victim]
        assert rows_of[last_victim + 1][3] in alive_ids


def test_a_frozen_managers_worker_is_fenced_and_a_terminated_managers_worker_moves(boot_manager: Any) -> None:
    workers = {"solo": example_worker(interval_ms=100, heartbeat_interval_ms=100)}
    first = boot_manager(workers=workers, healdec=LEASES)
    first.wait_worker("solo", lambda w: w["state"] == "running" and w["pid"])
    second = boot_manager(workers=workers, healdec=LEASES)
    stale_pid = first.worker("solo")["pid"]

    first.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]  # its worker runs on, unsupervised
    try:
        taken = second.wait_worker(
            "solo",
            lambda w: w["owner"] and w["owner"]["pid"] == second.proc.pid and w["pid"],
            TTL + 6,  # type: ignore[union-attr]
        )
        wait_for(lambda: not pid_alive(stale_pid), 10, 0.05, "the stale worker to stop itself")
        (acquired_at,) = second.sql("SELECT acquired_at FROM worker_leases WHERE worker_name = 'solo'")[0]
        late = second.sql(
            "SELECT count(*) FROM cycle_runs WHERE pid = %s AND finished_at > %s AND items > 0",
            (stale_pid, acquired_at),
        )[0][0]
        assert late == 0  # nothing committed by the stale copy after the new owner took over
    finally:
        first.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    first.wait_worker("solo", lambda w: w["owner"] and w["owner"]["pid"] == second.proc.pid, 10)  # type: ignore[union-attr]
    assert list(running_copies([first, second])) == ["solo"]
    assert running_copies([first, second])["solo"] == [taken["pid"]]

    # rolling deploy: SIGTERM the owner; the other manager runs the worker right after release
    first_pid = taken["pid"]
    second.terminate()
    first.wait_worker("solo", lambda w: w["state"] == "running" and w["pid"] not in (None, first_pid), 5)
    assert not pid_alive(first_pid)
    terminate_together([first, second])
    audit = assert_instances_never_overlap(first, ["solo"])
    # From the frozen copy on: it, the copy taken over, the copy handed back. (Under heavy load the first
    # manager may have replaced its worker before the test read its pid: earlier rows are not the point.)
    pids = [r[2] for r in audit]
    since_frozen = audit[pids.index(stale_pid) :]
    assert [r[2] for r in since_frozen] == [stale_pid, first_pid, since_frozen[2][2]]
    assert "its process was reaped" in since_frozen[0][6]  # the frozen manager reaped its fenced copy after waking
