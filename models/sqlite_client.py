"""The ORM's SQLite client: Tortoise's, with transactions that give the connection back whatever
interrupts them.

Tortoise 1.1's SQLite transaction takes the client's lock (one connection per process, every
statement goes through that lock), then begins. When the task is cancelled or fails between the
two, or while BEGIN is on its way (a stopping service cancels a reader in the middle of a claim,
``/readyz`` gives up on a slow check), ``__aexit__`` never runs and the lock is never released:
every later statement of the process waits forever. This client releases it, and first ends
whatever BEGIN may have started on the connection.

A plain statement has the same gap: it takes the lock, then (re)opens the connection if another
part of the process closed it, and a cancel while it opens kept the lock too. It also used the
connection it saw before waiting for the lock, which may have been closed meanwhile.

Statements on the hot path run in the event loop's thread (``models.sql.inline()``). aiosqlite
sends each statement to the connection's own thread and its answer back through the event loop:
about 60 µs of CPU a statement on these machines, where an indexed SELECT or a row written
inside a transaction takes a few µs in SQLite itself. Inside ``inline()`` those run where they
are asked; whatever may wait stays in the thread: the first write of a transaction (it may wait
for another process's write lock, up to ``busy_timeout``), COMMIT (it syncs the WAL to disk),
writes outside a transaction (each commits), scripts and PRAGMAs. The intake and delivery
batches use it; the rest of the service (reports that scan many rows, say) keeps the thread.

A connection made ``in_loop`` (the local stream's own file: short appends, claims and deletes,
written by this process alone in the embedded default) runs every single statement in the
loop's thread, its commit too (about 0.4 ms to sync the WAL here), and never waits for a lock
there: its ``busy_timeout`` is 0 in the loop, and a statement that finds the file locked (an
``appeal-desk worker`` claiming from the same stream) goes to the connection's thread to wait
as long as the settings say. Through the thread, a webhook's append waited for the busy loop
to give the thread the GIL and to hear its answer: 4-5 ms at the median, where the statement
itself takes 0.6.

The module's name matters: Tortoise chooses its migration schema editor by the client class's
module name ("sqlite").
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite
from tortoise.backends.base.client import (
    ConnectionWrapper,
    TransactionalDBClient,
    TransactionContext,
)
from tortoise.backends.sqlite.client import (
    SqliteClient as TortoiseSqliteClient,
)
from tortoise.backends.sqlite.client import (
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections

from models import sql

ENGINE = __name__
# What may run in the loop's thread at any time (a deferred BEGIN takes no lock) and what only
# once the transaction holds the write lock (the end of a transaction never: it syncs).
_ALWAYS = ("SELECT", "BEGIN", "SAVEPOINT")
_NEVER = ("BEGIN ", "COMMIT", "END", "ROLLBACK", "RELEASE", "PRAGMA")


class _Connection(aiosqlite.Connection):
    """aiosqlite's connection, running short statements inside ``sql.inline()`` where they are
    asked (the sqlite3 connection is opened with ``check_same_thread=False``; only one thread
    uses it at a time: nothing runs inline while the connection's thread has work)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._queued = 0  # calls sent to the thread and not answered yet
        self._holding = False  # the open transaction has written: it holds the write lock
        self.in_loop = False  # every statement here, unless locked (see above)
        self.busy_ms = 0  # how long the thread then waits for the lock

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        conn = self._connection
        statement = _statement(self, fn, args)
        if conn is not None and not conn.in_transaction:
            self._holding = False
        if self.in_loop and conn is not None:
            return await self._in_loop(conn, statement, fn, args, kwargs)
        if (
            conn is not None
            and not self._queued
            and sql.INLINE.get()
            and (
                (statement is not None and self._may_inline(statement, conn))
                or (fn == conn.commit and not conn.in_transaction)  # nothing to commit
            )
        ):
            result = fn(*args, **kwargs)
            await sql.give_turn()
        else:
            self._queued += 1
            try:
                result = await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
            finally:
                self._queued -= 1
        if statement is not None and conn is not None and conn.in_transaction:
            # A write took the lock (ending a savepoint, say, took none).
            self._holding = self._holding or not statement.startswith(_ALWAYS + _NEVER)
        return result

    async def _in_loop(
        self,
        conn: sqlite3.Connection,
        statement: str | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """A statement of an ``in_loop`` connection: here unless the thread has work or the file
        is locked; then in the thread, waiting for the lock as long as the settings say."""
        if statement is not None and not self._queued:
            with contextlib.suppress(_Locked):
                result = _unless_locked(fn, args, kwargs)
                await sql.give_turn()
                return result
        if fn != conn.close:
            fn = partial(_waiting, conn, self.busy_ms, fn)
        self._queued += 1
        try:
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        finally:
            self._queued -= 1

    def _may_inline(self, statement: str, conn: sqlite3.Connection) -> bool:
        if statement.startswith(_ALWAYS) and not statement.startswith(_NEVER):
            return True
        return self._holding and conn.in_transaction and not statement.startswith(_NEVER)


class _Locked(Exception):
    """Another connection holds the lock a statement run in the loop needs."""


def _unless_locked(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` on a connection whose ``busy_timeout`` is 0: _Locked when the
    file is locked (SQLite undid the statement), its result otherwise."""
    try:
        return fn(*args, **kwargs)
    except sqlite3.OperationalError as exc:
        primary = exc.sqlite_errorcode & 0xFF  # an extended code names its primary one
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise _Locked from None
        raise


def _waiting(
    conn: sqlite3.Connection, busy_ms: int, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """``fn(*args, **kwargs)`` in the connection's thread, waiting up to ``busy_ms`` for a
    lock."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    try:
        return fn(*args, **kwargs)
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def _statement(
    connection: _Connection, fn: Callable[..., Any], args: tuple[Any, ...]
) -> str | None:
    """The first words of the SQL ``fn`` runs, upper case; None when it is no single statement
    (a script, a cursor's call, a commit)."""
    if not args or not isinstance(args[0], str):
        return None
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", "")
    aiosqlites = owner is connection and name in ("_execute_insert", "_execute_fetchall")
    sqlite3s = owner is connection._connection and name in ("execute", "executemany")
    return " ".join(args[0][:40].split()).upper() if aiosqlites or sqlite3s else None


class _Transaction(SqliteTransactionContext):
    """A top-level transaction that always gives the connection's lock back."""

    async def __aenter__(self) -> TransactionalDBClient:
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            # BEGIN may have reached the connection (aiosqlite runs it in its thread even when
            # the caller is gone): end it before anyone else uses the connection.
            with contextlib.suppress(Exception):
                connection = self.connection._connection
                if connection is not None:
                    await connection.rollback()
            self._trxlock.release()
            raise
        client: TransactionalDBClient = self.connection
        return client


class _Statement(ConnectionWrapper[Any]):
    """The lock for one statement, given back whatever interrupts opening the connection."""

    async def __aenter__(self) -> Any:
        await self._lock.acquire()
        try:
            self.connection = self.client._connection  # as it is now, not before the wait
            await self.ensure_connection()
        except BaseException:
            self._lock.release()
            raise
        return self.connection


class SqliteClient(TortoiseSqliteClient):
    """Tortoise's SQLite client with transactions and statements that survive being interrupted,
    and short statements run inline on the hot path (see above)."""

    def __init__(self, *args: Any, in_loop: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_loop = in_loop

    async def create_connection(self, with_db: bool) -> None:
        if self._connection:
            return
        connector = partial(
            sqlite3.connect, self.filename, isolation_level=None, check_same_thread=False
        )
        connection = _Connection(connector)
        self._connection = await connection
        connection._conn.row_factory = sqlite3.Row
        for pragma, val in self.pragmas.items():
            cursor = await connection.execute(f"PRAGMA {pragma}={val}")
            await cursor.close()
        if self.in_loop:
            connection.busy_ms = int(self.pragmas.get("busy_timeout", 0))
            connection._conn.execute("PRAGMA busy_timeout = 0")
            connection.in_loop = True
        await self._post_connect()

    def acquire_connection(self) -> ConnectionWrapper[Any]:
        return _Statement(self._lock, self)

    def _in_transaction(self) -> TransactionContext:
        return _Transaction(SqliteTransactionWrapper(self), self._lock)


client_class = SqliteClient
