"""What a mail server's refusal means: the signer's address (for good, not retried, recorded) or the
gateway's own session (its configuration: retried, and the transport reported not ready).

A real aiosmtpd server on a loopback port whose handler refuses what each test needs refused.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from adapters.email.smtp import SmtpEmailSender
from esign_gateway.container import Container
from esign_gateway.db.models import AuditEvent, Job
from esign_gateway.errors import DeliveryError
from esign_gateway.ports import OutgoingEmail
from tests.api.conftest import envelope_body, signer
from tests.conftest import SmtpServer, Tenant
from tests.fakes import FrozenClock

pytestmark = pytest.mark.fault


class Refusing:
    def __init__(self) -> None:
        self.refuse_sender = False
        self.refuse_subject: str | None = None
        self.messages: list[Any] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.refuse_sender:
            return "550 5.7.1 Sender address not allowed for this relay"
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        if self.refuse_subject and str(msg["Subject"]).startswith(self.refuse_subject):
            return "554 5.6.0 Message refused"
        self.messages.append(msg)
        return "250 OK"


@pytest.fixture
def refusing() -> Iterator[tuple[Refusing, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    handler = Refusing()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


MESSAGE = OutgoingEmail(to="jana@example.cz", subject="Žádost o podpis: Smlouva", text="text", html="<p>html</p>")


async def test_a_refused_sender_is_our_configuration_retried_and_reported_not_a_signers_address(
    refusing: tuple[Refusing, int], clock: FrozenClock,
) -> None:
    handler, port = refusing
    sender = SmtpEmailSender.from_url(f"smtp://127.0.0.1:{port}", sender="esign <noreply@esign.example>",
                                      clock=clock)
    handler.refuse_sender = True
    for _ in range(3):
        with pytest.raises(DeliveryError) as refused:
            await sender.send(MESSAGE)
        assert refused.value.permanent is False  # never makes the signer "undeliverable"
        clock.advance(minutes=1)
    health = await sender.health()
    assert health.name == "email" and health.ready is False
    assert "since 2026-11-23 09:00 UTC" in health.detail and "SMTPSenderRefused 550" in health.detail
    assert "@" not in health.detail
    handler.refuse_sender = False
    await sender.send(MESSAGE)
    health = await sender.health()
    assert health.ready is True and "working again since 2026-11-23 09:03 UTC" in health.detail
    assert len(handler.messages) == 1


async def test_a_message_refused_for_good_is_not_an_outage(refusing: tuple[Refusing, int], clock: FrozenClock) -> None:
    handler, port = refusing
    sender = SmtpEmailSender.from_url(f"smtp://127.0.0.1:{port}", sender="esign <noreply@esign.example>",
                                      clock=clock)
    handler.refuse_subject = "Žádost"
    for _ in range(5):
        with pytest.raises(DeliveryError) as refused:
            await sender.send(MESSAGE)
        assert refused.value.permanent is True
    assert (await sender.health()).ready is True  # the server answers: it works


@pytest.fixture
def smtp_server(refusing: tuple[Refusing, int]) -> SmtpServer:
    """The app's mail server (the shared ``container`` fixture) is the refusing one."""
    handler, port = refusing
    server = SmtpServer("127.0.0.1", port)
    server.messages = handler.messages
    return server


async def test_a_reminder_refused_for_good_is_recorded_as_reminder_failed_and_not_retried(
    api: Any, tenant: Tenant, container: Container, clock: FrozenClock, refusing: tuple[Refusing, int],
) -> None:
    handler, _ = refusing
    resp = await api.post("/v1/envelopes", json=envelope_body([signer("Petr Šťastný", "petr@example.cz",
                                                                      "+420602654321")]), headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    env = await resp.json()
    await container.worker.run_once()
    assert len(handler.messages) == 1  # the invitation went out
    clock.advance(days=5, hours=23)
    await container.worker.run_once()
    handler.refuse_subject = "Připomínka"
    clock.advance(hours=1)
    await container.worker.run_once()
    failed = await AuditEvent.filter(envelope_id=env["id"], type="signer.reminder_failed")
    assert [(e.data["reason"], e.data["slot"].startswith("before:1d@")) for e in failed] == [("undeliverable", True)]
    assert await AuditEvent.filter(envelope_id=env["id"], type="signer.reminder_sent").count() == 0
    job = await Job.get(kind="send_reminder")
    assert job.status == "done" and job.attempts == 1  # refused for good: not retried
    clock.advance(hours=2)
    await container.worker.run_once()
    assert await AuditEvent.filter(envelope_id=env["id"], type="signer.reminder_failed").count() == 1
