"""`python -m bench peers`: the manager beside supervisord, circus and PM2, in one run.

Every supervisor runs the same quiet Python child (`python -m bench.quiet_child`; for the manager a
`module:` worker, so it is forked from the worker template) N times (BENCH_PEERS_N, default 7; e.g.
`BENCH_PEERS_N=7,50`). Figures, each the same way for every supervisor:

- start all: launch of the supervisor → all N children running (the manager's database is
  started beforehand and excluded; it is empty, so the manager's boot applies every migration);
- start all, migrated database (manager only): the same on a database migrated beforehand
  (`python -m manager migrate`), as every boot but a first install finds it;
- respawn after SIGKILL: kill a child → a new child running, median of KILLS;
- idle CPU: the supervisor's processes over IDLE_S seconds at rest (manager + guardian + template);
- RSS: the supervisor's own processes (the manager's row adds guardian and template), summed;
- PSS: the same processes' proportional set size (a page shared by k processes counts 1/k in each,
  so libpython's pages, shared by the manager, its template and the workers forked from it, are
  not counted once per process as in the RSS sum; PM2's node shares little with its children);
- status CLI: wall time of the supervisor's own status command, median of 7;
- orphans: SIGKILL the supervisor process alone, wait 2 s, count children still alive;
- kill → first heartbeat of the ethereum worker (manager only, exec vs template; bench.first_heartbeat;
  BENCH_PEERS_HEARTBEAT=0 skips it).

Children are found through /proc/<pid>/task/<pid>/children, cheap and the same for every peer (for
the manager: its own children and its worker template's, less the guardian and the template).
Ratios are against the best peer on each line (lower is better on every line).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import peer_tools
from bench.stats import table
from tests.support.manager import ManagerHandle, free_port
from tests.support.postgres import fresh_database, postgres_server
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
CHILD = [sys.executable, "-m", "bench.quiet_child"]
KILLS = int(os.environ.get("BENCH_PEERS_KILLS", "15"))
IDLE_S = float(os.environ.get("BENCH_PEERS_IDLE_S", "10"))


def proc_children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class Figures:
    start_s: float = 0.0
    respawn_ms: list[float] = field(default_factory=list)
    cpu_pct: float = 0.0
    rss_mb: float = 0.0
    pss_mb: float = 0.0
    start_migrated_s: float | None = None
    status_ms: list[float] = field(default_factory=list)
    orphans: int = 0
    n: int = 0
    note: str = ""


class Peer:
    """One supervisor under test: start it, list its children, status command, stop it."""

    name = ""

    def __init__(self, n: int, workdir: Path) -> None:
        self.n, self.workdir = n, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None: ...
    def ready(self) -> None:
        """Wait until the supervisor answers its status command (after "start all" is measured)."""

    def daemon_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def own_pids(self) -> list[int]:
        return [self.daemon_pid()]

    def children(self) -> list[int]:
        return proc_children(self.daemon_pid())

    def status_command(self) -> list[str]: ...
    def shutdown(self) -> None: ...

    def _popen(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


class Supervisord(Peer):
    name = "supervisord"

    def launch(self) -> None:
        sock = self.workdir / "supervisor.sock"
        programs = "".join(
            f"\n[program:q{i:02d}]\ncommand={' '.join(CHILD)}\ndirectory={ROOT}\nautorestart=true\n"
            f"startsecs=0\nstdout_logfile=NONE\nstderr_logfile=NONE\n"
            for i in range(self.n)
        )
        conf = self.workdir / "supervisord.conf"
        conf.write_text(
            f"[supervisord]\nnodaemon=true\nlogfile={self.workdir}/supervisord.log\npidfile={self.workdir}/s.pid\n"
            f"[unix_http_server]\nfile={sock}\n[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            f"[supervisorctl]\nserverurl=unix://{sock}\n{programs}"
        )
        self.conf = conf
        self._popen([str(peer_tools.bin_path("supervisord")), "-c", str(conf)])

    def status_command(self) -> list[str]:
        return [str(peer_tools.bin_path("supervisorctl")), "-c", str(self.conf), "status"]

    def shutdown(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class Circus(Peer):
    name = "circus"

    def launch(self) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        watchers = "".join(
            f"\n[watcher:q{i:02d}]\ncmd={CHILD[0]}\nargs={' '.join(CHILD[1:])}\nworking_dir={ROOT}\n"
            "numprocesses=1\nwarmup_delay=0\ncopy_env=true\n"
            for i in range(self.n)
        )
        conf = self.workdir / "circus.ini"
        conf.write_text(
            f"[circus]\nendpoint={self.endpoint}\npubsub_endpoint=tcp://127.0.0.1:{free_port()}\n"
            f"statsd=false\n{watchers}"
        )
        self._popen([str(peer_tools.bin_path("circusd")), str(conf)])

    def status_command(self) -> list[str]:
        return [str(peer_tools.bin_path("circusctl")), "--endpoint", self.endpoint, "status"]

    def shutdown(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class Pm2(Peer):
    name = "PM2"

    def launch(self) -> None:
        self.env = {**os.environ, "PM2_HOME": str(self.workdir / "pm2home")}
        apps = ",".join(
            f'{{name:"q{i:02d}",script:"{CHILD[0]}",args:"{" ".join(CHILD[1:])}",interpreter:"none",'
            f'cwd:"{ROOT}",autorestart:true}}'
            for i in range(self.n)
        )
        eco = self.workdir / "ecosystem.config.js"
        eco.write_text(f"module.exports = {{apps: [{apps}]}};\n")
        subprocess.run([str(peer_tools.pm2_path()), "start", str(eco)], env=self.env, check=True, capture_output=True)

    def daemon_pid(self) -> int:
        return int((self.workdir / "pm2home" / "pm2.pid").read_text())

    def status_command(self) -> list[str]:
        return [str(peer_tools.pm2_path()), "status"]

    def shutdown(self) -> None:
        subprocess.run([str(peer_tools.pm2_path()), "kill"], env=self.env, capture_output=True)


class TheManager(Peer):
    name = "manager"

    def __init__(self, n: int, workdir: Path, database_url: str, template_fork: bool = True) -> None:
        super().__init__(n, workdir)
        self.template_fork = template_fork
        self._own: dict[int, bool] = {}
        spec = {"module": "bench.quiet_child", "heartbeat": False}
        self.m = ManagerHandle(
            workdir,
            database_url,
            {f"q{i:02d}": dict(spec) for i in range(n)},
            healdec={
                "min_uptime_s": 0,
                "max_restarts": 10_000,
                "restart_window_s": 1,
                "restart_delay_ms": 0,
                "sweep_interval_ms": 1000,
                "heartbeat_timeout_s": 60,
                "template_fork": template_fork,
            },
        )

    def launch(self) -> None:
        """Launch only, as every peer is launched: "start all" counts the children, like theirs."""
        self.m.start(wait=False)
        self.proc = self.m.proc

    def ready(self) -> None:
        self.m.wait_ready(120)  # the status command needs the API

    def own_pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid, *(k for k in proc_children(self.proc.pid) if self._is_own(k))]

    def _is_own(self, pid: int) -> bool:
        """The guardian or the template (remembered per pid: this runs in a 0.5 ms polling loop)."""
        if pid not in self._own:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().decode(errors="replace")
            except OSError:
                return False
            own = any(o in cmdline for o in ("manager.zygote", "manager/guardian.sh"))
            if not own and (not cmdline or "-m\0manager\0" in cmdline):
                return False  # forked by the manager, not yet exec'd (or mid-exec: empty): ask again next time
            self._own[pid] = own
        return self._own[pid]

    def children(self) -> list[int]:
        """The workers, found in /proc as for every peer (polling the status API every 0.5 ms
        during a respawn would load the very event loop that respawns): the manager's own
        children (exec path) and the template's (fork path), less the guardian and the template."""
        own = self.own_pids()
        return [k for pid in own for k in proc_children(pid) if k not in own]

    def status_command(self) -> list[str]:
        return [sys.executable, "-m", "manager", "status", "--config", str(self.m.config_path)]

    def shutdown(self) -> None:
        self.m.close()


