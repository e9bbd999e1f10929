"""The ``appeal-desk`` command: serve, worker, migrate, check-config, token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from desk.config_errors import ConfigError
from desk.errors import DeskError
from desk.logs import setup_logging
from desk.settings import Settings, config_path, load_settings
from models import db


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appeal-desk",
        description="Customer appeals from Telegram, VK, email and the web in one stream.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML config file (default: $DESK_CONFIG or ./appeal-desk.yaml when present)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="HTTP API, web channel, enabled channels and workers")
    sub.add_parser("worker", help="stream and outbox workers only (to scale out)")
    sub.add_parser("migrate", help="apply database migrations")
    check = sub.add_parser(
        "check-config", help="validate the config; problems as file:key: reason, exit 1"
    )
    check.add_argument("file", nargs="?", type=Path, help="the file to check")
    token = sub.add_parser("token", help="staff API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("name")
    create.add_argument("--role", choices=["agent", "supervisor", "manager"], default="supervisor")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    path = args.config or getattr(args, "file", None) or config_path()
    try:
        settings = load_settings(path, use_default_path=False)
    except ConfigError as exc:
        print("appeal-desk: the configuration has problems:", file=sys.stderr)
        for line in exc.problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        print(f"{path or 'settings'}: OK")
        return 0
    setup_logging(settings)
    try:
        return asyncio.run(_run(args, settings))
    except KeyboardInterrupt:
        return 130
    except (DeskError, OSError) as exc:
        print(f"appeal-desk: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the command's root: a clear line, the details in the log
        logging.getLogger("desk.cli").debug("command failed", exc_info=True)
        print(f"appeal-desk: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "migrate":
        pending = await db.pending_migrations(settings.database_url)
        await db.migrate(settings.database_url)
        print(f"applied {len(pending)} migration(s)" if pending else "nothing to apply")
        return 0
    if args.command == "token":
        from desk.keys import create_token

        await db.connect(settings.database_url)
        try:
            print(await create_token(args.name, args.role))
        finally:
            await db.disconnect()
        return 0
    from desk.service import run_until_stopped

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_until_stopped(settings, args.command, sys.stdout, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
