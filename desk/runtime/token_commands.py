"""``appeal-desk token create|list|revoke``: staff API tokens from the command line."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from tortoise.exceptions import IntegrityError

from desk.config.keys import TokenInfo, create_token, list_tokens, parse_period, revoke_token
from desk.config.settings import Settings
from desk.context import utc_now


async def token_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run one ``token`` action; returns the exit code."""
    action = str(args.token_command)
    if action == "create":
        return await _create(args)
    if action == "list":
        _print_table(await list_tokens(settings))
        return 0
    name = await revoke_token(args.token)
    if name is None:
        configured = any(t.name == args.token for t in settings.api.tokens)
        where = " (it is named in the config: remove it there)" if configured else ""
        print(f"appeal-desk: no stored token '{args.token}'{where}", file=sys.stderr)
        return 1
    print(f"token '{name}' revoked: it is refused from now on")
    return 0


async def _create(args: argparse.Namespace) -> int:
    expires_at = None
    if args.expires_in is not None:
        try:
            expires_at = utc_now() + parse_period(args.expires_in)
        except ValueError as exc:
            print(f"appeal-desk: --expires-in: {exc}", file=sys.stderr)
            return 1
    try:
        token = await create_token(args.name, args.role, expires_at=expires_at)
    except IntegrityError:
        print(f"appeal-desk: a token named '{args.name}' exists already", file=sys.stderr)
        return 1
    if expires_at is not None:
        print(f"expires {_when(expires_at)}", file=sys.stderr)
    print(token)
    return 0


def _when(moment: datetime | None, none: str = "—") -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else none


def _print_table(tokens: list[TokenInfo]) -> None:
    now = utc_now()
    rows = [("ID", "NAME", "ROLE", "CREATED", "LAST USED", "EXPIRES")]
    for t in tokens:
        expires = _when(t.expires_at, "never")
        if t.expires_at is not None and t.expires_at <= now:
            expires += " (expired)"
        rows.append(
            (
                str(t.id) if t.id is not None else "config",
                t.name,
                t.role,
                _when(t.created_at),
                _when(t.last_used_at, "never"),
                expires,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
