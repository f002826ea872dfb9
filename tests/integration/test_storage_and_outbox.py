"""FileDocumentStore and the development outbox adapters."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.email.outbox import OutboxEmailSender
from adapters.sms.outbox import OutboxSmsSender
from adapters.storage.filesystem import FileDocumentStore
from esign_gateway.ports import OutgoingEmail, OutgoingSms
from tests.fakes import FrozenClock


async def test_store_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = FileDocumentStore(tmp_path)
    key = await store.put(b"%PDF-1.7 hello")
    assert key == hashlib.sha256(b"%PDF-1.7 hello").hexdigest()
    assert await store.put(b"%PDF-1.7 hello") == key
    assert await store.get(key) == b"%PDF-1.7 hello"
    assert await store.exists(key)
    assert (tmp_path / key[:2] / key[2:4] / key).is_file()
    assert not list(tmp_path.rglob("*.tmp"))  # noqa: ASYNC240
    await store.delete(key)
    assert not await store.exists(key)
    with pytest.raises(KeyError):
        await store.get(key)


@pytest.mark.parametrize("key", ["../../etc/passwd", "A" * 64, "ab", "0" * 63 + "/"])
async def test_store_refuses_keys_that_are_not_sha256(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        await FileDocumentStore(tmp_path).get(key)


async def test_outbox_writes_sortable_files(tmp_path: Path) -> None:
    clock = FrozenClock(datetime(2026, 11, 23, 9, tzinfo=UTC))
    sms = OutboxSmsSender(tmp_path / "sms", clock=clock)
    email = OutboxEmailSender(tmp_path / "email", sender="noreply@esign.example", clock=clock)
    await sms.send(OutgoingSms(to="+420601123456", text="Kod 123456"))
    clock.advance(seconds=1)
    await sms.send(OutgoingSms(to="+420601123456", text="Kod 654321"))
    await email.send(OutgoingEmail(to="jana@example.cz", subject="Předmět", text="text", html="<p>html</p>"))
    files = sorted((tmp_path / "sms").glob("*.json"))
    assert [json.loads(f.read_text())["text"] for f in files] == ["Kod 123456", "Kod 654321"]
    assert json.loads(files[0].read_text())["sent_at"] == "2026-11-23T09:00:00+00:00"
    (eml,) = (tmp_path / "email").glob("*.eml")
    assert b"Subject: =?utf-8?" in eml.read_bytes()


async def test_storing_the_same_bytes_again_marks_the_blob_fresh(tmp_path: Path) -> None:
    store = FileDocumentStore(tmp_path / "docs")
    key = await store.put(b"%PDF-1.7 shared template")
    old = (datetime.now(UTC) - timedelta(days=3)).timestamp()
    os.utime(tmp_path / "docs" / key[:2] / key[2:4] / key, (old, old))
    cutoff = datetime.now(UTC) - timedelta(days=1)
    assert await store.written_before(cutoff) == [key]
    assert await store.put(b"%PDF-1.7 shared template") == key  # a second envelope uploads the same file
    assert await store.written_before(cutoff) == []
