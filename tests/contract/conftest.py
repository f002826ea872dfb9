"""One CRM-level suite, two providers: the same scenarios against ``local`` and ``digisign``.

For ``digisign`` the gateway talks real HTTP to the fake DigiSign (``tests/fakes/digisign.py``),
which posts its signed webhooks back to the gateway's real ``/webhooks/digisign``. A ``Signers``
driver plays the signer: on our signing page for ``local``, through the fake's control endpoint
for ``digisign`` (where DigiSign's own page would be).

``digisign`` runs twice, against both strictness settings of the fake (``provider_variant``
``digisign`` and ``digisign:strict``): where the sources do not know how the real API answers
(reminder types, ``validTo`` on create, the token's shape, secrets in the webhook list) the strict
fake takes the answer least favourable to the adapter, so every scenario holds either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from tortoise.backends.base.executor import EXECUTOR_CACHE

from adapters.providers.digisign.client import DigiSignClient
from adapters.providers.digisign.provider import DigiSignProvider
from adapters.providers.digisign.signature import verify_inbound
from esign_gateway.bootstrap import build_container, close_db, init_db, store_webhook_secret
from esign_gateway.config import Settings
from esign_gateway.container import Container
from esign_gateway.http.app import create_app
from tests.api.conftest import Ceremony
from tests.conftest import SmtpServer, _Shared
from tests.fakes import FrozenClock
from tests.fakes.digisign import FakeDigiSign


async def no_sleep(_: float) -> None:
    return None


def digisign_provider(fake: FakeDigiSign, clock: FrozenClock, **client: Any) -> DigiSignProvider:
    return DigiSignProvider(
        DigiSignClient(fake.base_url, fake.access_key, fake.secret_key, clock=clock.now, sleep=no_sleep, **client),
        verify_signature=verify_inbound,
    )


PROVIDER_VARIANTS = ["local", "digisign", "digisign:strict"]
DIGISIGN_VARIANTS = ["digisign", "digisign:strict"]


@pytest.fixture(params=PROVIDER_VARIANTS)
def provider_variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def provider_name(provider_variant: str) -> str:
    return provider_variant.partition(":")[0]


@pytest.fixture
def strict(provider_variant: str) -> bool:
    """The fake DigiSign answers the strict way (see the module docs)."""
    return provider_variant.endswith(":strict")


@pytest.fixture
async def fake_digisign(clock: FrozenClock, strict: bool) -> AsyncIterator[FakeDigiSign]:
    fake = FakeDigiSign(clock=clock.now, strict=strict)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def container(
    settings: Settings, clock: FrozenClock, smtp_server: SmtpServer, shared_parts: dict[str, Any],
    fake_digisign: FakeDigiSign, provider_name: str,
) -> AsyncIterator[Container]:
    from adapters.email.smtp import SmtpEmailSender

    c = build_container(
        settings.model_copy(update={"provider": provider_name}),
        clock=clock,
        email=SmtpEmailSender.from_url(smtp_server.url, sender="esign <noreply@example.test>"),
        providers={"local": _Shared(shared_parts["provider"]), "digisign": digisign_provider(fake_digisign, clock)},
        inspector=_Shared(shared_parts["inspector"]),
    )
    EXECUTOR_CACHE.clear()
    await init_db(settings)
    yield c
    await close_db()


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], container: Container, fake_digisign: FakeDigiSign) -> TestClient:
    client = await aiohttp_client(create_app(container))
    provider = container.providers["digisign"]
    assert isinstance(provider, DigiSignProvider)
    for hook in await provider.register_webhooks(str(client.make_url("/webhooks/digisign"))):
        await store_webhook_secret(container.box, container.clock, hook["id"], hook["secret"])  # as the CLI does
    return client


@dataclass
class CrmReceiver:
    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)

    def types(self, envelope_id: str) -> list[str]:
        """The envelope's event types in their order (``data.sequence``: deliveries may arrive in any order)."""
        mine = [e for e in self.events if e["data"].get("envelope", {}).get("id") == envelope_id]
        return [e["type"] for e in sorted(mine, key=lambda e: e["data"]["sequence"])]


@pytest.fixture
async def crm(aiohttp_server: Callable[..., Any]) -> CrmReceiver:
    rec = CrmReceiver()

    async def handle(request: web.Request) -> web.Response:
        rec.events.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/crm", handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/crm"))
    return rec


class Signers:
    """Plays the signers and the passage of work, whichever provider runs the ceremony."""

    def __init__(self, provider: str, api: TestClient, container: Container, smtp: SmtpServer,
                 fake: FakeDigiSign) -> None:
        self.provider = provider
        self.local = Ceremony(api, container, smtp)
        self.container = container
        self.fake = fake

    async def settle(self) -> None:
        """Run due jobs and let the provider's webhooks arrive, until nothing moves."""
        for _ in range(10):
            ran = await self.container.worker.run_once()
            await self.fake.settle()
            await asyncio.sleep(0)
            if not ran and not self.fake._tasks and not await self._due():
                return

    async def _due(self) -> bool:
        from esign_gateway.db.models import Job

        return await Job.filter(status="pending", due_at__lte=self.container.clock.now()).exists()

    def _remote(self, envelope_id: str, email: str) -> tuple[str, str]:
        env = next(e for e in self.fake.envelopes.values() if e["metadata"] == envelope_id)
        rec = next(r for r in env["recipients"] if r["email"] == email)
        return env["id"], rec["id"]

    async def _control(self, envelope_id: str, email: str, action: str, **body: Any) -> None:
        eid, rid = self._remote(envelope_id, email)
        async with aiohttp.ClientSession() as http, http.post(
            f"{self.fake.base_url}/_control/envelopes/{eid}/recipients/{rid}/{action}", json=body
        ) as resp:
            assert resp.status == 200, await resp.text()

    def was_invited(self, envelope_id: str, email: str) -> bool:
        if self.provider == "local":
            return bool(self.local.smtp.to(email))
        _, rid = self._remote(envelope_id, email)
        env = next(e for e in self.fake.envelopes.values() if e["metadata"] == envelope_id)
        return next(r for r in env["recipients"] if r["id"] == rid)["status"] != "draft"

    async def sign(self, envelope_id: str, email: str, phone: str) -> None:
        if self.provider == "local":
            token = self.local.link_token(email)
            await self.local.api.get(f"/sign/{token}")
            await self.local.sign(token, phone)
        else:
            await self._control(envelope_id, email, "open")
            await self._control(envelope_id, email, "sign")
        await self.settle()

    async def decline(self, envelope_id: str, email: str, reason: str) -> None:
        if self.provider == "local":
            token = self.local.link_token(email)
            resp = await self.local.api.post(f"/api/sign/{token}/decline", json={"reason": reason})
            assert resp.status == 200, await resp.text()
        else:
            await self._control(envelope_id, email, "decline", reason=reason)
        await self.settle()


@pytest.fixture
def signers(provider_name: str, api: TestClient, container: Container, smtp_server: SmtpServer,
            fake_digisign: FakeDigiSign) -> Signers:
    return Signers(provider_name, api, container, smtp_server, fake_digisign)

