"""PostgreSQL (asyncpg) as tortoise runs it, except for what a database outage needs.

**A ``BEGIN`` that fails gives everything back.** Tortoise's pooled transaction context takes a
connection from the pool, makes it the task's current connection (a context variable) and only
then sends ``BEGIN``. When that ``BEGIN`` fails — the server closed the connection a moment
before, as ``pg_ctl stop`` or a failover does — tortoise's ``__aexit__`` never runs: the connection
is not given back to the pool and the task keeps the dead connection as its current one, so every
later ``in_transaction`` of that task becomes a savepoint on it and fails (``connection is closed``)
for as long as the task lives. The job worker's poll loop is such a task: it never recovered from
an outage without a restart, and each such failure cost the pool a connection for good. Here the
context is reset and the connection released when ``BEGIN`` fails, as ``sqlite_backend`` does for
SQLite's lock.

The connect timeout (``timeout``, set in ``tortoise_config``) bounds how long a new connection
may take, so a server that does not answer at all fails a request in seconds, not in asyncpg's 60.

The module's name holds "asyncpg": tortoise's migration executor picks its schema editor by the
client's module name (as it does for ``sqlite_backend``).
"""

from __future__ import annotations

import contextlib

from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import TransactionalDBClient, TransactionContext, TransactionContextPooled
from tortoise.connection import get_connections

__all__ = ["OutageSafePostgresClient", "client_class"]


class _TransactionContext(TransactionContextPooled):
    async def __aenter__(self) -> TransactionalDBClient:
        await self.ensure_connection()
        pool = self.client._parent._pool
        self.client._connection = await pool.acquire()
        self.token = get_connections().set(self.connection_name, self.client)
        try:
            await self.client.begin()
        except BaseException:
            get_connections().reset(self.token)
            with contextlib.suppress(Exception):  # asyncpg drops a closed connection and replaces it
                await pool.release(self.client._connection)
            raise
        return self.client


class OutageSafePostgresClient(AsyncpgDBClient):
    def _in_transaction(self) -> TransactionContext:
        return _TransactionContext(TransactionWrapper(self), self._pool_init_lock)


client_class = OutageSafePostgresClient
