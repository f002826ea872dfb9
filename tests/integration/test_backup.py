"""Backup and restore with the real parts: SQLite's online backup / ``pg_dump``, the real document
store, the real CLI for ``audit verify --all``; a backup taken while signers sign."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters import backup
from esign_gateway.bootstrap import build_container, close_db, init_db
from esign_gateway.config import Settings
from esign_gateway.db.blobs import referenced_keys
from esign_gateway.http.app import create_app
from tests.api.conftest import Ceremony, envelope_body, signer
from tests.conftest import PG_URL, SmtpServer, Tenant, _pg_admin_url, _pg_url_for, _Shared

ROOT = Path(__file__).resolve().parents[2]


def _target(settings: Settings) -> backup.Target:
    return backup.Target(settings.resolved_database_url, settings.documents_dir, settings.data_dir)


async def _signed(api: Any, tenant: Tenant, ceremony: Ceremony, n: int) -> str:
    email, phone = f"signer{n}@example.cz", f"+42060100{n:04d}"
    resp = await api.post("/v1/envelopes", json=envelope_body([signer(f"Signer {n}", email, phone)]),
                          headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    env = await resp.json()
    await ceremony.run_jobs()
    await ceremony.sign(ceremony.link_token(email), phone)
    return str(env["id"])


@pytest.fixture
async def fresh(db_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    """An empty data directory and an empty database of the same kind, to restore into."""
    data = tmp_path / "restored"
    if db_url.startswith("sqlite://"):
        yield Settings(env="test", data_dir=data, database_url=f"sqlite://{data / 'esign.sqlite3'}",
                       public_url="https://sign.example.test", embedded_worker=False, log_json=False)
        return
    name = f"esign_r_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_pg_admin_url())
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    yield Settings(env="test", data_dir=data, database_url=_pg_url_for(name), public_url="https://sign.example.test",
                   embedded_worker=False, log_json=False)
    conn = await asyncpg.connect(_pg_admin_url())
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def test_a_backup_taken_while_signers_sign_restores_whole_into_an_empty_data_dir(
    api: Any, tenant: Tenant, container: Any, smtp_server: SmtpServer, shared_parts: dict[str, Any],
    fresh: Settings, tmp_path: Path, aiohttp_client: Any,
) -> None:
    ceremony = Ceremony(api, container, smtp_server)
    done = [await _signed(api, tenant, ceremony, n) for n in range(2)]
    referenced = await referenced_keys()
    # the backup runs in a thread while two more signers go through their ceremonies
    taking = asyncio.create_task(asyncio.to_thread(
        backup.take, _target(container.settings), tmp_path / "sets", datetime(2026, 12, 1, tzinfo=UTC),
        referenced=referenced,
    ))
    during = [await _signed(api, tenant, ceremony, n) for n in (2, 3)]
    made = await taking
    assert made.path.name == "esign-2026-12-01" and made.documents >= 2 * len(done)
    originals = {}
    for envelope_id in done:
        resp = await api.get(f"/v1/envelopes/{envelope_id}/download", headers=tenant.auth)
        originals[envelope_id] = await resp.read()
    await close_db()

    restored = await asyncio.to_thread(backup.restore, made.path, _target(fresh), database_is_empty=True)
    assert restored.documents == made.documents

    env = {**os.environ, "ESIGN_ENV": "test", "ESIGN_DATA_DIR": str(fresh.data_dir),
           "ESIGN_DATABASE_URL": fresh.resolved_database_url, "ESIGN_LOG_JSON": "false"}
    verified = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "esign_gateway", "audit", "verify", "--all"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "0 broken" in verified.stdout and "BROKEN" not in verified.stdout

    restored_container = build_container(
        fresh, clock=container.clock, providers={"local": _Shared(shared_parts["provider"])},
        inspector=_Shared(shared_parts["inspector"]),
    )
    await init_db(fresh)
    try:
        client = await aiohttp_client(create_app(restored_container))
        for envelope_id, original in originals.items():  # the same API key opens the restored archive
            resp = await client.get(f"/v1/envelopes/{envelope_id}/download", headers=tenant.auth)
            assert resp.status == 200
            assert hashlib.sha256(await resp.read()).hexdigest() == hashlib.sha256(original).hexdigest()
        for envelope_id in during:  # each signed during the backup is in it or not, never half
            resp = await client.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)
            if resp.status == 200 and (await resp.json())["status"] == "completed":
                assert (await client.get(f"/v1/envelopes/{envelope_id}/download", headers=tenant.auth)).status == 200
    finally:
        await close_db()


async def test_the_fifteenth_daily_backup_removes_the_oldest(container: Any, tmp_path: Path) -> None:
    day = datetime(2026, 12, 1, tzinfo=UTC)
    for n in range(15):
        made = await asyncio.to_thread(backup.take, _target(container.settings), tmp_path / "sets",
                                       day + timedelta(days=n))
    sets = sorted(p.name for p in (tmp_path / "sets").iterdir())
    assert len(sets) == 14 and sets[0] == "esign-2026-12-02" and sets[-1] == "esign-2026-12-15"
    assert [p.name for p in made.removed] == ["esign-2026-12-01"]


async def test_a_second_backup_the_same_day_replaces_that_days_set(container: Any, tmp_path: Path) -> None:
    day = datetime(2026, 12, 1, 2, tzinfo=UTC)
    await asyncio.to_thread(backup.take, _target(container.settings), tmp_path / "sets", day)
    await asyncio.to_thread(backup.take, _target(container.settings), tmp_path / "sets", day + timedelta(hours=20))
    assert [p.name for p in (tmp_path / "sets").iterdir()] == ["esign-2026-12-01"]


async def test_a_damaged_set_is_refused_by_verify_and_restore(container: Any, tmp_path: Path, fresh: Settings) -> None:
    made = await asyncio.to_thread(backup.take, _target(container.settings), tmp_path / "sets",
                                   datetime(2026, 12, 1, tzinfo=UTC))
    db = next(p for p in made.path.iterdir() if p.name.startswith("database."))
    damaged = bytearray(db.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one bit-rotted byte
    db.write_bytes(bytes(damaged))
    assert any("does not match its SHA-256" in p for p in backup.verify(made.path))
    with pytest.raises(backup.BackupError, match="did not verify"):
        backup.restore(made.path, _target(fresh), database_is_empty=True)
    assert not fresh.documents_dir.exists()


async def test_restore_refuses_a_data_dir_that_is_not_empty(container: Any, tmp_path: Path) -> None:
    made = await asyncio.to_thread(backup.take, _target(container.settings), tmp_path / "sets",
                                   datetime(2026, 12, 1, tzinfo=UTC))
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.restore(made.path, _target(container.settings), database_is_empty=False)


@pytest.mark.skipif(not PG_URL, reason="the PostgreSQL case needs ESIGN_TEST_DATABASE_URL")
def test_backup_of_postgresql_without_pg_dump_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "ESIGN_ENV": "test", "ESIGN_DATA_DIR": str(tmp_path / "d"),
           "ESIGN_DATABASE_URL": PG_URL, "ESIGN_LOG_JSON": "false"}
    done = subprocess.run([sys.executable, "-m", "esign_gateway", "backup"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pg_dump is not installed" in done.stderr and "Traceback" not in done.stderr


def test_backup_and_restore_commands_round_trip_a_data_dir(tmp_path: Path) -> None:
    def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ESIGN_ENV": "dev", "ESIGN_DATA_DIR": str(data), "ESIGN_LOG_JSON": "false"}
        env.pop("ESIGN_DATABASE_URL", None)
        return subprocess.run([sys.executable, "-m", "esign_gateway", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False)

    source, copy = tmp_path / "source", tmp_path / "copy"
    assert cli(source, "migrate").returncode == 0
    assert cli(source, "tenant", "create", "--name", "Záloha s.r.o.").returncode == 0
    from esign_gateway.secretbox import SecretBox

    (source / "secret.key").write_bytes(SecretBox.generate_key())  # as `serve` generates it in development
    taken = cli(source, "backup", "--dir", str(tmp_path / "sets"))
    assert taken.returncode == 0 and "verified" in taken.stdout, taken.stdout + taken.stderr
    (the_set,) = (tmp_path / "sets").iterdir()
    assert cli(source, "backup-verify", str(the_set)).returncode == 0
    again = cli(source, "restore", str(the_set))  # the source is not empty: refused, nothing changed
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
    restored = cli(copy, "restore", str(the_set))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "Záloha s.r.o." in cli(copy, "tenant", "list").stdout
    assert (copy / "secret.key").read_bytes() == (source / "secret.key").read_bytes()
