"""Database set-up: the Tortoise config for a URL, connecting, and applying migrations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.connection import get_connection
from tortoise.migrations.api import migrate as run_migrations
from tortoise.migrations.executor import MigrationExecutor

APP_LABEL = "models"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_FILE = re.compile(r"^\d{4}_\w+\.py$")


def normalise_url(url: str) -> str:
    """Add the settings every SQLite connection needs (wait on locks instead of failing)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return url
    query = dict(parse_qsl(parts.query))
    query.setdefault("busy_timeout", "5000")
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _keep_session(connection: asyncpg.Connection) -> None:
    """A pooled connection goes back without asyncpg's reset query (one more round trip per
    statement or transaction): the desk keeps no session state (no LISTEN, advisory locks, SET
    or cursors), and asyncpg still rolls back a transaction left open before calling this."""


def connection_config(url: str) -> str | dict[str, Any]:
    """The Tortoise connection for ``url``: the URL itself, or its expanded form where a
    PostgreSQL pool needs options a URL cannot carry."""
    url = normalise_url(url)
    if urlsplit(url).scheme not in ("postgres", "asyncpg"):
        return url
    config = expand_db_url(url)
    if config["engine"] == "tortoise.backends.asyncpg":
        config["credentials"].setdefault("reset", _keep_session)
    return config


def tortoise_config(url: str) -> dict[str, Any]:
    """The Tortoise config of Appeal Desk for one database URL."""
    return {
        "connections": {"default": connection_config(url)},
        "apps": {
            APP_LABEL: {
                "models": ["models"],
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def connect(url: str) -> None:
    """Open the ORM on ``url`` for the whole process.

    Tortoise keeps its state in a ContextVar; the global fallback makes it visible to tasks
    that aiohttp and asyncio create from other contexts (request handlers, workers).
    """
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)


async def migrate(url: str) -> None:
    """Apply every migration not yet applied to the database at ``url``."""
    try:
        await run_migrations(config=tortoise_config(url))
    finally:
        await Tortoise.close_connections()


async def disconnect() -> None:
    """Close every ORM connection."""
    await Tortoise.close_connections()


def known_migrations() -> list[str]:
    """The names of the migrations shipped with this version, in order."""
    return sorted(p.stem for p in MIGRATIONS_DIR.iterdir() if _MIGRATION_FILE.match(p.name))


async def pending_migrations(url: str) -> list[str]:
    """The migrations not yet applied to the database at ``url`` (all of them when it is new)."""
    config = tortoise_config(url)
    await Tortoise.init(config=config, init_connections=False)
    executor = MigrationExecutor(get_connection("default"), config["apps"])
    steps = await executor.plan(None)
    pending = [step.migration.name for step in steps if not step.backward]
    await Tortoise.close_connections()
    return pending


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, fit for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def ping() -> None:
    """One trivial query on the default connection; raises when the database does not answer."""
    await Tortoise.get_connection("default").execute_query("SELECT 1")
