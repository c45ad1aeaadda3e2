"""An operator's stop is kept in Postgres: the manager that takes the worker's lease after a failover
keeps it stopped, until an operator starts it again."""

from __future__ import annotations

from typing import Any

from tests.integration.test_leases import LEASES, TTL, manager_id
from tests.support.manager import example_worker
from tests.support.waiting import wait_for


def test_an_operator_stop_survives_a_failover(boot_manager: Any) -> None:
    workers = {"w": example_worker()}
    first = boot_manager(workers=workers, healdec=LEASES)
    first.wait_worker("w", lambda w: w["state"] == "running" and w["pid"])
    second = boot_manager(workers=workers, healdec=LEASES)
    second_id = manager_id(second)

    # asked on the manager that does not run it: kept in the database and sent to the owner
    assert second.api("POST", "/api/workers/w/stop").status_code == 202
    first.wait_worker("w", lambda w: w["state"] == "stopped" and w["pid"] is None, 10, "w stopped by its owner")
    wait_for(lambda: first.sql("SELECT stopped FROM worker_desired_state WHERE worker_name = 'w'") == [(True,)], 5)

    first.proc.kill()  # type: ignore[union-attr]
    first.proc.wait()  # type: ignore[union-attr]
    wait_for(
        lambda: second.sql("SELECT owner FROM worker_leases WHERE worker_name = 'w'") == [(second_id,)],
        TTL + 6,
        0.05,
        "the second manager to take w's lease",
    )
    status = second.wait_worker("w", lambda w: w["owner"] and w["owner"]["managerId"] == second_id, 5)
    assert status["state"] == "stopped" and status["pid"] is None
    started_here = "SELECT count(*) FROM worker_instances WHERE worker_name = 'w' AND manager_id = %s"
    assert second.sql(started_here, (second_id,)) == [(0,)]  # never started by the new owner

    assert second.api("POST", "/api/workers/w/start").status_code == 202
    second.wait_worker("w", lambda w: w["state"] == "running" and w["pid"], 10, "w started again")
    wait_for(lambda: second.sql("SELECT stopped FROM worker_desired_state WHERE worker_name = 'w'") == [(False,)], 5)
