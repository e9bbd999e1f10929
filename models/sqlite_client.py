"""The ORM's SQLite client: Tortoise's, with transactions that give the connection back whatever
interrupts them.

Tortoise 1.1's SQLite transaction takes the client's lock (one connection per process, every
statement goes through that lock), then begins. When the task is cancelled or fails between the
two, or while BEGIN is on its way (a stopping service cancels a reader in the middle of a claim,
``/readyz`` gives up on a slow check), ``__aexit__`` never runs and the lock is never released:
every later statement of the process waits forever. This client releases it, and first ends
whatever BEGIN may have started on the connection.

The module's name matters: Tortoise chooses its migration schema editor by the client class's
module name ("sqlite").
"""

from __future__ import annotations

import contextlib

from tortoise.backends.base.client import TransactionalDBClient, TransactionContext
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


class SqliteClient(TortoiseSqliteClient):
    """Tortoise's SQLite client with transactions that survive being interrupted (see above)."""

    def _in_transaction(self) -> TransactionContext:
        return _Transaction(SqliteTransactionWrapper(self), self._lock)


client_class = SqliteClient
