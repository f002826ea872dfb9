"""MIME building shared by the SMTP and outbox senders (same bytes either way)."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from esign_gateway.ports import OutgoingEmail

__all__ = ["build_mime"]


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
