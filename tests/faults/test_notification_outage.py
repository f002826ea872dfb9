"""A long mail or SMS outage loses nothing, and an operator sees it.

Real parts throughout: an aiosmtpd server that is stopped (its port closed) and started again on
the same port, an HTTP SMS gateway on a real socket that goes away and comes back, a CRM webhook
receiver, the real job worker run as a frozen clock moves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiosmtpd.controller import Controller
from tortoise.backends.base.executor import EXECUTOR_CACHE

from adapters.email.smtp import SmtpEmailSender
from adapters.sms.http import HttpSmsSender
from esign_gateway.bootstrap import build_container, close_db, init_db
from esign_gateway.config import Settings
from esign_gateway.container import Container
from esign_gateway.db import jobs as queue
from esign_gateway.db.models import AuditEvent, Job
from tests.api.conftest import LINK_RE, envelope_body, signer
from tests.conftest import SmtpServer, Tenant, _Collector, _free_port, _Shared
from tests.fakes import FrozenClock

pytestmark = pytest.mark.fault

JANA = ("Jana Nováková", "jana@example.cz", "+420601123456")
PETR = ("Petr Šťastný", "petr@example.cz", "+420602654321")
INVITATION = "Žádost o podpis"
REMINDER = "Připomínka"


class SwitchableSmtp(SmtpServer):
    """A real SMTP server whose port can be closed and opened again (same host, same port)."""

    controller: Controller | None = None

    def start(self) -> None:
        assert self.controller is None
        self.controller = Controller(_Collector(self), hostname=self.host, port=self.port)
        self.controller.start()

    def stop(self) -> None:
        assert self.controller is not None
        self.controller.stop()
        self.controller = None

    def subjects(self, address: str) -> list[str]:
        return [str(m["Subject"]) for m in self.to(address)]


@pytest.fixture
def smtp() -> Iterator[SwitchableSmtp]:
    server = SwitchableSmtp("127.0.0.1", _free_port())
    server.start()
    yield server
    if server.controller is not None:
        server.stop()


@dataclass
class SmsGateway:
    """An HTTP SMS gateway on a fixed local port that can go away and come back."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.received.append(await request.json())
            return web.json_response({"ok": True}, status=202)

        app = web.Application()
        app.router.add_post("/sms", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
        self.runner = None


@pytest.fixture
async def sms_gateway() -> AsyncIterator[SmsGateway]:
    gateway = SmsGateway(_free_port())
    await gateway.start()
    yield gateway
    if gateway.runner is not None:
        await gateway.stop()


@dataclass
class Receiver:
    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Any]) -> Receiver:
    rec = Receiver()

    async def handle(request: web.Request) -> web.Response:
        rec.events.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hooks"))
    return rec


@pytest.fixture
async def container(
    settings: Settings, clock: FrozenClock, smtp: SwitchableSmtp, sms_gateway: SmsGateway,
    shared_parts: dict[str, Any],
) -> AsyncIterator[Container]:
    c = build_container(
        settings,
        clock=clock,
        email=SmtpEmailSender.from_url(smtp.url, sender="esign <noreply@example.test>", clock=clock),
        sms=HttpSmsSender(sms_gateway.url, "tok_outage", clock=clock),
        providers={"local": _Shared(shared_parts["provider"])},
        inspector=_Shared(shared_parts["inspector"]),
    )
    EXECUTOR_CACHE.clear()
    await init_db(settings)
    yield c
    await close_db()


