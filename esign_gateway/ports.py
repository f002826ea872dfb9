"""Ports: the protocols the core talks to, and the value types that cross them.

The core (``services``, ``http``, ``jobs``) only knows these protocols. Concrete
implementations live under ``adapters/`` and are chosen in ``bootstrap.py``.

Port map::

    SignatureProvider  — who runs the ceremony and who makes the signature
        LocalProvider     (adapters.providers.local)  gateway-run ceremony, pyHanko PAdES
        DigiSignProvider  (adapters.providers.digisign, later) provider-run ceremony
    PdfInspector       — bounded, out-of-loop parsing of untrusted uploads
    EmailSender        — SmtpEmailSender, OutboxEmailSender
    SmsSender          — OutboxSmsSender (HttpSmsSender later)
    DocumentStore      — FileDocumentStore (content-addressed by SHA-256)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = [
    "CeremonyHost",
    "DocumentStore",
    "EmailSender",
    "OutgoingEmail",
    "OutgoingSms",
    "PdfInfo",
    "PdfInspector",
    "SignatureProvider",
    "SignatureRequest",
    "SignedPdf",
    "SmsSender",
]


# --------------------------------------------------------------------------- PDF inspection


@dataclass(frozen=True, slots=True)
class PdfInfo:
    """What the gateway needs to know about an uploaded PDF."""

    pages: int


class PdfInspector(Protocol):
    """Parse an untrusted PDF with bounded memory and time, off the event loop.

    ``inspect`` returns :class:`PdfInfo` or raises
    ``esign_gateway.errors.PdfInvalidError`` (not a PDF, truncated, structurally broken,
    too expensive to parse: a decompression bomb) or ``PdfEncryptedError``.
    It never raises anything else for bad input.
    """

    async def inspect(self, data: bytes) -> PdfInfo: ...


# --------------------------------------------------------------------------- signing


class CeremonyHost(enum.StrEnum):
    """Who runs the signer-facing ceremony (e-mail link, SMS code, signing page)."""

    GATEWAY = "gateway"  # we e-mail links, check SMS codes and call ``sign`` per signer
    PROVIDER = "provider"  # the provider e-mails signers and reports back by webhook


@dataclass(frozen=True, slots=True)
class SignatureRequest:
    """One signer's signature over one document (picklable: it crosses to a worker)."""

    pdf: bytes
    envelope_id: str
    document_id: str
    signer_id: str
    signer_name: str
    signer_email: str
    field_name: str
    """Unique per signer within the document, e.g. ``Signature-<signer id>``."""
    slot: int
    """0-based position of this signer's visible stamp on the last page (stamps never overlap)."""
    verification: str
    """Human-readable verification method, e.g. ``e-mail link + SMS code to +420 6** *** *56``."""
    language: str = "cs"
    final: bool = False
    """True for the last signature on the document: the provider may add long-term data."""


@dataclass(frozen=True, slots=True)
class SignedPdf:
    pdf: bytes
    timestamp: datetime | None
    """The trusted (TSA) time of the signature, when there is one."""


@runtime_checkable
class SignatureProvider(Protocol):
    """A signature provider, seen from the core.

    Contract:

    * ``name`` is stored on each envelope (``local``, ``digisign``); a tenant's envelopes keep
      the provider they were sent with.
    * ``ceremony`` says who talks to signers. With ``CeremonyHost.GATEWAY`` the core issues signer
      links, sends the invitation e-mails and SMS codes through its own ports and calls
      :meth:`sign` when a verified signer agrees; with ``CeremonyHost.PROVIDER`` the core hands
      the envelope to the provider on send and learns of progress from the provider's webhooks.
    * ``sign`` adds one signer's PAdES signature as an incremental update: earlier signatures
      stay valid. CPU work happens off the event loop. Raises ``ProviderError`` on failure.
    * ``start``/``close`` manage pools and sessions; the app calls them from its cleanup context.
    """

    name: str
    ceremony: CeremonyHost

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def sign(self, request: SignatureRequest) -> SignedPdf: ...


# --------------------------------------------------------------------------- notifications


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers, e.g. ``X-Esign-Envelope-Id``."""


class EmailSender(Protocol):
    """Sends one e-mail. Raises ``DeliveryError(permanent=…)`` when the server refuses it."""

    async def send(self, message: OutgoingEmail) -> None: ...


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    to: str
    """E.164 number."""
    text: str


class SmsSender(Protocol):
    """Sends one SMS. Raises ``DeliveryError`` on failure."""

    async def send(self, message: OutgoingSms) -> None: ...


# --------------------------------------------------------------------------- storage


class DocumentStore(Protocol):
    """Blob storage for PDFs, content-addressed by SHA-256 (hex).

    ``put`` returns the key (the hex SHA-256 of the bytes); writing the same bytes twice is a
    no-op. ``get`` raises ``KeyError`` for an unknown key. ``delete`` of a missing key is a no-op.
    Keys are validated: a key that is not 64 hex characters is refused (no paths from input).
    """

    async def put(self, data: bytes) -> str: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

