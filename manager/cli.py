"""The command line: boot the manager, or talk to a running one (status) or to its database
(flags, settings, migrate), or run one worker in the foreground.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from manager import operator_cli
from manager.errors import ManagerError, UnknownWorker
from manager.status_cli import status_arguments as _status_arguments
from manager.status_cli import table as _table

if TYPE_CHECKING:  # the config model pulls in pydantic: only commands that need it load it
    from manager.config import Config

BOOT_HELP = "boot: migrate, start workers, serve HTTP; runs until SIGTERM/SIGINT"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="config file (default: $MANAGER_CONFIG, then ./config.yaml)"
    )
    parser = argparse.ArgumentParser(prog="python -m manager", description=BOOT_HELP, parents=[common])
    parser.add_argument(
        "--devnet", action="store_true", help="start the local stand-ins and point every worker at them"
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text", help="how worker output is echoed")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _status_arguments(sub.add_parser("status", parents=[common], help="the running manager's worker table"))

    flags = sub.add_parser("flags", parents=[common], help="read or change feature flags")
    flags_sub = flags.add_subparsers(dest="action", required=True, metavar="ACTION")
    flags_sub.add_parser("list", parents=[common], help="all flags")
    for action in ("enable", "disable"):
        p = flags_sub.add_parser(
            action, parents=[common], help=f"{action} a flag (a bare worker name means <worker>_enabled)"
        )
        p.add_argument("name")

    settings = sub.add_parser("settings", parents=[common], help="read or change settings")
    settings_sub = settings.add_subparsers(dest="action", required=True, metavar="ACTION")
    settings_sub.add_parser("list", parents=[common], help="all settings")
    setter = settings_sub.add_parser("set", parents=[common], help="set KEY to a JSON value")
    setter.add_argument("key")
    setter.add_argument("value", help='a JSON value, e.g. 30000, true, "text", ["a","b"]')

    run_now = sub.add_parser(
        "run-now", parents=[common], help="start a cycle of worker NAME at once (through the API; ADMIN_TOKEN)"
    )
    run_now.add_argument("name")

    sub.add_parser("migrate", parents=[common], help="apply migrations and exit")
    worker = sub.add_parser("run-worker", parents=[common], help="run one configured worker in the foreground")
    worker.add_argument("name")
    operator_cli.add_parsers(sub, common)
    return parser


def _config(args: argparse.Namespace) -> Config:
    from manager.config import load_config

    return load_config(getattr(args, "config", None))


def _database(config: Config) -> str:
    from manager.app import prepare_database

    return prepare_database(config, say=lambda text: print(text, file=sys.stderr))


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def cmd_status(args: argparse.Namespace) -> int:
    from manager.status_cli import show

    return show(getattr(args, "config", None), as_json=args.json, watch_s=args.watch)


def cmd_run_now(args: argparse.Namespace) -> int:
    """POST /api/workers/{name}/run on the running manager, with the admin token from ADMIN_TOKEN."""
    from manager.api_client import call_manager

    call_manager(_config(args), "POST", f"/api/workers/{args.name}/run")
    print(f"{args.name}: a cycle was asked for")
    return 0


def _flag_name(config: Config, name: str) -> str:
    if name in config.workers:
        return f"{config.workers[name].replica_of or name}_enabled"
    if "_" not in name and name not in config.workers:
        known = ", ".join(config.workers)
        raise UnknownWorker(f"{name!r} is neither a flag name nor a configured worker ({known})")
    return name


def cmd_flags(args: argparse.Namespace) -> int:
    import psycopg

    from sql import query
    from workers.features import flag_owner

    config = _config(args)
    url = _database(config)
    with psycopg.connect(url, autocommit=True, application_name="worker-manager:cli") as conn:
        if args.action == "list":
            rows = conn.execute(query("list_flags")).fetchall()
            owners = {n: flag_owner(n, config.workers) for n, *_ in rows}
            rows.sort(key=lambda r: (owners[r[0]] or "~", r[0] != f"{owners[r[0]]}_enabled", r[0]))
            print(
                _table(
                    [
                        (owners[n] or "-", n, "on" if e else "off", d, u.strftime("%Y-%m-%d %H:%M:%S"), b)
                        for n, e, d, u, b in rows
                    ],
                    ["WORKER", "FLAG", "STATE", "DESCRIPTION", "UPDATED (UTC)", "BY"],
                )
            )
            return 0
        name = _flag_name(config, args.name)
        with conn.transaction():
            conn.execute(query("set_actor"), (_actor(),))
            conn.execute(query("set_flag"), (name, args.action == "enable"))
        print(f"{name} = {'true' if args.action == 'enable' else 'false'}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    import psycopg
    from psycopg.types.json import Jsonb

    from sql import query
    from workers.redact import mask_secrets

    config = _config(args)
    if args.action == "set":
        try:
            value = json.loads(args.value)
        except json.JSONDecodeError as exc:
            raise ManagerError(
                f"{args.value!r} is not JSON ({exc.msg}); quote strings: settings set {args.key} '\"text\"'"
            ) from None
    url = _database(config)
    with psycopg.connect(url, autocommit=True, application_name="worker-manager:cli") as conn:
        if args.action == "list":
            rows = conn.execute(query("list_settings")).fetchall()
            print(
                _table(
                    [(k, json.dumps(mask_secrets(v, k)), u.strftime("%Y-%m-%d %H:%M:%S"), b) for k, v, u, b in rows],
                    ["KEY", "VALUE", "UPDATED (UTC)", "BY"],
                )
            )
            return 0
        with conn.transaction():
            conn.execute(query("set_actor"), (_actor(),))
            conn.execute(query("set_setting"), (args.key, Jsonb(value)))
        print(f"{args.key} = {json.dumps(mask_secrets(value, args.key))}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    _database(_config(args))
    print("migrations are up to date")
    return 0


def cmd_run_worker(args: argparse.Namespace) -> int:
    from manager.runworker import run_leased_worker

    config = _config(args)
    if args.name not in config.workers:
        raise UnknownWorker(f"no worker named {args.name!r} (configured: {', '.join(config.workers)})")
    return run_leased_worker(args.name, config, _database(config))


def cmd_boot(args: argparse.Namespace) -> int:
    from manager.app import run_manager

    return run_manager(_config(args), devnet=args.devnet, log_format=args.log_format)


COMMANDS: dict[str | None, Callable[[argparse.Namespace], int]] = {
    None: cmd_boot,
    "status": cmd_status,
    "flags": cmd_flags,
    "settings": cmd_settings,
    "migrate": cmd_migrate,
    "run-now": cmd_run_now,
    "run-worker": cmd_run_worker,
    "restart": operator_cli.cmd_worker_action,
    "stop": operator_cli.cmd_worker_action,
    "start": operator_cli.cmd_worker_action,
    "logs": operator_cli.cmd_logs,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:  # the quickest command builds only its own parser (not the fifteen others)
        from manager.status_cli import main as status_main

        return status_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ManagerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
