"""Database set-up: the Tortoise config for a URL, connecting, and applying migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.connection import get_connection
from tortoise.migrations.api import migrate as run_migrations
from tortoise.migrations.executor import MigrationExecutor

from models import postgres_asyncpg, sql, sqlite_client

log = logging.getLogger(__name__)

APP_LABEL = "models"
CHECKPOINT_TRIES = 5  # another process reading the WAL holds the truncation back; tried again
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_FILE = re.compile(r"^\d{4}_\w+\.py$")
# What the server or the network says when the database is away (PostgreSQL classes 08, 57P01…
# and 53300; the client's own "connection is closed"), as opposed to what a statement or its
# data did wrong. Plain OSError covers refused, reset and timed-out connections.
_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.IdleSessionTimeoutError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InternalClientError,
)
_NOT_OUTAGES: tuple[type[BaseException], ...] = (asyncpg.ProtocolViolationError,)
# A statement not answered in this long is a connection gone silent (a peer gone without FIN or
# RST, a dead NAT entry): it fails as an outage instead of hanging its worker for good. The
# longest statements of a running desk (reports, at 1,000,000 appeals) take well under a second;
# migrations run without it. A URL's ``?command_timeout=S`` overrides it.
COMMAND_TIMEOUT_S = 60.0
# The local stream's table in its own SQLite file (the ``StreamEntry`` model, as migration 0001
# made it in the database); created when the process connects.
STREAM_SCHEMA = """
CREATE TABLE IF NOT EXISTS "stream_entry" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "payload" JSON NOT NULL,
    "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "claimed_by" VARCHAR(100),
    "claimed_until" TIMESTAMP,
    "deliveries" INT NOT NULL DEFAULT 0,
    "dead" INT NOT NULL DEFAULT 0,
    "error" VARCHAR(500) NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS "idx_stream_entr_dead_id" ON "stream_entry" ("dead", "id");
"""
_SQLITE_BUSY = re.compile(r"database (table )?is locked|database is busy")


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


def connection_config(
    url: str, command_timeout: float | None = COMMAND_TIMEOUT_S
) -> str | dict[str, Any]:
    """The Tortoise connection for ``url``: its expanded form with the desk's own clients
    (transactions that survive interruptions; a PostgreSQL pool with options a URL cannot
    carry, and ``command_timeout`` seconds for a statement), or the URL itself for other
    databases."""
    url = normalise_url(url)
    if urlsplit(url).scheme not in ("postgres", "asyncpg", "sqlite"):
        return url
    config = expand_db_url(url)
    if config["engine"] == "tortoise.backends.sqlite":
        config["engine"] = sqlite_client.ENGINE
    elif config["engine"] == "tortoise.backends.asyncpg":
        config["engine"] = postgres_asyncpg.ENGINE
        credentials = config["credentials"]
        credentials.setdefault("reset", _keep_session)
        given = credentials.get("command_timeout")
        credentials["command_timeout"] = float(given) if given else command_timeout
    return config


def stream_url(url: str) -> str | None:
    """Where the local stream keeps its entries when the database is SQLite: a file of its own
    beside the database's (``desk.db`` → ``desk.stream.db``; in memory for an in-memory
    database), with its own connection and write lock. None for PostgreSQL, whose stream table
    is in the database (concurrent writers do not wait for each other there)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return None
    path = parts.netloc + parts.path
    if path in ("", ":memory:"):
        return "sqlite://:memory:"
    file = Path(path)
    stream = file.with_name(f"{file.stem}.stream{file.suffix or '.db'}")
    return f"sqlite://{stream}" + (f"?{parts.query}" if parts.query else "")


