"""MIME building shared by the SMTP and outbox senders (same bytes either way)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from esign_gateway.ports import OutgoingEmail

__all__ = ["DkimKey", "build_mime", "to_wire"]

SIGNED_HEADERS = (b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Reply-To", b"Content-Type", b"MIME-Version")


@dataclass(frozen=True, slots=True)
class DkimKey:
    """DKIM signing of outgoing mail (RFC 6376, rsa-sha256, relaxed/relaxed) with ``dkimpy``."""

    domain: str
    selector: str
    private_key_pem: bytes

    @classmethod
    def from_file(cls, domain: str, selector: str, path: Path) -> DkimKey:
        return cls(domain, selector, path.read_bytes())

    def sign(self, raw: bytes) -> bytes:
        import dkim

        return bytes(dkim.sign(raw, self.selector.encode(), self.domain.encode(), self.private_key_pem,
                               canonicalize=(b"relaxed", b"relaxed"), include_headers=list(SIGNED_HEADERS)))


def to_wire(mime: EmailMessage, dkim: DkimKey | None) -> bytes:
    """The message as sent (CRLF line ends), with a ``DKIM-Signature`` first when a key is set."""
    raw = mime.as_bytes(policy=policy.SMTP)
    return dkim.sign(raw) + raw if dkim is not None else raw


def build_mime(message: OutgoingEmail, sender: str, now: datetime) -> EmailMessage:
    mime = EmailMessage()
    mime["From"] = sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "esign.localhost"
    mime["Message-ID"] = make_msgid(domain=domain)
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text, charset="utf-8")
    mime.add_alternative(message.html, subtype="html", charset="utf-8")
    return mime