def _all_children(peer: Peer) -> list[int]:
    kids = peer.children()
    return kids if len(kids) >= peer.n else []


def measure(peer: Peer) -> Figures:
    fig = Figures(n=peer.n)
    started = time.perf_counter()
    peer.launch()
    wait_for(lambda: _all_children(peer), 120, 0.002, f"{peer.name}: all children running")
    fig.start_s = time.perf_counter() - started
    peer.ready()
    time.sleep(1.0)
    for i in range(KILLS):
        kids = _all_children(peer) or wait_for(lambda: _all_children(peer), 30, 0.01, "children back")
        victim = kids[i % len(kids)]
        t0 = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda v=victim: len([k for k in peer.children() if k != v]) >= peer.n, 30, 0.0005, "respawn")
        fig.respawn_ms.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.3)
    time.sleep(2.0)  # let the last respawns settle before idling
    procs = [psutil.Process(p) for p in peer.own_pids()]
    before = [p.cpu_times() for p in procs]
    time.sleep(IDLE_S)
    used = sum(
        (a.user + a.system) - (b.user + b.system) for a, b in zip([p.cpu_times() for p in procs], before, strict=True)
    )
    fig.cpu_pct = used / IDLE_S * 100
    fig.rss_mb = sum(p.memory_info().rss for p in procs) / 2**20
    fig.pss_mb = sum(p.memory_full_info().pss for p in procs) / 2**20
    env = getattr(peer, "env", None)
    for _ in range(7):
        t0 = time.perf_counter()
        subprocess.run(peer.status_command(), cwd=ROOT, env=env, capture_output=True, check=False)
        fig.status_ms.append((time.perf_counter() - t0) * 1000)
    kids = peer.children()
    os.kill(peer.daemon_pid(), signal.SIGKILL)
    time.sleep(2.0)
    fig.orphans = sum(alive(k) for k in kids)
    for k in kids:  # clean up after the peers that leave orphans
        if alive(k):
            os.kill(k, signal.SIGKILL)
    return fig


