"""A Postgres of a test's own (the chaos run, a database outage), so it can be stopped and started
without touching the server every other test shares. It is the embedded pgserver build (same
binaries, same pgvector) in its own data directory, stopped and started through pgserver's `pg_ctl`.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from manager.db import start_embedded


class OwnPostgres:
    """`url` once started; `restart(down_s)` stops it (fast shutdown: every connection is cut),
    keeps it down `down_s` seconds, and starts it again on the same socket; `stop()` at the end."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = start_embedded(data_dir, cleanup_mode="delete")
        import pgserver

        self._server = pgserver.get_server(data_dir)
        # the postmaster's own command line, recorded by Postgres; `start` needs its options again
        words = shlex.split((data_dir / "postmaster.opts").read_text())
        self._options = shlex.join(words[words.index("-D") + 2 :]) if "-D" in words else ""

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])

    def down(self) -> None:
        """Fast shutdown: every connection is cut, new ones are refused."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._server.system_user, timeout=30)

    def up(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(
            ["-w", "-o", self._options, "-l", str(self.data_dir / "log"), "start"],
            pgdata=self.data_dir,
            user=self._server.system_user,
            timeout=30,
        )

    def restart(self, down_s: float) -> float:
        """Down for `down_s` seconds, then up again; returns the seconds it was unreachable."""
        stopped = time.monotonic()
        self.down()
        time.sleep(down_s)  # the outage itself: this is what the fleet has to ride out
        self.up()
        return time.monotonic() - stopped

    def stop(self) -> None:
        """Stop the server (pgserver's handle still points at the postmaster from before a restart,
        so stop it here first) and delete its data directory."""
        with contextlib.suppress(subprocess.CalledProcessError):  # already down
            self.down()
        self._server._postmaster_info = None  # stopped above: pgserver need not try again
        self._server.cleanup()


@contextlib.contextmanager
def own_postgres(prefix: str = "wm-own-pg-") -> Iterator[OwnPostgres]:
    """A started OwnPostgres, stopped and deleted afterwards. Its directory is not under pytest's
    tmp dirs: a concurrent pytest run prunes those, and would delete a live server's data."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        pg = OwnPostgres(workdir / "data")
        try:
            yield pg
        finally:
            pg.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
