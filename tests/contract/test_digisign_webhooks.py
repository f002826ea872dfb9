"""DigiSign's webhooks into the gateway: authenticated, deduplicated, never trusted for state."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from esign_gateway.container import Container
from esign_gateway.db.models import InboundEvent, Job, OutboxEvent
from tests.api.conftest import Tenant, envelope_body
from tests.contract.conftest import DIGISIGN_VARIANTS, Signers
from tests.fakes import FrozenClock
from tests.fakes.digisign import FakeDigiSign

pytestmark = pytest.mark.parametrize("provider_variant", DIGISIGN_VARIANTS, indirect=True)


async def _sent(api: Any, tenant: Tenant, signers: Signers) -> str:
    resp = await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    assert resp.status == 201
    envelope_id = str((await resp.json())["id"])
    await signers.settle()
    return envelope_id


async def _status(api: Any, tenant: Tenant, envelope_id: str) -> str:
    return str((await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json())["status"])


def _secret(fake: FakeDigiSign, event: str) -> str:
    return next(str(w["secret"]) for w in fake.webhooks.values() if w["event"] == event)


async def test_invalid_signature_is_401_and_changes_nothing(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign
) -> None:
    envelope_id = await _sent(api, tenant, signers)
    remote_id = next(e["id"] for e in fake_digisign.envelopes.values() if e["metadata"] == envelope_id)
    body = json.dumps({"id": "evt-forged", "event": "envelopeCompleted", "entityName": "envelope",
                       "entityId": remote_id, "envelope": {"id": remote_id, "status": "completed"}}).encode()
    jobs, events = await Job.all().count(), await InboundEvent.all().count()
    for header in (fake_digisign.sign_body("not-the-secret", body), "t=1,s=abc", None):
        resp = await api.post("/webhooks/digisign", data=body, headers={"Signature": header} if header else {})
        assert resp.status == 401 and (await resp.json())["code"] == "unauthorized"
    # a real secret but a stale timestamp (older than 300 s)
    stale = int(fake_digisign.clock().timestamp()) - 301
    resp = await api.post("/webhooks/digisign", data=body,
                          headers={"Signature": fake_digisign.sign_body(_secret(fake_digisign, "envelopeCompleted"),
                                                                        body, stale)})
    assert resp.status == 401
    assert (await Job.all().count(), await InboundEvent.all().count()) == (jobs, events)
    await signers.settle()
    assert await _status(api, tenant, envelope_id) == "sent"


async def test_replayed_webhook_makes_no_second_crm_event(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign
) -> None:
    envelope_id = await _sent(api, tenant, signers)
    await signers.sign(envelope_id, "jana@example.cz", "+420601123456")
    assert await _status(api, tenant, envelope_id) == "completed"
    crm_events = await OutboxEvent.filter(envelope_id=envelope_id).count()
    delivered = next(d for d in fake_digisign.deliveries if d.event == "envelopeCompleted")
    secret = fake_digisign.webhooks[delivered.webhook_id]["secret"]
    resp = await api.post("/webhooks/digisign", data=delivered.body,
                          headers={"Signature": fake_digisign.sign_body(secret, delivered.body)})
    assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
    await signers.settle()
    assert await OutboxEvent.filter(envelope_id=envelope_id).count() == crm_events


async def test_webhook_for_an_unknown_envelope_is_ignored_and_logged(
    api: Any, fake_digisign: FakeDigiSign, container: Container
) -> None:
    body = json.dumps({"id": "evt-other", "event": "envelopeSent", "entityName": "envelope",
                       "entityId": "0193b1df-239d-7260-b479-111da9ddfbac",
                       "envelope": {"id": "0193b1df-239d-7260-b479-111da9ddfbac", "status": "sent"}}).encode()
    with capture_logs() as logs:
        resp = await api.post("/webhooks/digisign", data=body,
                              headers={"Signature": fake_digisign.sign_body(_secret(fake_digisign, "envelopeSent"),
                                                                            body)})
    assert resp.status == 200 and (await resp.json())["status"] == "unknown"
    assert any(e["event"] == "provider_webhook_unknown_envelope" for e in logs)
    assert not await Job.filter(kind="provider_sync").exists()


async def test_missed_webhooks_are_healed_by_the_timed_sync(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, clock: FrozenClock
) -> None:
    envelope_id = await _sent(api, tenant, signers)
    async with aiohttp.ClientSession() as http:
        await http.post(f"{fake_digisign.base_url}/_control/webhooks", json={"drop": True})
    await signers.sign(envelope_id, "jana@example.cz", "+420601123456")
    assert await _status(api, tenant, envelope_id) == "sent"  # nothing told us
    assert any(d.statuses == ["dropped"] for d in fake_digisign.deliveries)
    clock.advance(minutes=15)
    await signers.settle()
    assert await _status(api, tenant, envelope_id) == "completed"
    resp = await api.get(f"/v1/envelopes/{envelope_id}/download", headers=tenant.auth)
    assert resp.status == 200 and (await resp.read()).startswith(b"%PDF")


async def test_webhooks_out_of_order_cannot_move_an_envelope_back(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign
) -> None:
    envelope_id = await _sent(api, tenant, signers)
    await signers.sign(envelope_id, "jana@example.cz", "+420601123456")
    sent_event = next(d for d in fake_digisign.deliveries if d.event == "recipientSent")
    # the "sent" event arrives late, as a new delivery id: the state is read from DigiSign, not from it
    late = json.loads(sent_event.body)
    late["id"] = "evt-late"
    body = json.dumps(late).encode()
    secret = fake_digisign.webhooks[sent_event.webhook_id]["secret"]
    resp = await api.post("/webhooks/digisign", data=body, headers={"Signature": fake_digisign.sign_body(secret, body)})
    assert (await resp.json())["status"] == "accepted"
    await signers.settle()
    state = await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json()
    assert state["status"] == "completed" and state["signers"][0]["status"] == "signed"


async def test_a_tenants_own_provider_wins_over_the_gateway_default(
    api: Any, tenant: Tenant, signers: Signers, container: Container, fake_digisign: FakeDigiSign
) -> None:
    assert container.settings.provider == "digisign"
    await container.tenants.update_tenant(tenant.id, provider="local")
    envelope_id = await _sent(api, tenant, signers)
    state = await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json()
    assert state["provider"] == "local" and fake_digisign.envelopes == {}
    assert signers.local.smtp.to("jana@example.cz")  # our own invitation e-mail


async def test_provider_reported_expiry_is_taken_over(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign
) -> None:
    envelope_id = await _sent(api, tenant, signers)
    remote_id = next(e["id"] for e in fake_digisign.envelopes.values() if e["metadata"] == envelope_id)
    async with aiohttp.ClientSession() as http:
        await http.post(f"{fake_digisign.base_url}/_control/envelopes/{remote_id}/expire")
    await signers.settle()
    assert await _status(api, tenant, envelope_id) == "expired"


async def test_an_oversized_webhook_body_is_refused_before_it_is_read_or_verified(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign
) -> None:
    await _sent(api, tenant, signers)
    jobs, events = await Job.all().count(), await InboundEvent.all().count()
    huge = b'{"id": "evt-big", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    resp = await api.post("/webhooks/digisign", data=huge, headers={"Signature": "t=1,s=abc"})
    assert resp.status == 413 and (await resp.json())["code"] == "document_too_large"
    assert (await Job.all().count(), await InboundEvent.all().count()) == (jobs, events)
