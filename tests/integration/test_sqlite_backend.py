"""The embedded SQLite client: statements inline on the loop, another process's write lock waited
for without blocking the loop, and a bounded wait."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tortoise import Tortoise
from tortoise.exceptions import TransactionManagementError

from esign_gateway.bootstrap import close_db
from esign_gateway.db.sqlite_backend import ImmediateSqliteClient
from esign_gateway.db.tortoise_config import build_config


async def _open(path: Path, busy_timeout_ms: int) -> ImmediateSqliteClient:
    """The gateway's own SQLite config, with a shorter wait for another process's lock."""
    config = build_config(f"sqlite://{path}")
    config["connections"]["default"]["credentials"]["busy_timeout"] = busy_timeout_ms
    await Tortoise.init(config=config)
    db = Tortoise.get_connection("default")
    assert isinstance(db, ImmediateSqliteClient)
    await db.execute_script("CREATE TABLE item (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)")
    return db


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ImmediateSqliteClient]:
    yield await _open(tmp_path / "t.sqlite3", busy_timeout_ms=5000)
    await close_db()


def _other_process(client: ImmediateSqliteClient) -> sqlite3.Connection:
    """A second connection to the file: for SQLite's locks, the same as another process."""
    return sqlite3.connect(client.filename, isolation_level=None)


async def test_a_transaction_waits_for_another_process_lock_while_the_loop_goes_on(
    client: ImmediateSqliteClient,
) -> None:
    other = _other_process(client)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO item (name) VALUES ('theirs')")
    ticks = 0

    async def write() -> None:
        async with client._in_transaction() as tx:
            await tx.execute_insert("INSERT INTO item (name) VALUES (?)", ["ours"])

    writing = asyncio.create_task(write())
    while ticks < 20:  # the loop keeps running other work while the write waits for the lock
        await asyncio.sleep(0)
        ticks += 1
    assert not writing.done()
    other.execute("COMMIT")  # the other process lets go
    await asyncio.wait_for(writing, timeout=5)
    rows = await client.execute_query_dict("SELECT name FROM item ORDER BY id")
    assert [r["name"] for r in rows] == ["theirs", "ours"]
    other.close()


async def test_an_autocommit_statement_waits_for_the_lock_too(client: ImmediateSqliteClient) -> None:
    other = _other_process(client)
    other.execute("BEGIN IMMEDIATE")
    inserting = asyncio.create_task(client.execute_insert("INSERT INTO item (name) VALUES (?)", ["ours"]))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not inserting.done()
    other.execute("ROLLBACK")
    assert await asyncio.wait_for(inserting, timeout=5) == 1  # the new row's id, as last_insert_rowid()
    other.close()


async def test_a_lock_held_past_the_busy_timeout_fails_the_transaction(tmp_path: Path) -> None:
    db = await _open(tmp_path / "t.sqlite3", busy_timeout_ms=20)
    other = _other_process(db)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TransactionManagementError, match="locked"):
            async with db._in_transaction() as tx:
                await tx.execute_insert("INSERT INTO item (name) VALUES (?)", ["ours"])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await db.execute_query_dict("SELECT * FROM item") == []

    async def later() -> None:  # the connection is usable afterwards (its lock was given back)
        async with db._in_transaction() as tx:
            await tx.execute_insert("INSERT INTO item (name) VALUES (?)", ["later"])

    await asyncio.wait_for(later(), timeout=5)
    assert len(await db.execute_query_dict("SELECT * FROM item")) == 1
    await close_db()


async def test_a_unit_of_work_runs_to_its_commit_without_yielding_to_the_loop(client: ImmediateSqliteClient) -> None:
    """The reason for running inline: no other task's work gets between a transaction's statements
    (each one used to be two thread hops, with the whole loop's backlog in between)."""
    interleaved: list[str] = []

    async def unit_of_work() -> None:
        async with client._in_transaction() as tx:
            for n in range(5):
                await tx.execute_insert("INSERT INTO item (name) VALUES (?)", [f"row {n}"])
                interleaved.append("statement")

    async def other_task() -> None:
        for _ in range(5):
            interleaved.append("other")
            await asyncio.sleep(0)

    await asyncio.gather(unit_of_work(), other_task())
    assert interleaved[:5] == ["statement"] * 5


async def test_a_bulk_insert_outside_a_transaction_takes_the_lock_first_and_waits_for_it(
    client: ImmediateSqliteClient,
) -> None:
    other = _other_process(client)
    other.execute("BEGIN IMMEDIATE")
    inserting = asyncio.create_task(client.execute_many("INSERT INTO item (name) VALUES (?)", [["a"], ["b"]]))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not inserting.done()
    other.execute("COMMIT")
    await asyncio.wait_for(inserting, timeout=5)
    assert [r["name"] for r in await client.execute_query_dict("SELECT name FROM item ORDER BY id")] == ["a", "b"]
    other.close()