def start_only(peer: Peer) -> float:
    """Launch → all children running, then stop (the start-all figure alone)."""
    started = time.perf_counter()
    peer.launch()
    try:
        wait_for(lambda: _all_children(peer), 120, 0.002, f"{peer.name}: all children running")
        return time.perf_counter() - started
    finally:
        peer.shutdown()


def migrate(url: str) -> None:
    import psycopg

    from sql import apply_migrations

    with psycopg.connect(url, autocommit=True) as conn:
        apply_migrations(conn)


def _row(label: str, values: dict[str, Any], fmt: Callable[[Any], str], peers: list[str]) -> list[str]:
    best = min((values[p] for p in peers if p in values), default=None)
    cells = [fmt(values[name]) if name in values else "-" for name in values]
    ratio = ""
    if "manager" in values and best:
        ratio = f"{values['manager'] / best:.2f}x best peer"
    elif "manager" in values and best == 0:
        ratio = "best peer is 0"
    return [label, *cells, ratio]


def _migrated_row(results: dict[str, Figures], names: list[str], peers: list[str]) -> list[str]:
    """Start all on a migrated database: the manager's cells only (the peers have no database),
    its ratio against the best peer's start all."""
    cells = [
        f"{f.start_migrated_s:.2f}" if (f := results[name]).start_migrated_s is not None else "-" for name in names
    ]
    best = min(results[p].start_s for p in peers if p in results)
    mine = results["manager"].start_migrated_s if "manager" in results else None
    ratio = f"{mine / best:.2f}x best peer" if mine is not None and best else ""
    return ["start all, migrated database, s", *cells, ratio]


def run(n: int, admin_url: str, tmp: Path, heartbeat_ms: dict[str, float] | None = None) -> str:
    results: dict[str, Figures] = {}
    for cls in (Supervisord, Circus, Pm2):
        workdir = tmp / f"{cls.name}-{n}"
        workdir.mkdir()
        peer = cls(n, workdir)
        print(f"{cls.name} with {n} children ...", file=sys.stderr, flush=True)
        try:
            results[cls.name] = measure(peer)
        finally:
            peer.shutdown()
    for template in (True, False):
        label = "manager" if template else "manager (exec)"
        workdir = tmp / f"manager-{n}-{template}"
        workdir.mkdir()
        with fresh_database(admin_url) as url:
            peer = TheManager(n, workdir, url, template)
            print(f"{label} with {n} children ...", file=sys.stderr, flush=True)
            try:
                results[label] = measure(peer)
            finally:
                peer.shutdown()
        with fresh_database(admin_url) as url:
            migrate(url)
            workdir = tmp / f"manager-{n}-{template}-migrated"
            workdir.mkdir()
            results[label].start_migrated_s = start_only(TheManager(n, workdir, url, template))
    names = list(results)
    peers = ["supervisord", "circus", "PM2"]

    def values(get: Callable[[Figures], float]) -> dict[str, float]:
        return {name: get(results[name]) for name in names}

    rows = [
        _row(
            "respawn after SIGKILL, median ms",
            values(lambda f: statistics.median(f.respawn_ms)),
            "{:.1f}".format,
            peers,
        ),
        _row("idle CPU, % of a core", values(lambda f: f.cpu_pct), "{:.2f}".format, peers),
        _row("supervisor RSS, MiB", values(lambda f: f.rss_mb), "{:.0f}".format, peers),
        _row("supervisor PSS, MiB", values(lambda f: f.pss_mb), "{:.0f}".format, peers),
        _row("status CLI, median ms", values(lambda f: statistics.median(f.status_ms)), "{:.0f}".format, peers),
        _row("start all, s", values(lambda f: f.start_s), "{:.2f}".format, peers),
        _migrated_row(results, names, peers),
        _row(f"orphans after SIGKILL (of {n})", values(lambda f: f.orphans), "{:.0f}".format, peers),
    ]
    if heartbeat_ms:  # no peer measures it: the ratio is the template path against exec
        cells = [f"{heartbeat_ms[name]:.0f}" if name in heartbeat_ms else "-" for name in names]
        ratio = heartbeat_ms["manager"] / heartbeat_ms["manager (exec)"]
        rows.append(["kill → first heartbeat, ethereum worker, median ms", *cells, f"template {ratio:.2f}x exec"])
    return table(rows, [f"{n} children", *names, "manager vs best peer"])


def main() -> None:
    peer_tools.ensure_installed()
    counts = [int(c) for c in os.environ.get("BENCH_PEERS_N", "7").split(",")]
    with tempfile.TemporaryDirectory() as tmp, postgres_server(Path(tmp) / "pg") as admin_url:
        heartbeat_ms = None
        if os.environ.get("BENCH_PEERS_HEARTBEAT", "1") != "0":
            from bench.first_heartbeat import figures

            heartbeat_ms = figures(admin_url, Path(tmp))
        tables = [run(n, admin_url, Path(tmp), heartbeat_ms if i == 0 else None) for i, n in enumerate(counts)]
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
