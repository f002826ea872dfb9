"""MIME building shared by the SMTP and outbox senders (same bytes either way).

Built with the ``email`` package's compat32 classes (``MIMEMultipart``/``MIMEText``, ``Header``,
``formataddr``): the same RFC 5322/2047/2045 output as ``EmailMessage``, at a third of the CPU
(~0.9 ms instead of ~2.5–4.5 ms per message; two per ceremony). Bodies are quoted-printable
UTF-8, so the text stays readable in the raw message; non-ASCII names and subjects are
RFC 2047 encoded words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email import charset, policy
from email.header import Header
from email.headerregistry import Address
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from pathlib import Path

from esign_gateway.ports import OutgoingEmail

__all__ = ["DkimKey", "wire_message"]

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


_WIRE = policy.compat32.clone(linesep="\r\n", max_line_length=78)
_UTF8_QP = charset.Charset("utf-8")
_UTF8_QP.header_encoding = charset.QP
_UTF8_QP.body_encoding = charset.QP


def to_wire(mime: MIMEMultipart, dkim: DkimKey | None) -> bytes:
    """The message as sent (CRLF line ends), with a ``DKIM-Signature`` first when a key is set."""
    raw = mime.as_bytes(policy=_WIRE)
    return dkim.sign(raw) + raw if dkim is not None else raw


def _address(value: str) -> str:
    name, addr = parseaddr(value)
    return formataddr((name, addr), charset="utf-8")


def _from(sender: str, display_name: str | None) -> str:
    """The From header: ``display_name`` (a tenant's, e.g. "Demo s.r.o. přes esign-gateway") with
    the gateway's own address. ``Address`` refuses CR/LF in a name (no header injection); a
    non-ASCII name becomes an RFC 2047 encoded word, an ASCII one with specials ("s.r.o.") is quoted."""
    name, addr = parseaddr(sender)
    address = Address(display_name=display_name if display_name is not None else name, addr_spec=addr)
    return formataddr((address.display_name, address.addr_spec), charset="utf-8")


def _text(value: str) -> str | Header:
    return value if value.isascii() else Header(value, _UTF8_QP)


def build_mime(message: OutgoingEmail, sender: str, now: datetime) -> MIMEMultipart:
    mime = MIMEMultipart("alternative")
    mime["From"] = _from(sender, message.from_name)
    mime["To"] = _address(message.to)
    mime["Subject"] = _text(message.subject)
    mime["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "esign.localhost"
    mime["Message-ID"] = make_msgid(domain=domain)
    if message.reply_to:
        mime["Reply-To"] = _address(message.reply_to)
    for name, value in message.headers.items():
        mime[name] = _text(value)
    mime.attach(MIMEText(message.text, "plain", _UTF8_QP))
    mime.attach(MIMEText(message.html, "html", _UTF8_QP))
    return mime


def wire_message(message: OutgoingEmail, sender: str, now: datetime, dkim: DkimKey | None) -> bytes:
    """The bytes to send or store (CPU work, DKIM's RSA signature included: run it off the loop)."""
    return to_wire(build_mime(message, sender, now), dkim)
