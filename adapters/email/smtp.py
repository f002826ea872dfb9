"""SmtpEmailSender: real e-mail through an SMTP server (aiosmtplib).

``ESIGN_SMTP_URL``: ``smtp://[user:pass@]host[:port][?starttls=true&timeout=20]`` or
``smtps://…`` (implicit TLS). A 5xx answer to the recipient or the message is a permanent
failure (the address will not work); 4xx, timeouts and connection errors are transient and the
job queue retries them. So is a refusal of *our* side — the login, the sender address, the greeting
— even with a 5xx: that is the gateway's configuration, not the signer's address.

Every attempt is reported to ``monitor`` (a :class:`~adapters._transport.TransportMonitor`):
``health()`` is the ``email`` component of ``/readyz``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from adapters._transport import TransportMonitor, message_key
from esign_gateway.clock import Clock
from esign_gateway.errors import DeliveryError
from esign_gateway.ports import ComponentHealth, OutgoingEmail

from .mime import DkimKey, wire_message

__all__ = ["SmtpEmailSender"]


_OUR_SIDE = (
    aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPHeloError, aiosmtplib.SMTPAuthenticationError,
    aiosmtplib.SMTPSenderRefused,
)
"""Refusals of the gateway's own session (greeting, login, sender): a configuration to fix, retried."""


@dataclass(slots=True)
class SmtpEmailSender:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool | None = None
    timeout: float = 20.0
    dkim: DkimKey | None = None
    clock: Clock | None = None
    """Times the outage the monitor reports (the system clock when None)."""
    monitor: TransportMonitor = field(init=False)

    def __post_init__(self) -> None:
        self.monitor = TransportMonitor("email", "SMTP", clock=self.clock)

    async def health(self) -> ComponentHealth:
        return self.monitor.health()

    @classmethod
    def from_url(
        cls, url: str, *, sender: str, dkim: DkimKey | None = None, clock: Clock | None = None
    ) -> SmtpEmailSender:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("ESIGN_SMTP_URL must start with smtp:// or smtps://")
        query = parse_qs(parts.query)
        implicit = parts.scheme == "smtps"
        starttls = query.get("starttls", [""])[0].lower()
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or (465 if implicit else 25),
            sender=sender,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit,
            start_tls=True if starttls in ("1", "true", "yes") else False if starttls in ("0", "false", "no") else None,
            timeout=float(query.get("timeout", ["20"])[0]),
            dkim=dkim,
            clock=clock,
        )

    async def send(self, message: OutgoingEmail) -> None:
        raw = await asyncio.to_thread(wire_message, message, self.sender, datetime.now(UTC), self.dkim)
        key = message_key(message.to, message.subject)
        try:
            await aiosmtplib.send(
                raw, sender=parseaddr(self.sender)[1], recipients=[parseaddr(message.to)[1]],
                hostname=self.host, port=self.port, username=self.username, password=self.password,
                use_tls=self.use_tls, start_tls=self.start_tls, timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            self.monitor.answered()  # the server works; it refuses this recipient
            codes = [r.code for r in exc.recipients]
            said = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)[:300]
            raise DeliveryError(f"The mail server refused the recipient: {said}",
                                permanent=all(c >= 500 for c in codes)) from None
        except _OUR_SIDE as exc:
            self.monitor.failed(f"{type(exc).__name__} {exc.code}", key)
            raise DeliveryError(f"SMTP refused the gateway's session: {exc.code} {exc.message}"[:300],
                                permanent=False) from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                self.monitor.answered()  # the server works; it refuses this message
            else:
                self.monitor.failed(f"SMTP answered {exc.code}", key)
            raise DeliveryError(f"SMTP answered {exc.code} {exc.message}"[:300], permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self.monitor.failed(type(exc).__name__, key)
            raise DeliveryError(f"SMTP unavailable: {type(exc).__name__}.", permanent=False) from None
        self.monitor.answered()
