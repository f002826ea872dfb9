"""Migrations on an empty database; the audit chain as stored."""

from __future__ import annotations

from pathlib import Path

from tortoise import Tortoise

from esign_gateway.bootstrap import close_db, init_db, migrate
from esign_gateway.config import Settings


async def test_migrations_bring_an_empty_database_to_the_latest_schema(db_url: str, tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path, database_url=db_url)
    await migrate(settings)  # already migrated from the template: must be a no-op
    await init_db(settings)
    try:
        conn = Tortoise.get_connection("default")
        for table in ("tenant", "api_key", "envelope", "document", "signer", "verification_code", "audit_event",
                      "outbox_event", "job", "gateway_secret"):
            await conn.execute_query(f'SELECT COUNT(*) FROM "{table}"')
    finally:
        await close_db()


async def test_fresh_sqlite_file_migrates_from_nothing(tmp_path: Path) -> None:
    settings = Settings(env="test", data_dir=tmp_path)
    await migrate(settings)
    assert (tmp_path / "esign.sqlite3").stat().st_size > 0
