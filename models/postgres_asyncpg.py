"""The ORM's PostgreSQL client: Tortoise's asyncpg client whose transactions put the task's
connection context back even when the server goes away while one begins or ends.

Tortoise 1.1 marks the task as "inside a transaction" (a ContextVar) before it sends BEGIN, and
undoes that only in ``__aexit__``, which never runs when BEGIN fails. A BEGIN cut by a server
restart therefore leaves a long-lived task (the intake, the delivery worker) in a dead
transaction for good: every later ``in_transaction()`` there is taken for a nested one, and fails
with "connection has been released back to the pool". This client undoes the mark and gives the
connection back whatever fails.

The module's name matters: Tortoise chooses its migration schema editor by the client class's
module name ("asyncpg"), its CLI the transactional DDL by the engine's name ("postgres").
"""

from __future__ import annotations

import contextlib
from typing import Any

from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import (
    TransactionalDBClient,
    TransactionContext,
    TransactionContextPooled,
)
from tortoise.connection import get_connections
from tortoise.exceptions import TransactionManagementError

ENGINE = __name__


class _PooledTransaction(TransactionContextPooled):
    """A top-level transaction on a pooled connection that always cleans up after itself."""

    async def __aenter__(self) -> TransactionalDBClient:
        await self.ensure_connection()
        pool = self.client._parent._pool
        self.client._connection = await pool.acquire()
        self.token = get_connections().set(self.connection_name, self.client)
        try:
            await self.client.begin()
        except BaseException:
            get_connections().reset(self.token)
            # A connection the server closed is dropped by the pool on release.
            with contextlib.suppress(Exception):
                await pool.release(self.client._connection)
            raise
        return self.client

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            if not self.client._finalized:
                if exc_type is None:
                    await self.client.commit()
                elif exc_type is not TransactionManagementError:
                    await self.client.rollback()
        finally:
            try:
                pool = self.client._parent._pool
                if pool:
                    await pool.release(self.client._connection)
            finally:
                get_connections().reset(self.token)


class PostgresClient(AsyncpgDBClient):
    """Tortoise's asyncpg client with transactions that survive a lost server (see above)."""

    def _in_transaction(self) -> TransactionContext:
        return _PooledTransaction(TransactionWrapper(self), self._pool_init_lock)

    async def expire_connections(self) -> None:
        """Have every pooled connection replaced by a new one once it is next free."""
        await self._expire_connections()


client_class = PostgresClient