async def _create(api: Any, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def _run_for(container: Container, clock: FrozenClock, *, minutes: int, step: int = 1) -> None:
    """Move the clock ``minutes`` forward in ``step``-minute strides, running the worker at each."""
    for _ in range(minutes // step):
        clock.advance(minutes=step)
        await container.worker.run_once()


async def _component(api: Any, name: str) -> tuple[int, dict[str, Any]]:
    resp = await api.get("/readyz")
    body = await resp.json()
    (part,) = [c for c in body["components"] if c["name"] == name]
    return resp.status, part


# ----------------------------------------------------------------------------- e-mail outage


async def test_smtp_down_for_two_hours_then_up_delivers_the_invitation_exactly_once(
    api: Any, tenant: Tenant, container: Container, clock: FrozenClock, smtp: SwitchableSmtp, receiver: Receiver,
) -> None:
    resp = await api.put("/v1/webhook", json={"url": receiver.url}, headers=tenant.auth)
    assert resp.status == 200, await resp.text()
    assert (await api.get("/readyz")).status == 200
    smtp.stop()  # the port is closed: connection refused
    outage_began = clock.now()
    env = await _create(api, tenant, envelope_body([signer(*JANA)]))
    with structlog.testing.capture_logs() as logs:
        await container.worker.run_once()
        await _run_for(container, clock, minutes=120)
        status, email = await _component(api, "email")
        invitation = await Job.get(kind="send_invitation")
    assert status == 503 and email["ready"] is False
    assert f"since {outage_began:%Y-%m-%d %H:%M} UTC" in email["detail"], email["detail"]
    assert "1 message waiting" in email["detail"], email["detail"]
    assert invitation.status == "pending" and invitation.attempts > 8  # past the old 8-attempt limit
    assert smtp.messages == []
    failures = [e for e in logs if e["event"] == "email_send_failed"]
    assert len(failures) == invitation.attempts and all(e["log_level"] == "warning" for e in failures)
    assert "@" not in repr(failures)  # no address reaches the log
    assert sum(1 for e in receiver.events if e["type"] == "envelope.sent") == 1  # the CRM heard of the send

    smtp.start()  # same host, same port
    await _run_for(container, clock, minutes=20)
    assert smtp.subjects("jana@example.cz") == [f"{INVITATION}: Smlouva o dílo 2026/042"]
    status, email = await _component(api, "email")
    assert status == 200 and email["ready"] is True, email
    await _run_for(container, clock, minutes=120, step=10)
    assert len(smtp.to("jana@example.cz")) == 1  # exactly once, however long we wait
    invitation = await Job.get(kind="send_invitation")
    assert invitation.status == "done"
    assert await Job.filter(status="failed").count() == 0
    sent = await AuditEvent.filter(envelope_id=env["id"], type="signer.invitation_sent").count()
    assert sent == 1
    assert sum(1 for e in receiver.events if e["type"] == "envelope.sent") == 1
    # the link in the late invitation works
    match = LINK_RE.search(smtp.to("jana@example.cz")[0].get_body(("plain",)).get_content())
    assert match and (await api.get(f"/sign/{match.group(1)}")).status == 200


async def test_an_invitation_for_an_envelope_cancelled_during_the_outage_stops_and_is_never_sent(
    api: Any, tenant: Tenant, container: Container, clock: FrozenClock, smtp: SwitchableSmtp,
) -> None:
    smtp.stop()
    env = await _create(api, tenant, envelope_body([signer(*JANA)]))
    await container.worker.run_once()
    await _run_for(container, clock, minutes=30)
    resp = await api.post(f"/v1/envelopes/{env['id']}/cancel", json={"reason": "Nová verze"}, headers=tenant.auth)
    assert resp.status == 200, await resp.text()
    await _run_for(container, clock, minutes=30)
    invitation = await Job.get(kind="send_invitation")
    assert invitation.status == "done", invitation.status  # ended, not failed, not still retrying
    assert (invitation.last_error or "").startswith("dropped: "), invitation.last_error
    attempts = invitation.attempts
    smtp.start()
    await _run_for(container, clock, minutes=60, step=5)
    assert smtp.to("jana@example.cz") == []  # no invitation, and no notice of a request she never got
    assert (await Job.get(kind="send_invitation")).attempts == attempts
    assert await Job.filter(status="failed").count() == 0


# ----------------------------------------------------------------------------- reminders


async def _to_reminder_time(api: Any, tenant: Tenant, container: Container, clock: FrozenClock) -> dict[str, Any]:
    env = await _create(api, tenant, envelope_body([signer(*PETR)]))
    await container.worker.run_once()
    clock.advance(days=5, hours=23)
    await container.worker.run_once()  # whatever else fell due meanwhile (the daily blob GC)
    clock.advance(hours=1)  # the default reminder: one day before the 7-day expiry
    return env


async def test_a_reminder_whose_send_failed_gives_its_claim_back_and_is_sent_when_smtp_returns(
    api: Any, tenant: Tenant, container: Container, clock: FrozenClock, smtp: SwitchableSmtp,
) -> None:
    env = await _to_reminder_time(api, tenant, container, clock)
    smtp.stop()
    await container.worker.run_once()
    await _run_for(container, clock, minutes=45)
    assert (await Job.get(kind="send_reminder")).status == "pending"
    smtp.start()
    await _run_for(container, clock, minutes=30)
    reminders = [s for s in smtp.subjects("petr@example.cz") if s.startswith(REMINDER)]
    assert len(reminders) == 1
    types = [e.type for e in await AuditEvent.filter(envelope_id=env["id"]).order_by("seq")]
    assert types.count("signer.reminder_sent") == 1 and "signer.reminder_failed" not in types
    assert (await Job.get(kind="send_reminder")).status == "done"


async def test_a_reminder_lost_to_a_crash_leaves_reminder_failed_in_the_audit_trail(
    api: Any, tenant: Tenant, container: Container, clock: FrozenClock, smtp: SwitchableSmtp,
) -> None:
    env = await _to_reminder_time(api, tenant, container, clock)
    (job,) = await queue.claim("dead-worker", clock.now(), limit=10, lease=container.worker.lease)
    assert job.kind == "send_reminder"
    # what the dead worker did before it died: claimed Petr's slot, then nothing (no e-mail, no record)
    claimed = await container.notifications._claim_reminder(
        job.payload["envelope_id"], job.payload["slot"], job.payload["expires_at"]
    )
    assert claimed is not None
    clock.advance(minutes=6)  # the lease runs out: the job is due again
    await container.worker.run_once()
    events = await AuditEvent.filter(envelope_id=env["id"], type="signer.reminder_failed")
    assert [(e.signer_id, e.data["slot"], e.data["reason"]) for e in events] == [
        (claimed[1].id, job.payload["slot"], "interrupted")
    ]
    assert [s for s in smtp.subjects("petr@example.cz") if s.startswith(REMINDER)] == []  # never twice
    await _run_for(container, clock, minutes=60, step=10)
    assert await AuditEvent.filter(envelope_id=env["id"], type="signer.reminder_failed").count() == 1


# ----------------------------------------------------------------------------- SMS outage


async def test_an_sms_gateway_outage_makes_readyz_not_ready_until_a_code_goes_out_again(
    api: Any, tenant: Tenant, container: Container, clock: FrozenClock, smtp: SwitchableSmtp,
    sms_gateway: SmsGateway,
) -> None:
    await _create(api, tenant, envelope_body([signer(*JANA)]))
    await container.worker.run_once()
    match = LINK_RE.search(smtp.to("jana@example.cz")[0].get_body(("plain",)).get_content())
    assert match
    token = match.group(1)
    assert (await api.get("/readyz")).status == 200
    await sms_gateway.stop()
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            resp = await api.post(f"/api/sign/{token}/code", json={})
            assert resp.status == 502, await resp.text()
            clock.advance(minutes=1)
    status, sms = await _component(api, "sms")
    assert status == 503 and sms["ready"] is False
    assert "since" in sms["detail"] and "+420" not in sms["detail"], sms["detail"]
    failures = [e for e in logs if e["event"] == "sms_send_failed"]
    assert len(failures) == 3 and all(e["log_level"] == "warning" for e in failures)
    assert "+420" not in repr(logs) and "601123456" not in repr(logs)
    await sms_gateway.start()
    resp = await api.post(f"/api/sign/{token}/code", json={})
    assert resp.status == 202, await resp.text()
    assert len(sms_gateway.received) == 1
    status, sms = await _component(api, "sms")
    assert status == 200 and sms["ready"] is True


async def test_a_web_process_that_sends_no_mail_still_sees_the_workers_mail_outage(
    api: Any, tenant: Tenant, container: Container, clock: FrozenClock, smtp: SwitchableSmtp,
    settings: Settings, shared_parts: dict[str, Any], aiohttp_client: Callable[..., Any],
) -> None:
    from esign_gateway.http.app import create_app

    web_side = build_container(  # a separate web process: its own sender, which never sends anything
        settings, clock=clock,
        email=SmtpEmailSender.from_url(smtp.url, sender="esign <noreply@example.test>", clock=clock),
        providers={"local": _Shared(shared_parts["provider"])}, inspector=_Shared(shared_parts["inspector"]),
    )
    web = await aiohttp_client(create_app(web_side, run_worker=False))
    smtp.stop()
    await _create(api, tenant, envelope_body([signer(*JANA)]))
    await container.worker.run_once()
    await _run_for(container, clock, minutes=30)
    status, email = await _component(web, "email")
    assert email["ready"] is True  # this process never tried to send
    status, held = await _component(web, "mail_queue")
    assert status == 503 and held["ready"] is False, held
    assert "1 e-mail(s) held back" in held["detail"] and "@" not in held["detail"]

    smtp.start()
    await _run_for(container, clock, minutes=20)
    status, held = await _component(web, "mail_queue")
    assert status == 200 and held["ready"] is True, held
