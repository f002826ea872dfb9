"""Which errors mean "the database cannot be reached right now" (an outage), as opposed to a bug.

An outage is answered ``503 unavailable`` with ``Retry-After`` and one log line (the HTTP edge),
and makes the job worker note it once and poll more slowly; anything else stays a ``500`` with its
traceback. It lives here, next to the drivers it knows, so the edges need not import them. The
classes were found by stopping a real PostgreSQL under traffic (``tests/faults/test_database_outage.py``):

* connecting to a stopped server: ``ConnectionRefusedError`` (``OSError``) from asyncpg's connect,
  ``TimeoutError`` past the connect timeout, ``CannotConnectNowError`` (57P03) while it starts or
  stops;
* a connection the server ends: ``AdminShutdownError`` (57P01, ``pg_ctl stop -m fast``),
  ``CrashShutdownError`` (57P02), ``ConnectionDoesNotExistError`` and the other 08xxx
  ``PostgresConnectionError``; then asyncpg's ``InterfaceError: … connection is closed`` for
  whatever still uses it (a rollback, a savepoint); and, on a pooled connection that was idle when
  the server's "terminating connection" arrived, ``InternalClientError: cannot switch to state …;
  another operation (2) is in progress`` at the next statement (asyncpg is still consuming that
  error, state 2, and the answer it waits for never comes);
* ``TooManyConnectionsError`` (53300): the server is full;
* tortoise's ``DBConnectionError``;
* SQLite (tortoise wraps ``sqlite3.OperationalError`` in its own ``OperationalError``): the file
  cannot be opened or written (``SQLITE_CANTOPEN``, ``SQLITE_IOERR``, ``SQLITE_FULL``) or another
  process held the write lock past ``busy_timeout`` (``SQLITE_BUSY``, ``SQLITE_LOCKED``).

Tortoise wraps some of these (``OperationalError(exc) from exc``) and a failed rollback hides the
first error in ``__context__``, so the whole cause chain is looked at. An ``OSError`` counts only
when it was raised inside the database driver (its traceback passes through asyncpg or tortoise),
so a full disk under the document store is not mistaken for a database outage.
"""

from __future__ import annotations

import sqlite3
from types import TracebackType

import asyncpg
from tortoise.exceptions import DBConnectionError

__all__ = ["database_outage", "database_unreachable"]

_POSTGRES_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    DBConnectionError,
)
_SQLITE_DOWN = frozenset({
    sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
})
_DRIVERS = ("asyncpg", "tortoise", "esign_gateway.db")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend((current.__context__, current.__cause__))
    return seen


def _raised_in_driver(tb: TracebackType | None) -> bool:
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(_DRIVERS):
            return True
        tb = tb.tb_next
    return False


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, _POSTGRES_DOWN):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return "connection is closed" in str(exc)
    if isinstance(exc, asyncpg.InternalClientError):
        return "cannot switch to state" in str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_DOWN
    if isinstance(exc, OSError):  # ConnectionRefusedError, ConnectionResetError, TimeoutError, gaierror …
        return _raised_in_driver(exc.__traceback__)
    return False


def database_outage(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s cause chain that says the database cannot be reached now, or None."""
    return next((e for e in _chain(exc) if _unreachable(e)), None)


def database_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or an error it came from) says the database cannot be reached now."""
    return database_outage(exc) is not None
