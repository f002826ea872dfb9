"""CRM webhooks end to end: a real HTTP receiver on a loopback port, signatures checked by the
independent ``standardwebhooks`` package, retries driven by moving the clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from esign_gateway.db.models import Job, OutboxEvent
from esign_gateway.db.repositories import outbox_event
from esign_gateway.jobs.worker import Worker
from tests.api.conftest import Ceremony, Tenant, envelope_body
from tests.fakes import FrozenClock
from tests.webhooks.helpers import STAND_IN, Listener, ScriptedResolver, make_tls, stand_in_policy
from webhooks.delivery import WebhookDispatcher
from webhooks.guard import STRICT, Guard, GuardPolicy, IPAddress, UnsafeUrl
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.routes import GUARD
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


# ---------------------------------------------------------------------------------------------------
# What a delivery may connect to: DNS rebinding, redirects, the check before every attempt, and the
# events an endpoint disabled by a 410 keeps. Receivers are real servers on loopback addresses; the
# guard's resolver is injected (its answers change like a rebinding DNS server's).


async def _emit(container: Any, tenant: Tenant, count: int = 1) -> list[str]:
    """Commit ``count`` CRM events of one transaction and dispatch them (the dispatch job's work)."""
    now = container.clock.now()
    events = [outbox_event(tenant.id, None, "usage.threshold", now, {"usage": {"n": i}}) for i in range(count)]
    await OutboxEvent.bulk_create(events)
    await container.worker.handlers["dispatch_event"]({"event_ids": [e.id for e in events]})
    return [e.id for e in events]


def _worker_with(container: Any, dispatcher: WebhookDispatcher) -> Worker:
    """The container's worker, its deliveries made by ``dispatcher``."""
    handlers = {**container.worker.handlers, "deliver_webhook": dispatcher.deliver,
                "release_webhooks": dispatcher.release}
    return Worker(handlers, container.clock)


@pytest.fixture
async def one_port_two_addresses() -> AsyncIterator[tuple[Listener, Listener]]:
    """A receiver on 127.0.0.1 (internal) and one on 127.0.0.2 (the stand-in public address), on the
    same port, so one URL reaches either depending on what its name resolves to."""
    inside = await Listener("127.0.0.1").start()
    outside = await Listener(str(STAND_IN), inside.port).start()
    yield inside, outside
    await outside.stop()
    await inside.stop()


@pytest.fixture
async def guarded_api(aiohttp_client: Callable[..., Any], container: Any) -> Callable[[Guard], Any]:
    """The real app whose ``PUT /v1/webhook`` checks URLs with the given guard."""
    from esign_gateway.http.app import create_app

    async def make(guard: Guard) -> Any:
        app = create_app(container)
        app[GUARD] = guard
        return await aiohttp_client(app)

    return make


async def test_a_name_that_rebinds_after_the_check_is_never_connected_to(
    api: Any, tenant: Tenant, container: Any, one_port_two_addresses: tuple[Listener, Listener]
) -> None:
    inside, outside = one_port_two_addresses
    resolver = ScriptedResolver(str(STAND_IN), "127.0.0.1")  # the first lookup passes; later ones rebind
    dispatcher = WebhookDispatcher(clock=container.clock, box=container.box, allow_internal=False,
                                   guard=Guard(stand_in_policy(), resolver))
    await _subscribe(api, tenant, f"http://crm.rebind.test:{inside.port}/hooks")
    (event_id,) = await _emit(container, tenant)
    await _worker_with(container, dispatcher).run_once()
    assert inside.requests == []  # the internal address was never connected to
    (seen,) = outside.requests  # the address that was checked is the one that got the event
    assert json.loads(seen.body)["id"] == event_id
    assert seen.host == f"crm.rebind.test:{inside.port}"
    assert resolver.lookups == ["crm.rebind.test"]  # resolved once for the attempt
    assert (await WebhookDelivery.get()).status == "succeeded"


async def test_https_delivery_by_name_reaches_the_checked_address_with_its_sni_and_host(
    api: Any, tenant: Tenant, container: Any, tmp_path: Path
) -> None:
    server_tls, client_tls, sni = make_tls(tmp_path, "crm.webhook.test")
    receiver = await Listener("127.0.0.1").start(ssl_context=server_tls)
    try:
        url = f"https://crm.webhook.test:{receiver.port}/hooks"
        resolver = ScriptedResolver("127.0.0.1")
        with pytest.raises(UnsafeUrl):  # production would refuse this receiver's address …
            await Guard(STRICT, resolver).target(url)

        def this_receiver_only(ip: IPAddress) -> bool:  # … this test lets exactly it through
            return str(ip) == "127.0.0.1"

        guard = Guard(GuardPolicy(https_only=True, allows=this_receiver_only), resolver)
        dispatcher = WebhookDispatcher(clock=container.clock, box=container.box, allow_internal=False,
                                       guard=guard, ssl_context=client_tls)
        await _subscribe(api, tenant, url)
        await _emit(container, tenant)
        await _worker_with(container, dispatcher).run_once()
        (seen,) = receiver.requests
        assert seen.host == f"crm.webhook.test:{receiver.port}"
        assert sni == ["crm.webhook.test"]  # the certificate was checked against the name, not the address
        assert (await WebhookDelivery.get()).status == "succeeded"
    finally:
        await receiver.stop()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed_and_the_delivery_is_retried(
    api: Any, tenant: Tenant, ceremony: Ceremony, code: int
) -> None:
    elsewhere = await Listener("127.0.0.1").start()
    endpoint = await Listener("127.0.0.1", status=code,
                              headers={"Location": f"http://127.0.0.1:{elsewhere.port}/stolen"}).start()
    try:
        await _subscribe(api, tenant, f"http://127.0.0.1:{endpoint.port}/hooks")
        await _emit(ceremony.container, tenant)
        await ceremony.run_jobs()
        assert len(endpoint.requests) == 1
        assert elsewhere.requests == []  # the redirect's target got nothing
        (d,) = (await (await api.get("/v1/webhook/deliveries", headers=tenant.auth)).json())["items"]
        assert d["status"] == "pending" and d["last_status_code"] == code and d["next_attempt_at"]
        assert [a["status_code"] for a in d["attempt_log"]] == [code]
        ceremony.container.clock.advance(seconds=6)  # type: ignore[attr-defined]  # the first retry
        await ceremony.run_jobs()
        assert len(endpoint.requests) == 2 and elsewhere.requests == []
    finally:
        await endpoint.stop()
        await elsewhere.stop()


async def test_a_name_that_resolves_inside_at_delivery_is_refused_and_logged(
    tenant: Tenant, container: Any, guarded_api: Callable[[Guard], Any],
    one_port_two_addresses: tuple[Listener, Listener],
) -> None:
    inside, outside = one_port_two_addresses
    resolver = ScriptedResolver(str(STAND_IN), "127.0.0.1")  # public when registered, internal afterwards
    guard = Guard(stand_in_policy(), resolver)
    client = await guarded_api(guard)
    resp = await client.put("/v1/webhook", json={"url": f"http://crm.rebind.test:{inside.port}/hooks"},
                            headers=tenant.auth)
    assert resp.status == 200, await resp.text()
    assert resolver.lookups == ["crm.rebind.test"]  # checked when it was registered
    dispatcher = WebhookDispatcher(clock=container.clock, box=container.box, allow_internal=False, guard=guard)
    await _emit(container, tenant)
    await _worker_with(container, dispatcher).run_once()
    assert inside.requests == [] and outside.requests == []  # nothing was sent
    assert resolver.lookups == ["crm.rebind.test", "crm.rebind.test"]  # checked again before the attempt
    (d,) = (await (await client.get("/v1/webhook/deliveries", headers=tenant.auth)).json())["items"]
    assert d["status"] == "pending" and d["next_attempt_at"]  # tried again later, by the schedule
    (attempt,) = d["attempt_log"]
    assert attempt["status_code"] is None
    assert attempt["error"] == "refused: the host resolves to an internal address"


async def test_the_production_policy_refuses_an_internal_endpoint_at_delivery(
    tenant: Tenant, container: Any
) -> None:
    """An endpoint stored with an internal address (e.g. set while the gateway ran in dev) is
    refused by a production dispatcher before anything is sent."""
    receiver = await Listener("127.0.0.1").start()
    try:
        now = container.clock.now()
        await WebhookEndpoint.create(id="ep-1", tenant_id=tenant.id, url=f"https://127.0.0.1:{receiver.port}/hooks",
                                     secret_sealed=container.box.seal("whsec_" + "A" * 44), created_at=now,
                                     updated_at=now)
        dispatcher = WebhookDispatcher(clock=container.clock, box=container.box, allow_internal=False)
        await _emit(container, tenant)
        await _worker_with(container, dispatcher).run_once()
        assert receiver.requests == []
        d = await WebhookDelivery.get()
        assert d.status == "pending" and d.last_error == "refused: the host resolves to an internal address"
    finally:
        await receiver.stop()


async def test_events_of_an_endpoint_disabled_by_410_are_held_and_sent_in_order_when_enabled_again(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    await _subscribe(api, tenant, receiver.url)
    receiver.status = 410
    (first,) = await _emit(ceremony.container, tenant)
    await ceremony.run_jobs()
    assert len(receiver.requests) == 1
    assert (await (await api.get("/v1/webhook", headers=tenant.auth)).json())["enabled"] is False
    later = await _emit(ceremony.container, tenant, count=11)  # while disabled; more than one release batch
    await ceremony.run_jobs()
    assert len(receiver.requests) == 1  # nothing is sent to a disabled endpoint
    log = (await (await api.get("/v1/webhook/deliveries?status=held", headers=tenant.auth)).json())["items"]
    assert len(log) == 12
    assert all("410" in d["last_error"] and "enabled again" in d["last_error"] for d in log)
    assert [d["status_code"] for d in next(d for d in log if d["event_id"] == first)["attempt_log"]] == [410]

    receiver.status = 204
    resp = await api.put("/v1/webhook", json={"url": receiver.url}, headers=tenant.auth)  # set again
    assert resp.status == 200 and (await resp.json())["enabled"] is True
    await ceremony.run_jobs()
    assert [e["id"] for e in receiver.events()[1:]] == [first, *later]  # each once, in order
    assert await WebhookDelivery.filter(status="succeeded").count() == 12
    assert (await (await api.get("/v1/webhook", headers=tenant.auth)).json())["enabled"] is True


async def test_a_held_event_the_endpoint_no_longer_subscribes_to_is_dropped_visibly(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    await _subscribe(api, tenant, receiver.url)
    receiver.status = 410
    await _emit(ceremony.container, tenant)
    await ceremony.run_jobs()
    receiver.status = 204
    resp = await api.put("/v1/webhook", json={"url": receiver.url, "events": ["envelope.completed"]},
                         headers=tenant.auth)
    assert resp.status == 200
    await ceremony.run_jobs()
    assert len(receiver.requests) == 1  # only the 410
    (d,) = (await (await api.get("/v1/webhook/deliveries", headers=tenant.auth)).json())["items"]
    assert d["status"] == "failed"
    assert d["last_error"] == "dropped: the endpoint no longer subscribes to usage.threshold"


async def test_a_retry_that_falls_due_while_the_endpoint_is_disabled_is_held_too(
    api: Any, tenant: Tenant, ceremony: Ceremony, receiver: Receiver
) -> None:
    await _subscribe(api, tenant, receiver.url)
    receiver.status = 500
    (older,) = await _emit(ceremony.container, tenant)  # fails once; its retry is due in ~5 s
    await ceremony.run_jobs()
    receiver.status = 410
    (gone,) = await _emit(ceremony.container, tenant)
    await ceremony.run_jobs()
    ceremony.container.clock.advance(seconds=6)  # type: ignore[attr-defined]  # the retry falls due
    await ceremony.run_jobs()
    assert len(receiver.requests) == 2  # the retry was not sent to the disabled endpoint
    assert await WebhookDelivery.filter(status="held").count() == 2
    receiver.status = 204
    assert (await api.put("/v1/webhook", json={"url": receiver.url}, headers=tenant.auth)).status == 200
    await ceremony.run_jobs()
    assert [e["id"] for e in receiver.events()[2:]] == [older, gone]
    assert await WebhookDelivery.filter(status="succeeded").count() == 2
