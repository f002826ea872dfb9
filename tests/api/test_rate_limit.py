"""The daily API request limit (SPEC §2 rule 7): counted in the database, reset at Prague midnight."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from esign_gateway.bootstrap import build_container
from esign_gateway.config import Settings
from esign_gateway.container import Container
from esign_gateway.db.models import EnvelopeRow
from esign_gateway.http.app import create_app
from tests.api.conftest import Tenant, envelope_body
from tests.fakes import FrozenClock

LIMIT = 5


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    plans = tmp_path / "plans.toml"
    plans.write_text(
        'currency = "CZK"\n'
        f'[plans.free]\nname = "Free"\nmonthly_documents = 4\nmonthly_fee = "0"\ndaily_requests = {LIMIT}\n'
        '[plans.s]\nname = "S"\nmonthly_documents = 20\nmonthly_fee = "190"\ndaily_requests = 1000\n'
    )
    return Settings(
        env="test", data_dir=tmp_path / "data", database_url=db_url, public_url="https://sign.example.test",
        embedded_worker=False, log_json=False, plans_file=plans,
    )


@pytest.fixture
async def free(container: Container) -> Tenant:
    info, key = await container.tenants.create_tenant("Malá firma s.r.o.", paid=True)
    return Tenant(info.id, key.secret)


async def test_over_the_daily_limit_is_429_until_prague_midnight_with_headers_on_every_response(
    api: Any, free: Tenant, container: Container, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))  # 10:00 in Prague
    for n in range(LIMIT):
        resp = await api.get("/v1/envelopes", headers=free.auth)
        assert resp.status == 200
        assert resp.headers["RateLimit-Limit"] == str(LIMIT)
        assert resp.headers["RateLimit-Remaining"] == str(LIMIT - n - 1)
        assert resp.headers["RateLimit-Reset"] == str(14 * 3600)  # to 00:00 in Prague = 23:00 UTC

    resp = await api.post("/v1/envelopes", json=envelope_body(), headers=free.auth)
    assert resp.status == 429 and resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["code"] == "rate_limited" and body["retry_after"] == 14 * 3600
    assert resp.headers["Retry-After"] == str(14 * 3600)
    assert resp.headers["RateLimit-Remaining"] == "0"
    assert await EnvelopeRow.all().count() == 0  # refused before anything was read or stored

    # errors count and carry the headers too
    resp = await api.get("/v1/envelopes/nope", headers=free.auth)
    assert resp.status == 429 and resp.headers["RateLimit-Limit"] == str(LIMIT)

    clock.set(datetime(2026, 11, 23, 23, 0, 1, tzinfo=UTC))  # 00:00:01 on the 24th in Prague
    resp = await api.get("/v1/envelopes", headers=free.auth)
    assert resp.status == 200 and resp.headers["RateLimit-Remaining"] == str(LIMIT - 1)


async def test_the_count_is_shared_by_every_web_process(
    api: Any, free: Tenant, settings: Settings, clock: FrozenClock, aiohttp_client: Callable[..., Any],
    container: Container,
) -> None:
    """A second app (as another web process would) on the same database sees the same day's count."""
    other = build_container(settings, clock=clock, providers=container.providers, inspector=container.inspector)
    second = await aiohttp_client(create_app(other))
    for n in range(LIMIT):
        client = api if n % 2 else second
        assert (await client.get("/v1/plan", headers=free.auth)).status == 200
    assert (await api.get("/v1/plan", headers=free.auth)).status == 429
    assert (await second.get("/v1/plan", headers=free.auth)).status == 429


async def test_each_tenant_has_its_own_day_and_a_higher_plan_a_higher_limit(
    api: Any, free: Tenant, container: Container
) -> None:
    info, key = await container.tenants.create_tenant("Jiná s.r.o.", paid=True)
    other = Tenant(info.id, key.secret)
    for _ in range(LIMIT):
        await api.get("/v1/plan", headers=free.auth)
    assert (await api.get("/v1/plan", headers=free.auth)).status == 429
    resp = await api.get("/v1/plan", headers=other.auth)
    assert resp.status == 200 and resp.headers["RateLimit-Remaining"] == str(LIMIT - 1)

    resp = await api.put("/v1/plan", json={"code": "s"}, headers=other.auth)
    assert resp.status == 200
    resp = await api.get("/v1/plan", headers=other.auth)
    assert resp.headers["RateLimit-Limit"] == "1000" and resp.headers["RateLimit-Remaining"] == str(1000 - 3)


async def test_unauthenticated_and_signer_requests_are_not_counted(api: Any, free: Tenant) -> None:
    for _ in range(LIMIT + 2):
        assert (await api.get("/v1/envelopes")).status == 401
        assert (await api.get("/sign/unknown-token")).status == 404
    resp = await api.get("/v1/plan", headers=free.auth)
    assert resp.status == 200 and resp.headers["RateLimit-Remaining"] == str(LIMIT - 1)
    assert "RateLimit-Limit" not in (await api.get("/v1/envelopes")).headers
