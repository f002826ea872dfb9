"""CRM webhooks end to end: a real HTTP receiver on a loopback port, signatures checked by the
independent ``standardwebhooks`` package, retries driven by moving the clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from esign_gateway.db.models import Job, OutboxEvent
from esign_gateway.db.repositories import outbox_event
from esign_gateway.jobs.worker import Worker
from tests.api.conftest import Ceremony, Tenant, envelope_body
from tests.fakes import FrozenClock
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.signing import SignatureError, verify


@pytest.fixture
def clock() -> FrozenClock:
    # Standard Webhooks verifiers compare webhook-timestamp with the real time (±5 min).
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@dataclass
class Receiver:
    url: str = ""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    status: int = 204
    hang: asyncio.Event | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Any]) -> Receiver:
    rec = Receiver()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        rec.requests.append((dict(request.headers), body))
        rec.arrived.set()
        if rec.hang is not None:
            await rec.hang.wait()
        if rec.fail_next:
            rec.fail_next -= 1
            return web.Response(status=500, headers=rec.extra_headers)
        return web.Response(status=rec.status, headers=rec.extra_headers)

    app = web.Application()
    app.router.add_post("/hooks", handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hooks"))
    return rec


async def _subscribe(api: Any, tenant: Tenant, url: str, **extra: Any) -> str:
    resp = await api.put("/v1/webhook", json={"url": url, **extra}, headers=tenant.auth)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["secret"].startswith("whsec_")
    return str(body["secret"])


async def test_full_ceremony_delivers_every_event_signed_and_versioned(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    secret = await _subscribe(api, tenant, receiver.url)
    env = (await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json())
    await ceremony.run_jobs()
    await ceremony.sign(ceremony.link_token("jana@example.cz"), "+420601123456")
    await ceremony.run_jobs()
    # Delivery is concurrent, so arrival order is not guaranteed; data.sequence orders them.
    events = sorted(receiver.events(), key=lambda e: e["data"]["sequence"])
    types = [e["type"] for e in events]
    assert types == ["envelope.sent", "signer.viewed", "signer.signed", "envelope.completed"]
    checker = Webhook(secret)
    for headers, body in receiver.requests:
        payload = checker.verify(body, headers)  # the independent verifier accepts every delivery
        assert payload["data"]["envelope"]["id"] == env["id"]
        assert payload["data"]["envelope"]["record"] == {"type": "deal", "id": "D-2026-0042", "name": "Dodávka serverů"}
        assert payload["data"]["envelope"]["metadata"] == {"crm_user": "42"}
        assert headers["webhook-id"] == payload["id"]
    assert events[-1]["data"]["envelope"]["status"] == "completed"
    assert events[2]["data"]["signer"]["id"] == env["signers"][0]["id"]
    versions = [e["data"]["envelope"]["version"] for e in events]
    assert versions == sorted(versions)  # the envelope snapshot in each event is never older than the last


async def test_receiver_that_fails_twice_gets_the_event_on_the_third_attempt(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    await _subscribe(api, tenant, receiver.url, events=["envelope.sent"])
    receiver.fail_next = 2
    await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    await ceremony.run_jobs()
    assert len(receiver.requests) == 1
    ceremony.container.clock.advance(seconds=4)  # type: ignore[attr-defined]
    await ceremony.run_jobs()
    assert len(receiver.requests) == 1  # the first retry is due after ~5 s (±10 % jitter)
    ceremony.container.clock.advance(seconds=2)  # type: ignore[attr-defined]
    await ceremony.run_jobs()
    assert len(receiver.requests) == 2
    ceremony.container.clock.advance(minutes=6)  # type: ignore[attr-defined]
    await ceremony.run_jobs()
    assert len(receiver.requests) == 3
    ids = {h["webhook-id"] for h, _ in receiver.requests}
    assert len(ids) == 1  # the same webhook-id on every retry
    deliveries = await (await api.get("/v1/webhook/deliveries", headers=tenant.auth)).json()
    (d,) = deliveries["items"]
    assert d["status"] == "succeeded" and d["attempts"] == 3
    assert [a["status_code"] for a in d["attempt_log"]] == [500, 500, 204]


async def test_hanging_receiver_does_not_delay_the_api(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    await _subscribe(api, tenant, receiver.url)
    receiver.hang = asyncio.Event()
    await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    worker = asyncio.create_task(ceremony.run_jobs())
    await receiver.arrived.wait()  # the worker is now stuck inside the receiver
    resp = await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    assert resp.status == 201
    assert not worker.done()  # the API answered while the delivery still hangs
    receiver.hang.set()
    await worker


async def test_rotation_signs_with_both_secrets_for_a_day(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    old = await _subscribe(api, tenant, receiver.url, events=["envelope.sent"])
    rotated = await (await api.post("/v1/webhook/rotate-secret", headers=tenant.auth)).json()
    new = rotated["secret"]
    assert new != old and rotated["previous_secret_valid_until"]
    await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    await ceremony.run_jobs()
    headers, body = receiver.requests[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)
    got = await (await api.get("/v1/webhook", headers=tenant.auth)).json()
    assert got["secret"] is None  # never shown again


async def test_event_committed_before_a_crash_is_still_delivered(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    await _subscribe(api, tenant, receiver.url, events=["envelope.sent"])
    receiver.hang = asyncio.Event()
    await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    worker = ceremony.container.worker
    dying = Worker(worker.handlers, worker.clock, concurrency=1)  # one job in hand when it dies
    doomed = asyncio.create_task(dying.run_once())
    await receiver.arrived.wait()
    doomed.cancel()  # the worker dies mid-delivery
    await asyncio.gather(doomed, return_exceptions=True)
    receiver.hang = None
    ceremony.container.clock.advance(minutes=6)  # type: ignore[attr-defined]  # past the lease
    await ceremony.run_jobs()
    assert (await WebhookDelivery.get()).status == "succeeded"
    assert len({h["webhook-id"] for h, _ in receiver.requests}) == 1


async def test_gone_disables_the_endpoint(api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver) -> None:
    await _subscribe(api, tenant, receiver.url)
    receiver.status = 410
    await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    await ceremony.run_jobs()
    ep = await WebhookEndpoint.get(tenant_id=tenant.id)
    assert ep.enabled is False and "410" in (ep.disabled_reason or "")
    got = await (await api.get("/v1/webhook", headers=tenant.auth)).json()
    assert got["enabled"] is False


async def test_retry_after_is_honoured_and_failed_after_the_schedule_then_manual_retry(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    await _subscribe(api, tenant, receiver.url, events=["envelope.sent"])
    receiver.status = 503
    receiver.extra_headers = {"Retry-After": "120"}
    await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    await ceremony.run_jobs()
    d = await WebhookDelivery.get()
    assert d.next_attempt_at is not None
    assert (d.next_attempt_at - ceremony.container.clock.now()).total_seconds() >= 119
    receiver.extra_headers = {}
    for _ in range(12):
        ceremony.container.clock.advance(hours=25)  # type: ignore[attr-defined]
        await ceremony.run_jobs()
    d = await WebhookDelivery.get()
    assert d.status == "failed" and d.attempts == 10  # the first try + 9 retries (about 3 days)
    assert (await api.get("/v1/webhook/deliveries?status=failed", headers=tenant.auth)).status == 200
    receiver.status = 200
    resp = await api.post(f"/v1/webhook/deliveries/{d.id}/retry", headers=tenant.auth)
    assert resp.status == 202
    await ceremony.run_jobs()
    assert (await WebhookDelivery.get()).status == "succeeded"
    assert await Job.filter(kind="deliver_webhook", status="failed").count() == 0


async def test_webhook_url_must_be_public_https_outside_dev(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    ceremony.container.settings.env = "prod"
    for url in ("http://crm.example.com/hooks", "https://127.0.0.1/hooks", "https://10.1.2.3/x",
                "https://169.254.169.254/latest", "https://user:pw@crm.example.com/"):
        resp = await api.put("/v1/webhook", json={"url": url}, headers=tenant.auth)
        assert resp.status == 422, url
        assert (await resp.json())["errors"][0]["field"] == "url"
    assert await WebhookEndpoint.all().count() == 0
    resp = await api.put("/v1/webhook", json={"url": "https://x.test/", "events": ["envelope.nope"]},
                         headers=tenant.auth)
    assert resp.status == 422


def test_our_verify_helper_rejects_a_tampered_body_and_old_timestamps() -> None:
    from webhooks.signing import generate_secret, sign

    secret = generate_secret()
    body = b'{"id":"evt_1","type":"envelope.sent"}'
    headers = {"webhook-id": "evt_1", "webhook-timestamp": "1700000000",
               "webhook-signature": sign(secret, "evt_1", 1700000000, body)}
    verify(secret, headers, body, now=1700000000)
    reference = Webhook(secret).sign("evt_1", datetime.fromtimestamp(1700000000, UTC), body.decode())
    assert reference == headers["webhook-signature"]  # the same scheme as the reference library
    with pytest.raises(SignatureError):
        verify(secret, headers, body.replace(b"sent", b"sant"), now=1700000000)
    with pytest.raises(SignatureError):
        verify(secret, headers, body, now=1700000000 + 301)
    with pytest.raises(SignatureError):
        verify(generate_secret(), headers, body, now=1700000000)


async def test_one_tenants_hanging_endpoint_does_not_hold_back_another_tenants_events(
    api: Any, tenant: Tenant, other_tenant: Tenant, ceremony: Ceremony, aiohttp_server: Callable[..., Any]
) -> None:
    hang, got_b = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await hang.wait()
        return web.Response(status=204)

    async def fast(request: web.Request) -> web.Response:
        got_b.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/a", slow)
    app.router.add_post("/b", fast)
    server = await aiohttp_server(app)
    await _subscribe(api, tenant, str(server.make_url("/a")))
    await _subscribe(api, other_tenant, str(server.make_url("/b")))
    for t in (tenant, tenant, tenant, other_tenant):
        assert (await api.post("/v1/envelopes", json=envelope_body(), headers=t.auth)).status == 201
    worker = asyncio.create_task(ceremony.run_jobs())
    await asyncio.wait_for(got_b.wait(), timeout=10)  # B got its event while A still hangs
    assert not worker.done()
    hang.set()
    await worker
    assert await WebhookDelivery.filter(status="succeeded").count() == 4
    foreign = await WebhookDelivery.filter(tenant_id=tenant.id).first()
    assert foreign is not None
    resp = await api.post(f"/v1/webhook/deliveries/{foreign.id}/retry", headers=other_tenant.auth)
    assert resp.status == 404  # another tenant's delivery cannot be touched or probed


async def test_one_dispatch_job_per_transaction_in_order_and_a_rerun_delivers_nothing_twice(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    await _subscribe(api, tenant, receiver.url)
    await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    await ceremony.run_jobs()
    await ceremony.sign(ceremony.link_token("jana@example.cz"), "+420601123456")
    last = (await Job.filter(kind="dispatch_event").order_by("-id").first())
    assert last is not None
    ids = last.payload["event_ids"]  # the signature and the completion: one transaction, one job
    by_id = {e.id: e.type for e in await OutboxEvent.filter(id__in=ids)}
    assert [by_id[i] for i in ids] == ["signer.signed", "envelope.completed"]
    await ceremony.run_jobs()
    delivered = await WebhookDelivery.all().count()
    dispatch = ceremony.container.worker.handlers["dispatch_event"]
    await dispatch(last.payload)  # the job runs again (a worker died after its commit)
    await ceremony.run_jobs()
    assert await WebhookDelivery.all().count() == delivered == len(receiver.requests) == 4


async def test_a_dispatch_job_queued_by_an_older_version_is_still_delivered(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    await _subscribe(api, tenant, receiver.url)
    event = outbox_event(tenant.id, None, "usage.threshold", ceremony.container.clock.now(), {"usage": {}})
    await OutboxEvent.bulk_create([event])
    await ceremony.container.worker.handlers["dispatch_event"]({"event_id": event.id})  # the old payload
    await ceremony.run_jobs()
    assert [json.loads(body)["id"] for _, body in receiver.requests] == [event.id]
