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

The module's name matters: Tortoise chooses its migration schema editor by the client class's
module name ("sqlite").
"""

from __future__ import annotations

import contextlib
from typing import Any

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

ENGINE = __name__


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
    """Tortoise's SQLite client with transactions and statements that survive being interrupted
    (see above)."""

    def acquire_connection(self) -> ConnectionWrapper[Any]:
        return _Statement(self._lock, self)

    def _in_transaction(self) -> TransactionContext:
        return _Transaction(SqliteTransactionWrapper(self), self._lock)


client_class = SqliteClient
