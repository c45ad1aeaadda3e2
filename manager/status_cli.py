"""`python -m manager status`: the running manager's worker table, quickly.

The CLI's cost is almost all imports, so this path imports no pydantic, httpx, psycopg or YAML: it
reads only `api.host`/`api.port` from the config file (with `${VAR}` expanded) and asks the manager's
API over a plain socket. The two values are read by `quick_api_fields`, which understands only a plain
block-style `api:` section and hands anything else to PyYAML (whose import alone is a fifth of the
command's time). Anything unusual (an unset variable, an unreadable file) goes through the full
config loader, which gives the usual one-line error. `--watch` redraws the table in place.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

from manager.errors import ManagerError, ManagerNotRunning

TYPE_CHECKING = False  # `typing` is a tenth of this command's imports; mypy reads the block all the same
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

HEADERS = ["WORKER", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS", "ITEMS", "ERRORS", "LAG", "LAST RUN", "ON", "WHY"]

_YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off"}  # plain scalars YAML does not read as text
_INDICATORS = set("-?:,[]{}#&*!|>'\"%@`")  # a value starting with one is quoted, flow, a tag...: PyYAML's


def quick_api_fields(text: str) -> dict[str, str | int] | None:
    """`api.host`/`api.port` as PyYAML's safe loader would give them, read without PyYAML, or None
    when the file is not plain enough to be sure (then PyYAML reads it).

    Sure means: every line at column 0 is a plain `key:` line (no documents, directives or
    multi-line flow values that could hide an `api:` line), `api:` appears once with nothing after
    it, and each line of its block is `key: value` at one indentation with a value that YAML reads
    as text (a name or dotted address starting with a letter or digit, not a YAML word) or, for the
    port, a decimal integer. `${VAR}` values are text to YAML too and come back unexpanded.
    """
    if "\t" in text or text.startswith("\ufeff"):
        return None
    fields: dict[str, str | int] = {}
    in_api, seen_api, indent = False, False, 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace():
            key, colon, rest = line.partition(":")
            if not colon or not _plain_key(key) or (rest and not rest[0].isspace()):
                return None
            in_api = key == "api"
            if in_api:
                if seen_api or _value(rest):
                    return None
                seen_api, indent = True, 0
            continue
        if not in_api:
            continue
        width = len(line) - len(line.lstrip(" "))
        indent = indent or width
        key, colon, rest = stripped.partition(":")
        value = _value(rest)
        if width != indent or not colon or not _plain_key(key) or key in fields or not value:
            return None
        if value[0] in _INDICATORS or ": " in value or value.endswith(":"):
            return None
        if key == "port" and value.isdigit() and (value == "0" or value[0] != "0"):
            fields[key] = int(value)
        elif value.startswith("${") or (value[0].isalnum() and _text(value)):
            fields[key] = value
        elif key in ("host", "port"):
            return None
    return fields if seen_api else {}


def _plain_key(key: str) -> bool:
    return key.replace("_", "a").replace("-", "a").isalnum() and key.isascii()


def _value(rest: str) -> str:
    """A plain scalar's text: a ` #` starts a comment."""
    return rest.split(" #", 1)[0].strip()


def _text(value: str) -> bool:
    """Whether YAML 1.1 (PyYAML) reads this plain scalar as a string: a dotted-quad address, or a
    name that starts with a letter and is not one of YAML's words (letters first also rules out
    numbers, hex and octal, timestamps and `.inf`)."""
    parts = value.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return True
    return value[0].isalpha() and value.lower() not in _YAML_WORDS and _plain_key(value.replace(".", "-"))


def api_address(config_path: str | None) -> tuple[str, int]:
    """Host and port of the manager's API, as the full config loader would read them."""
    path = config_path or os.environ.get("MANAGER_CONFIG") or "config.yaml"
    try:
        with open(path, encoding="utf-8") as f:  # not pathlib: it imports urllib and ipaddress
            text = f.read()
        fields = quick_api_fields(text)
        if fields is None:
            fields = _yaml_api_fields(text)
        host, port = fields.get("host", "127.0.0.1"), fields.get("port", 4200)
        if isinstance(host, str) and "$" in host:
            host = _expand(host)
        if isinstance(port, str):
            port = int(_expand(port))
        if isinstance(host, str) and isinstance(port, int) and 0 <= port <= 65535:
            return _local(host), port
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    from manager.config import load_config  # the slow, thorough path: it explains what is wrong

    config = load_config(config_path)
    return _local(config.api.host), config.api.port


def _yaml_api_fields(text: str) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        api = (yaml.load(text, Loader=loader) or {}).get("api") or {}
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None
    return dict(api)


def _expand(text: str) -> str:
    from manager.envref import expand_env

    return expand_env(text)


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def fetch(host: str, port: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """GET /api/workers/status over a plain socket (HTTP/1.0: the server closes when done).
    `http.client` would import the email package first, a good share of the command's time."""
    where = f"http://{host}:{port}/api/workers/status"
    request = f"GET /api/workers/status HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n"
    chunks = []
    try:
        with _connect(host, port, timeout_s) as sock:
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


def _connect(host: str, port: int, timeout_s: float) -> socket.socket:
    """An IPv4 address is connected to directly: `create_connection` resolves it through
    getaddrinfo, which loads the `idna` codec (and `unicodedata`) first."""
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_s)
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        return sock
    return socket.create_connection((host, port), timeout=timeout_s)


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


def status_arguments(status: argparse.ArgumentParser) -> argparse.ArgumentParser:
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.add_argument(
        "--watch", nargs="?", type=float, const=2.0, metavar="SECONDS", help="redraw every SECONDS (default 2)"
    )
    return status


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, told the terminal width: left to itself it imports `shutil` (and
    with it lzma, bz2 and fnmatch) to ask, on every `add_argument`."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            try:
                width = os.get_terminal_size(sys.stdout.fileno()).columns
            except (OSError, ValueError):
                width = 80
        super().__init__(prog, width=width - 2)


def main(argv: list[str]) -> int:
    """`python -m manager status ...` (manager/__main__.py comes here without loading the full CLI)."""
    parser = argparse.ArgumentParser(
        prog="python -m manager status", description="the running manager's worker table", formatter_class=_Formatter
    )
    parser.add_argument("--config", default=None, help="config file")
    args = status_arguments(parser).parse_args(argv)
    try:
        return show(args.config, as_json=args.json, watch_s=args.watch)
    except ManagerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `status | head`: the reader stopped reading; end as a C tool would, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 128 + 13  # SIGPIPE


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
