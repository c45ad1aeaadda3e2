"""`python -m manager status`: the running manager's worker table, quickly.

The CLI's cost is almost all imports, so this path imports no pydantic, httpx or psycopg: it reads
only `api.host`/`api.port` from the config file (with `${VAR}` expanded) and asks the manager's API over
a plain socket.
Anything unusual (an unset variable, an unreadable file) goes through the full config
loader, which gives the usual one-line error. `--watch` redraws the table in place.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from manager.envref import expand_env
from manager.errors import ManagerNotRunning

HEADERS = ["WORKER", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS", "ITEMS", "ERRORS", "LAG", "LAST RUN", "ON", "WHY"]


def api_address(config_path: str | None) -> tuple[str, int]:
    """Host and port of the manager's API, as the full config loader would read them."""
    import yaml

    path = Path(config_path or os.environ.get("MANAGER_CONFIG") or "config.yaml")
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(path.read_text(), Loader=loader) or {}
        api = data.get("api") or {}
        host, port = api.get("host", "127.0.0.1"), api.get("port", 4200)
        host = expand_env(host) if isinstance(host, str) else host
        port = int(expand_env(port)) if isinstance(port, str) else port
        if isinstance(host, str) and isinstance(port, int) and 0 <= port <= 65535:
            return _local(host), port
    except (OSError, yaml.YAMLError, AttributeError, KeyError, ValueError):
        pass
    from manager.config import load_config  # the slow, thorough path: it explains what is wrong

    config = load_config(config_path)
    return _local(config.api.host), config.api.port


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def fetch(host: str, port: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """GET /api/workers/status over a plain socket (HTTP/1.0: the server closes when done).
    `http.client` would import the email package first, a good share of the command's time."""
    where = f"http://{host}:{port}/api/workers/status"
    request = f"GET /api/workers/status HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n"
    chunks = []
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(request.encode())
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
    except OSError as exc:
        raise ManagerNotRunning(
            f"cannot reach the manager at {where}: {exc} (is `python -m manager` running?)"
        ) from None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
    if status != 200:
        raise ManagerNotRunning(f"the manager at {where} answered {status or head[:80]!r}: {body[:200]!r}")
    return list(json.loads(body))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ago(iso_text: str | None) -> str:
    if not iso_text:
        return "never"
    from datetime import UTC, datetime

    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso_text.replace("Z", "+00:00"))).total_seconds()
    return duration(seconds) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def lag(worker: dict[str, Any]) -> str:
    value = worker.get("lag")
    return "-" if value is None else f"{value:,.0f} {worker.get('lagUnit') or ''}".rstrip()


def where(owner: dict[str, Any] | None) -> str:
    """Which manager runs it (several managers may share one database)."""
    return f"{owner['host']}:{owner['pid']}" if owner else "-"


def render(workers: list[dict[str, Any]]) -> str:
    rows = [
        (
            w["name"],
            w["state"],
            w["verdict"],
            w["pid"] or "-",
            duration(w["uptimeSeconds"]),
            w["restartCount"],
            w["itemsProcessed"],
            f"{w['errorRate']:.0%}",
            lag(w),
            ago(w["lastRun"]),
            where(w.get("owner")),
            "; ".join(w["reasons"]) or "-",  # Healdec's reasons exactly as the API gives them
        )
        for w in workers
    ]
    return table(rows, HEADERS)


def show(config_path: str | None, as_json: bool = False, watch_s: float | None = None) -> int:
    host, port = api_address(config_path)
    if watch_s is None:
        workers = fetch(host, port)
        print(json.dumps(workers, indent=2) if as_json else render(workers))
        return 0
    while True:  # Ctrl-C ends it (the CLI turns KeyboardInterrupt into exit 130)
        text = render(fetch(host, port))
        sys.stdout.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + f"every {watch_s:g} s\n" + text + "\n")
        sys.stdout.flush()
        time.sleep(watch_s)
