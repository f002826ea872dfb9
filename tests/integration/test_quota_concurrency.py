"""Races that can really happen: concurrent sends against the last documents of the month, and
concurrent requests with one Idempotency-Key.

* PostgreSQL, one process, a pool of 20 connections: 20 truly parallel transactions.
* Two gateway processes (``esign-gateway serve``, real HTTP) on one database — a SQLite file or
  PostgreSQL. Tortoise serialises the queries of one process on SQLite, so only several OS
  processes can race there.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from esign_gateway.config import Settings
from esign_gateway.container import Container
from esign_gateway.db.models import EnvelopeRow, UsageCounter, UsageRecord
from esign_gateway.http.app import create_app
from esign_gateway.secretbox import SecretBox
from tests.api.conftest import Tenant, envelope_body
from tests.conftest import _free_port

SENDERS = 20


# ----------------------------------------------------------------------------- one process, PostgreSQL


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        env="test", data_dir=tmp_path / "data", database_url=db_url, public_url="https://sign.example.test",
        embedded_worker=False, log_json=False, database_pool_max=SENDERS,
    )


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("remaining", [1, 3])
async def test_twenty_parallel_sends_on_postgres_take_exactly_the_remaining_documents(
    aiohttp_client: Callable[..., Any], container: Container, remaining: int
) -> None:
    api = await aiohttp_client(create_app(container))
    info, key = await container.tenants.create_tenant("Souběžná s.r.o.", paid=True)
    tenant = Tenant(info.id, key.secret)
    used = 4 - remaining
    if used:
        assert (await api.post("/v1/envelopes", json=envelope_body(documents=used), headers=tenant.auth)).status == 201
    drafts = []
    for _ in range(SENDERS):
        resp = await api.post("/v1/envelopes", json=envelope_body(send=False), headers=tenant.auth)
        drafts.append((await resp.json())["id"])

    responses = await asyncio.gather(*(api.post(f"/v1/envelopes/{d}/send", headers=tenant.auth) for d in drafts))
    statuses = Counter(r.status for r in responses)
    assert statuses == {200: remaining, 402: SENDERS - remaining}
    assert await UsageRecord.filter(tenant_id=tenant.id).count() == 4
    assert (await UsageCounter.get(tenant_id=tenant.id)).used == 4
    assert await EnvelopeRow.filter(tenant_id=tenant.id, status="sent").count() == remaining + (1 if used else 0)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_ten_parallel_creates_with_one_key_on_postgres_make_one_envelope(
    aiohttp_client: Callable[..., Any], container: Container
) -> None:
    api = await aiohttp_client(create_app(container))
    info, key = await container.tenants.create_tenant("Souběžná s.r.o.", paid=True)
    headers = {"Authorization": f"Bearer {key.secret}", "Idempotency-Key": "one-key"}
    body = envelope_body()
    responses = await asyncio.gather(*(api.post("/v1/envelopes", json=body, headers=headers) for _ in range(10)))
    await _assert_one_envelope(responses)
    assert await EnvelopeRow.filter(tenant_id=info.id).count() == 1
    assert await UsageRecord.filter(tenant_id=info.id).count() == 1


async def _assert_one_envelope(responses: list[Any]) -> None:
    statuses = Counter(r.status for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] >= 1
    ids = set()
    for r in responses:
        body = await r.json()
        if r.status == 201:
            ids.add(body["id"])
        else:
            assert body["code"] == "idempotency_in_progress" and r.headers["Retry-After"] == "1"
    assert len(ids) == 1


# ----------------------------------------------------------------------------- two processes


class Gateways:
    """``esign-gateway serve`` processes on one database, started one after another."""

    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.env = {
            **os.environ, "ESIGN_ENV": "test", "ESIGN_DATA_DIR": str(data_dir), "ESIGN_DATABASE_URL": db_url,
            "ESIGN_SECRET_KEY": SecretBox.generate_key().decode(), "ESIGN_LOG_JSON": "true",
            "ESIGN_LOG_LEVEL": "WARNING", "ESIGN_DATABASE_POOL_MAX": str(SENDERS), "ESIGN_SIGNING_WORKERS": "1",
            "ESIGN_PUBLIC_URL": "https://sign.example.test",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.urls: list[str] = []
        self.data_dir = data_dir

    def cli(self, *args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "esign_gateway", *args], env=self.env, capture_output=True,
                             text=True, check=True, timeout=120)
        return json.loads(out.stdout)

    def start(self, count: int) -> None:
        for _ in range(count):
            port = _free_port()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            log = self.data_dir / f"serve-{port}.log"
            self.logs.append(log)
            with log.open("wb") as out:  # the log lines (stdout), read when the processes stop
                proc = subprocess.Popen(
                    [sys.executable, "-m", "esign_gateway", "serve", "--no-worker", "--port", str(port)],
                    env=self.env, stdout=out, stderr=subprocess.PIPE,
                )
            self.procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not _ready(url):
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.1)
            self.urls.append(url)

    def stop(self) -> str:
        errors = []
        for proc in self.procs:
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            errors.append(err.decode())
        return "\n".join(errors + [log.read_text() for log in self.logs if log.exists()])


def _ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture
def gateways(db_url: str, tmp_path: Path) -> Iterator[Gateways]:
    g = Gateways(db_url, tmp_path / "gw")
    yield g
    stderr = g.stop()
    assert "database is locked" not in stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert not [e for e in lines if e.get("level") in ("error", "critical")], lines  # a 5xx logs at error


async def test_two_processes_race_for_the_last_documents_and_for_one_idempotency_key(gateways: Gateways) -> None:
    remaining = 2
    tenant = gateways.cli("tenant", "create", "--name", "Dva procesy s.r.o.", "--paid", "--plan", "custom",
                          "--documents", str(remaining), "--fee", "0", "--json")
    gateways.start(2)
    a, b = gateways.urls
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        drafts = []
        for i in range(SENDERS):
            async with http.post(f"{(a, b)[i % 2]}/v1/envelopes", json=envelope_body(send=False)) as resp:
                assert resp.status == 201, await resp.text()
                drafts.append((await resp.json())["id"])

        async def send(i: int, envelope_id: str) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{(a, b)[i % 2]}/v1/envelopes/{envelope_id}/send") as resp:
                return resp.status, await resp.json()

        results = await asyncio.gather(*(send(i, d) for i, d in enumerate(drafts)))
        statuses = Counter(s for s, _ in results)
        assert statuses == {200: remaining, 402: SENDERS - remaining}, statuses  # no 500 "database is locked"
        assert all(body["code"] == "quota_exceeded" for s, body in results if s == 402)
        async with http.get(f"{a}/v1/usage") as resp:
            usage = await resp.json()
        assert (usage["documents_sent"], usage["remaining"]) == (remaining, 0)
        async with http.get(f"{b}/v1/envelopes?status=sent") as resp:
            assert len((await resp.json())["items"]) == remaining

        # one Idempotency-Key, ten requests over both processes at once: one envelope
        async with http.put(f"{a}/v1/plan", json={"code": "s"}) as resp:
            assert resp.status == 200
        body = envelope_body(record={"type": "order", "id": "O-1"})
        headers = {"Idempotency-Key": "order-O-1"}

        async def create(i: int) -> tuple[int, dict[str, Any], dict[str, str]]:
            async with http.post(f"{(a, b)[i % 2]}/v1/envelopes", json=body, headers=headers) as resp:
                return resp.status, await resp.json(), dict(resp.headers)

        created = await asyncio.gather(*(create(i) for i in range(10)))
        kinds = Counter(s for s, _, _ in created)
        assert set(kinds) <= {201, 409} and kinds[201] >= 1, kinds
        assert len({b["id"] for s, b, _ in created if s == 201}) == 1
        assert all(b["code"] == "idempotency_in_progress" for s, b, _ in created if s == 409)
        async with http.get(f"{b}/v1/envelopes?record_type=order&record_id=O-1") as resp:
            assert len((await resp.json())["items"]) == 1
        async with http.get(f"{b}/v1/usage") as resp:
            assert (await resp.json())["documents_sent"] == remaining + 1
