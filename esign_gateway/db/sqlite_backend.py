"""SQLite, safe for several processes on one database file: every transaction is ``BEGIN IMMEDIATE``.

Tortoise opens SQLite transactions with a plain (deferred) ``BEGIN``: the write lock is taken
only at the first write, and when another process committed in between, SQLite refuses the
upgrade at once with ``database is locked`` — no busy timeout helps. ``BEGIN IMMEDIATE`` takes
the write lock up front (waiting up to ``busy_timeout``), so a transaction reads what it will
write under the lock: a read-then-write inside a unit of work is serialised across processes,
just as a row lock serialises it on PostgreSQL. Reads outside transactions are untouched (WAL).
"""

from __future__ import annotations

import sqlite3

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionContext, SqliteTransactionWrapper
from tortoise.exceptions import TransactionManagementError

__all__ = ["ImmediateSqliteClient", "client_class"]


class _ImmediateTransaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return SqliteTransactionContext(_ImmediateTransaction(self), self._lock)


client_class = ImmediateSqliteClient
