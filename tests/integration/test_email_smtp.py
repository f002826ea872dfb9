"""SmtpEmailSender against a real SMTP server (aiosmtpd on a loopback port)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from adapters.email.smtp import SmtpEmailSender
from esign_gateway.errors import DeliveryError
from esign_gateway.messages import MessageContext, render_invitation

CTX = MessageContext(
    language="cs", signer_name="Jana Nováková", signer_email="jana@example.cz", sender_name="Dodavatel s.r.o.",
    envelope_name="Smlouva o dílo 2026/042", envelope_id="01a206aa-bcdb-750e-bbc5-e812ca10e709",
    message="Prosím o podpis.", document_names=["smlouva.pdf"], expires_at=datetime(2026, 11, 30, 9, tzinfo=UTC),
    link="https://sign.example.test/sign/abc123", reply_to="obchod@dodavatel.cz",
)


class Handler:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 No such user"
        if address.startswith("busy@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Handler, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


async def test_invitation_arrives_with_both_parts_carrying_link_and_envelope_id(smtp: tuple[Handler, int]) -> None:
    handler, port = smtp
    sender = SmtpEmailSender.from_url(f"smtp://127.0.0.1:{port}", sender="esign <noreply@esign.example>")
    await sender.send(render_invitation(CTX))
    (msg,) = handler.messages
    assert str(msg["Subject"]) == "Žádost o podpis: Smlouva o dílo 2026/042"
    assert msg["Reply-To"] == "obchod@dodavatel.cz"
    assert msg["Message-ID"].endswith("@esign.example>") and msg["Date"]
    assert msg["X-Esign-Envelope-Id"] == CTX.envelope_id
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert CTX.link in part and CTX.envelope_id in part and "SMS" in part
    assert "<img" not in html  # no tracking pixels
    assert re.findall(r"https://\S+/sign/\w+", text) == [CTX.link]


async def test_permanent_rejection_is_a_permanent_delivery_error(smtp: tuple[Handler, int]) -> None:
    _, port = smtp
    sender = SmtpEmailSender.from_url(f"smtp://127.0.0.1:{port}", sender="noreply@esign.example")
    msg = render_invitation(CTX)
    with pytest.raises(DeliveryError) as err:
        await sender.send(_to(msg, "gone@example.cz"))
    assert err.value.permanent is True


async def test_temporary_rejection_and_dead_server_are_transient(smtp: tuple[Handler, int]) -> None:
    _, port = smtp
    sender = SmtpEmailSender.from_url(f"smtp://127.0.0.1:{port}", sender="noreply@esign.example")
    with pytest.raises(DeliveryError) as err:
        await sender.send(_to(render_invitation(CTX), "busy@example.cz"))
    assert err.value.permanent is False
    dead = SmtpEmailSender.from_url("smtp://127.0.0.1:1?timeout=2", sender="noreply@esign.example")
    with pytest.raises(DeliveryError) as err:
        await dead.send(render_invitation(CTX))
    assert err.value.permanent is False


def _to(message: Any, address: str) -> Any:
    from dataclasses import replace

    return replace(message, to=address)


def test_smtp_url_forms() -> None:
    s = SmtpEmailSender.from_url("smtps://user%40x:p%3Ass@mail.example:2465?timeout=5", sender="a@b.c")
    assert (s.host, s.port, s.username, s.password, s.use_tls, s.timeout) == (
        "mail.example", 2465, "user@x", "p:ss", True, 5.0)
    s = SmtpEmailSender.from_url("smtp://mail.example?starttls=true", sender="a@b.c")
    assert (s.port, s.start_tls, s.use_tls) == (25, True, False)
    with pytest.raises(ValueError):
        SmtpEmailSender.from_url("http://mail.example", sender="a@b.c")


async def test_dkim_signed_mail_verifies_against_the_published_key() -> None:
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from adapters.email.mime import DkimKey

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    raw: list[bytes] = []

    class Raw(Handler):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            raw.append(envelope.original_content or envelope.content)
            return "250 OK"

    with socket.socket() as s:  # a server that keeps the raw bytes (a signature covers exact bytes)
        s.bind(("127.0.0.1", 0))
        raw_port = s.getsockname()[1]
    controller = Controller(Raw(), hostname="127.0.0.1", port=raw_port)
    controller.start()
    try:
        sender = SmtpEmailSender.from_url(f"smtp://127.0.0.1:{raw_port}", sender="esign <noreply@esign.example>",
                                          dkim=DkimKey("esign.example", "sel2026", pem))
        await sender.send(render_invitation(CTX))
    finally:
        controller.stop()
    assert raw and raw[0].startswith(b"DKIM-Signature:")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel2026._domainkey.esign.example."
        return f"v=DKIM1; k=rsa; p={public}".encode()

    assert dkim.verify(raw[0], dnsfunc=dns)
    assert not dkim.verify(raw[0].replace(b"Smlouva o d", b"Smlouva 0 d", 1), dnsfunc=dns)  # tampered → fails
