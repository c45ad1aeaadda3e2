"""The chaos suite, short: the devnet fleet with a worker SIGKILLed every 2 s and its Postgres
restarted in the middle, then rolled over to a new manager, ends healthy, with the same rows as an
undisturbed fleet, never two instances of a worker at once, and no process left behind. `make chaos` runs the same for ten minutes and prints the figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.chaos import run


@pytest.mark.timeout(400)
def test_a_killed_and_redeployed_fleet_ends_healthy_with_every_row_once_and_nothing_left(
    tmp_path: Path, database_url: str
):
    figures = run(tmp_path, database_url, seconds=12, pg_restarts=1, settle_timeout=120, small=True)
    print("\n".join(figures.lines()))
    assert figures.kills >= 3 and len(figures.pg_restarts) == 1  # a tick with no worker running kills none
    # each kill was followed by a new process of that worker (a crash restart, or a fresh start when the
    # kill met the Postgres restart and the lease lapsed meanwhile)
    assert figures.new_processes >= figures.kills
    assert figures.unhealthy == []
    assert 1 <= len(figures.recoveries) <= figures.kills  # a worker killed twice before recovering counts once
    assert figures.handover_s is not None  # every worker healthy on the new manager
    assert figures.overlaps == []
    assert figures.differences == []
    assert figures.rows_compared > 500
    assert figures.left_behind == []
