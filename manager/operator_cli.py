"""The operator's commands against a running manager: `restart|stop|start NAME` and
`logs NAME [-n N] [--follow]`, all through its HTTP API (see manager.api_client).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded by the commands themselves, so that `status` stays quick
    from manager.config import Config

MAX_LINES = 300  # the manager keeps this many lines per worker
FOLLOW_POLL_S = 0.5
STREAM_MARK = {"stdout": "out", "stderr": "ERR", "manager": "mgr"}


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the operator subcommands on the CLI's subparsers."""
    for action, what in (
        ("restart", "stop (if running) and start a worker again; clears `failed`"),
        ("stop", "stop a worker gracefully; it stays stopped until started"),
        ("start", "start a stopped or failed worker"),
    ):
        p = sub.add_parser(action, parents=[common], help=f"{what} (via the running manager, ADMIN_TOKEN)")
        p.add_argument("name")
    logs = sub.add_parser("logs", parents=[common], help="a worker's recent output (stderr marked ERR)")
    logs.add_argument("name")
    logs.add_argument("-n", "--lines", type=int, default=50, help=f"how many lines (at most {MAX_LINES})")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")


def _config(args: argparse.Namespace) -> Config:
    from manager.config import load_config

    return load_config(getattr(args, "config", None))


def cmd_worker_action(args: argparse.Namespace) -> int:
    """POST /api/workers/NAME/<action>; prints what the manager accepted."""
    config = _config(args)
    from manager.api_client import call_manager

    response = call_manager(config, "POST", f"/api/workers/{args.name}/{args.command}")
    worker = response.json().get("worker") or {}
    print(f"{args.name}: {args.command} accepted (state now {worker.get('state', '?')})")
    return 0


def format_line(line: dict[str, Any]) -> str:
    mark = STREAM_MARK.get(str(line.get("stream")), str(line.get("stream")))
    return f"{line.get('at')} {mark} {line.get('text')}"


def _lines(config: Config, name: str, count: int) -> list[dict[str, Any]]:
    """The worker's last `count` lines, oldest first (the API lists them newest first)."""
    from manager.api_client import call_manager

    detail = call_manager(config, "GET", f"/api/workers/{name}", params={"lines": count}).json()
    return list(reversed(detail.get("logs") or []))


def _key(line: dict[str, Any]) -> tuple[str, str, str]:
    return (str(line.get("at")), str(line.get("stream")), str(line.get("text")))


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the last N lines; with --follow, poll for new ones (deduplicated) until interrupted."""
    config = _config(args)
    count = max(1, min(args.lines, MAX_LINES))
    seen: set[tuple[str, str, str]] = set()
    newest = ""
    batch = _lines(config, args.name, count)
    try:
        while True:
            for line in batch:
                key = _key(line)
                if key in seen or key[0] < newest:
                    continue
                seen.add(key)
                newest = max(newest, key[0])
                print(format_line(line), flush=True)
            if not args.follow:
                return 0
            seen = {k for k in seen if k[0] >= newest}  # only ties with the newest can repeat
            time.sleep(FOLLOW_POLL_S)
            batch = _lines(config, args.name, MAX_LINES)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `logs NAME | head`
        sys.stderr.close()
        return 0
