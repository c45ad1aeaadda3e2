"""Kill → first heartbeat of the ethereum worker, under the manager's exec path and its template path.

The figure a user of a sync worker cares about: how soon a killed worker is back at work. An exec'd
`workers.evm` starts an interpreter and imports web3 and friends before it writes its first
heartbeat; one forked from the worker template has all that imported already.

The worker runs against a real anvil chain (chain id 1, seeded as in tests/workers/test_evm.py).
The bench LISTENs on `worker_heartbeats` (announced by a trigger on every heartbeat, migration 0017),
so each sample is the time from SIGKILL to the heartbeat row carrying a new pid, without polling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from devnet import chains
from tests.support.manager import ManagerHandle
from tests.support.postgres import fresh_database

KILLS = int(os.environ.get("BENCH_HEARTBEAT_KILLS", "7"))
CONFIRMATIONS = 2


@contextlib.contextmanager
def ethereum_chain() -> Iterator[chains.ChainSeed]:
    """A seeded anvil chain with id 1 for the ethereum worker to read."""
    with chains.start_anvil(chains.ETHEREUM_CHAIN_ID) as node:
        seed = chains.seed_chain(node)
        chains.mine_blocks(node.web3(), CONFIRMATIONS)
        yield seed


def ethereum_worker(seed: chains.ChainSeed) -> dict[str, Any]:
    return {
        "module": "workers.evm",
        "rpc_url": seed.url,
        "chain_id": seed.chain_id,
        "wallets": [{"address": w.address, "label": w.label} for w in seed.tracked],
        "tokens": [t.address for t in seed.tokens],
        "nft_contracts": [seed.nft.address],
        "confirmations": CONFIRMATIONS,
        "start_block": 0,
        "interval_ms": 2000,
        "heartbeat_interval_ms": 1000,
    }


def _heartbeat_pid(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute("SELECT pid FROM worker_heartbeats WHERE worker_name = 'ethereum'").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _wait_new_heartbeat(conn: psycopg.Connection[Any], old: int | None, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid = _heartbeat_pid(conn)
        if pid is not None and pid != old:
            return pid
        for _ in conn.notifies(timeout=max(0.0, deadline - time.monotonic()), stop_after=1):
            pass
    raise TimeoutError(f"no heartbeat from a new ethereum process within {timeout_s:g} s")


def kill_to_heartbeat_ms(admin_url: str, workdir: Path, seed: chains.ChainSeed, template: bool) -> list[float]:
    """SIGKILL the ethereum worker KILLS times; each sample is kill → the new process's first heartbeat."""
    samples = []
    with fresh_database(admin_url) as url:
        m = ManagerHandle(
            workdir,
            url,
            {"ethereum": ethereum_worker(seed)},
            healdec={
                "min_uptime_s": 0,
                "max_restarts": 10_000,
                "restart_window_s": 1,
                "restart_delay_ms": 0,
                "heartbeat_timeout_s": 60,
                "template_fork": template,
            },
        )
        m.start(timeout=120)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("LISTEN worker_heartbeats")
                pid = _wait_new_heartbeat(conn, None, 120)
                for _ in range(KILLS):
                    time.sleep(0.5)  # let it get into its cycle, as a worker at work would be
                    for _ in conn.notifies(timeout=0):  # forget what was announced before the kill
                        pass
                    started = time.perf_counter()
                    os.kill(pid, signal.SIGKILL)
                    pid = _wait_new_heartbeat(conn, pid)
                    samples.append((time.perf_counter() - started) * 1000)
        finally:
            m.close()
    return samples


def figures(admin_url: str, tmp: Path) -> dict[str, float]:
    """Median kill → first heartbeat in ms, for "manager" (template) and "manager (exec)"."""
    out = {}
    with ethereum_chain() as seed:
        for template, label in ((True, "manager"), (False, "manager (exec)")):
            workdir = tmp / f"first-heartbeat-{template}"
            workdir.mkdir()
            print(f"{label}: kill → first heartbeat of the ethereum worker ...", file=sys.stderr, flush=True)
            out[label] = statistics.median(kill_to_heartbeat_ms(admin_url, workdir, seed, template))
    return out
