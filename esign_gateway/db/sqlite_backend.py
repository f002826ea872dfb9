"""SQLite for the embedded default: statements run inline on the event loop, transactions are
``BEGIN IMMEDIATE``, and a lock held by another process is waited for without blocking the loop.

**Inline, not in a thread.** Tortoise's SQLite client runs every statement through aiosqlite's
thread and holds one connection lock for a whole transaction. Each statement is then two thread
hops, and between them the event loop runs whatever else is ready, so a transaction of ten
statements held the lock for ten turns of a busy loop. Measured under the signing bench, the lock
was held 20 s of a 23 s run (2.1 ms per hold) while SQLite's own work was ~0.1 ms per statement:
the lock, not the CPU, capped throughput, with a third of the two cores idle. Here a statement is
a plain ``sqlite3`` call (tens of microseconds on a local file), so a transaction that awaits
nothing else runs to its commit in one go. The price: a slow query holds up the loop for its
duration. The queries here are indexed look-ups of a few rows; a deployment with big tables uses
PostgreSQL (README: Architecture, Performance).

**Immediate transactions.** Tortoise opens SQLite transactions with a plain (deferred)
``BEGIN``: the write lock is taken only at the first write, and when another process committed
in between, SQLite refuses the upgrade at once with ``database is locked``. ``BEGIN IMMEDIATE``
takes the write lock up front, so a transaction reads what it will write under the lock: a
read-then-write inside a unit of work is serialised across processes, just as a row lock
serialises it on PostgreSQL. Reads outside transactions are untouched (WAL).

**Waiting for another process.** SQLite's own ``busy_timeout`` would sleep inside the call, on
the loop. The connection's is 0 instead; a statement refused with ``SQLITE_BUSY`` outside a
transaction (``BEGIN IMMEDIATE`` itself, or an autocommit statement: it did nothing) is retried
after an ``asyncio.sleep`` backoff until the configured ``busy_timeout`` has passed. Inside a
transaction nothing is retried (the write lock is already ours, so ``BUSY`` means a stale
snapshot, which only a rollback cures). Migration scripts wait inside SQLite, before serving.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from tortoise.backends.base.client import TransactionalDBClient, TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
    translate_exceptions,
)
from tortoise.connection import get_connections
from tortoise.exceptions import TransactionManagementError

__all__ = ["ImmediateSqliteClient", "InlineConnection", "client_class"]

_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.05


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class _Cursor:
    """All tortoise does with a cursor aiosqlite's ``execute`` returns: close it."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """The part of ``aiosqlite.Connection`` tortoise uses, over a ``sqlite3`` connection on the
    loop's thread. ``busy_timeout`` (seconds) bounds the non-blocking wait for another process's lock."""

    def __init__(self, conn: sqlite3.Connection, busy_timeout: float) -> None:
        self._conn = conn
        self.busy_timeout = busy_timeout

    @classmethod
    def open(cls, path: str, busy_timeout: float) -> InlineConnection:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=0")
        return cls(conn, busy_timeout)

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes

    async def _run(self, fn: Any, *args: Any) -> Any:
        deadline: float | None = None
        backoff = _FIRST_BACKOFF
        while True:
            retryable = not self._conn.in_transaction
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if not (retryable and _is_busy(exc)):
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.busy_timeout
                if now >= deadline:
                    raise
                await asyncio.sleep(min(backoff, deadline - now))
                backoff = min(backoff * 2, _MAX_BACKOFF)

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _Cursor:
        return _Cursor(await self._run(self._conn.execute, sql, parameters or ()))

    async def execute_insert(self, sql: str, parameters: Sequence[Any] | None = None) -> tuple[int | None]:
        cursor = await self._run(self._conn.execute, sql, parameters or ())
        return (cursor.lastrowid,)  # what ``SELECT last_insert_rowid()`` would read, without the statement

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] | None = None) -> list[sqlite3.Row]:
        cursor = await self._run(self._conn.execute, sql, parameters or ())
        return cursor.fetchall()

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> _Cursor:
        return _Cursor(await self._run(self._conn.executemany, sql, list(parameters)))

    async def executescript(self, script: str) -> _Cursor:
        """A script commits statement by statement, so it cannot be retried as a whole: it waits
        inside SQLite instead (migrations, run before the gateway serves)."""
        self._conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        try:
            return _Cursor(self._conn.executescript(script))
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()


class _ImmediateTransaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class _TransactionContext(SqliteTransactionContext):
    """Tortoise's context, except that a ``BEGIN`` that fails (the lock stayed busy past the
    timeout) gives the connection lock back: tortoise's keeps it, and every later query of the
    process would wait for it forever."""

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
            self._trxlock.release()
            raise
        return self.connection


class ImmediateSqliteClient(SqliteClient):
    def __init__(self, file_path: str, **kwargs: Any) -> None:
        super().__init__(file_path, **kwargs)
        # SQLite's busy_timeout would sleep on the loop: ours is waited for in InlineConnection.
        self._busy_timeout = int(self.pragmas.pop("busy_timeout", 5000)) / 1000

    async def create_connection(self, with_db: bool) -> None:
        if self._connection:
            return
        connection = InlineConnection.open(self.filename, self._busy_timeout)
        connection._conn.row_factory = sqlite3.Row
        for pragma, value in self.pragmas.items():
            await connection.execute(f"PRAGMA {pragma}={value}")
        self._connection = connection  # type: ignore[assignment]  # aiosqlite's interface, inline
        await self._post_connect()

    def _in_transaction(self) -> TransactionContext:
        return _TransactionContext(_ImmediateTransaction(self), self._lock)

    @translate_exceptions
    async def execute_many(self, query: str, values: list[list]) -> None:
        """Outside a transaction (a bulk insert on its own): take the write lock first, as a unit
        of work does, rather than fail at the first write when another process holds it."""
        async with self.acquire_connection() as connection:
            await connection.execute("BEGIN IMMEDIATE")
            try:
                await connection.executemany(query, values)
            except Exception:
                await connection.rollback()
                raise
            else:
                await connection.commit()


client_class = ImmediateSqliteClient
