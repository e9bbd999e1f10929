"""Database set-up: the Tortoise config for a URL, connecting, and applying migrations."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tortoise import Tortoise
from tortoise.migrations.api import migrate as run_migrations

APP_LABEL = "models"


def normalise_url(url: str) -> str:
    """Add the settings every SQLite connection needs (wait on locks instead of failing)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return url
    query = dict(parse_qsl(parts.query))
    query.setdefault("busy_timeout", "5000")
    return urlunsplit(parts._replace(query=urlencode(query)))


def tortoise_config(url: str) -> dict[str, Any]:
    """The Tortoise config of Appeal Desk for one database URL."""
    return {
        "connections": {"default": normalise_url(url)},
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
    """Open the ORM on ``url``; call before creating tasks that use it (a ContextVar holds it)."""
    await Tortoise.init(config=tortoise_config(url))


async def migrate(url: str) -> None:
    """Apply every migration not yet applied to the database at ``url``."""
    await run_migrations(config=tortoise_config(url))


async def disconnect() -> None:
    """Close every ORM connection."""
    await Tortoise.close_connections()
