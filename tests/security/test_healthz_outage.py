"""`/healthz` while the manager's Postgres is really down: it says the database is failing, in
words of its own, without the driver's error text (socket paths, hosts, users), and recovers. A worker
stopped by the outage says why, its detail answers from memory, and what the
supervisor recorded meanwhile (its supervision events) reaches the database once it is back."""

from __future__ import annotations

from pathlib import Path

from tests.support.manager import ManagerHandle, example_worker
from tests.support.own_postgres import own_postgres
from tests.support.waiting import wait_for

# What psycopg's messages for a refused or cut connection contain; none may reach the answer.
RAW_FRAGMENTS = ["s.PGSQL", "connection", "failed:", "FATAL", "server", "socket", "No such file", "terminat"]


def test_healthz_names_a_database_outage_without_its_raw_error(tmp_path: Path):
    with own_postgres() as pg:
        m = ManagerHandle(tmp_path, pg.url, {"counter": example_worker()}, healdec={"lease_ttl_s": 2})
        try:
            m.start(60)
            wait_for(lambda: m.http.get("/healthz").json()["status"] == "ok", 20, 0.1, "a healthy manager")
            pg.down()
            killed = m.kill_worker("counter")  # its exit is recorded while nothing can store it

            def degraded() -> dict | None:
                report = m.http.get("/healthz").json()
                return report if report["status"] == "degraded" and len(report["problems"]) >= 2 else None

            report = wait_for(degraded, 20, 0.1, "/healthz to report the outage")
            text = m.http.get("/healthz").text
            assert not [f for f in RAW_FRAGMENTS if f.lower() in text.lower()], text
            assert str(pg.data_dir) not in text and "postgres" not in text.lower()
            assert any("database is not answering" in p for p in report["problems"]), report
            stopped = m.wait_worker("counter", lambda w: w["state"] == "stopped", 20, "the lease to lapse")
            assert stopped["reasons"] == [
                "stopped: the database is not answering, so no manager can hold its lease; "
                "it starts again once the database is back"
            ], stopped
            detail = m.api("GET", "/api/workers/counter")  # from memory, not after the pool's 30 s
            assert detail.status_code == 200 and detail.json()["databaseError"], detail.text
            assert any(e["pid"] == killed for e in detail.json()["events"]), detail.json()["events"]
            assert not [f for f in RAW_FRAGMENTS if f.lower() in detail.json()["databaseError"].lower()]
            pg.up()
            m.wait_worker("counter", lambda w: w["state"] == "running" and w["healthy"], 30, "the worker back")
            wait_for(lambda: m.http.get("/healthz").json()["status"] == "ok", 30, 0.2, "/healthz ok again")
            m.wait_events(
                "counter",
                lambda events: any(e["pid"] == killed and e["event"] != "started" for e in events),
                20,
                "the exit recorded during the outage, stored once the database is back",
            )
        finally:
            m.close()