def tortoise_config(url: str, command_timeout: float | None = COMMAND_TIMEOUT_S) -> dict[str, Any]:
    """The Tortoise config of Appeal Desk for one database URL."""
    return {
        "connections": {"default": connection_config(url, command_timeout)},
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
    # Tortoise caches each table's INSERT and UPDATE statements per connection name, not per
    # database: after SQLite in this process (tests, tools), PostgreSQL would get "?" markers.
    EXECUTOR_CACHE.clear()
    # Connections opened before (a second desk in one process, a tool) are closed, not orphaned
    # with their threads running; whoever used them opens the new ones on their next statement.
    if Tortoise.is_inited():
        await Tortoise.close_connections()
    await _close_own()
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)
    stream = stream_url(url)
    if stream is not None:
        config = connection_config(stream)
        assert isinstance(config, dict)
        client = sqlite_client.SqliteClient(
            connection_name=sql.STREAM, in_loop=True, **config["credentials"]
        )
        await client.execute_script(STREAM_SCHEMA)
        sql.OWN[sql.STREAM] = client


async def _close_own() -> None:
    for name, client in list(sql.OWN.items()):
        del sql.OWN[name]
        await client.close()


async def migrate(url: str) -> None:
    """Apply every migration not yet applied to the database at ``url``."""
    try:
        await run_migrations(config=tortoise_config(url, command_timeout=None))
    finally:
        await Tortoise.close_connections()


async def disconnect() -> None:
    """Close every ORM connection, and the stream's own."""
    await _close_own()
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
    """One trivial statement on the default connection; raises when the database does not
    answer. SQLite answers SELECT 1 without opening the file: there the write lock is taken
    and given back, which fails while another process holds it (after ``busy_timeout``)."""
    connection = Tortoise.get_connection("default")
    if connection.capabilities.dialect == "sqlite":
        await connection.execute_script("BEGIN IMMEDIATE; ROLLBACK;")
    else:
        await connection.execute_query("SELECT 1")


@contextlib.asynccontextmanager
async def erasing() -> AsyncIterator[None]:
    """Around a transaction that erases personal data. On SQLite, what it deletes or overwrites
    is zeroed in the database file and the stream's (``secure_delete``), and once it is over the
    write-ahead logs, which still hold the old pages, are checkpointed and truncated
    (``wal_checkpoint(TRUNCATE)``): the erased bytes stay in no file. On PostgreSQL nothing is
    done (its dead rows are VACUUM's business)."""
    files = [Tortoise.get_connection("default")]
    if files[0].capabilities.dialect != "sqlite":
        yield
        return
    if sql.STREAM in sql.OWN:
        files.append(sql.OWN[sql.STREAM])
    for connection in files:
        await connection.execute_script("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        for connection in files:
            await connection.execute_script("PRAGMA secure_delete = OFF")
    for connection in files:
        await _truncate_log(connection)


async def _truncate_log(connection: BaseDBAsyncClient) -> None:
    for attempt in range(CHECKPOINT_TRIES):
        _, rows = await connection.execute_query("PRAGMA wal_checkpoint(TRUNCATE)")
        busy = bool(rows and rows[0][0])
        if not busy:
            return
        await asyncio.sleep(0.2 * (attempt + 1))
    log.warning("the write-ahead log was not truncated: another process was reading it")


async def renew_connections() -> None:
    """Have the pool replace every connection made before now (after an outage: none of them
    is trusted); a no-op for SQLite."""
    connection = Tortoise.get_connection("default")
    if isinstance(connection, postgres_asyncpg.PostgresClient):
        await connection.expire_connections()


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, outermost first (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or went away (refused, closed or
    cut connections, a server shutting down or starting, SQLite locked by another process),
    rather than that the statement or its data were wrong."""
    for cause in causes(exc):
        if isinstance(cause, _NOT_OUTAGES):
            return False
        if isinstance(cause, _OUTAGES) or type(cause) is asyncpg.InterfaceError:
            return True  # plain InterfaceError: "connection is closed", "pool is closing"
        if isinstance(cause, sqlite3.OperationalError) and _SQLITE_BUSY.search(str(cause)):
            return True
    return False
