"""Ports: the protocols the core talks to, and the value types that cross them.

The core (``services``, ``http``, ``jobs``) only knows these protocols. Concrete
implementations live under ``adapters/`` and are chosen in ``bootstrap.py``.

Port map::

    SignatureProvider  — who runs the ceremony and who makes the signature
        LocalProvider     (adapters.providers.local)  gateway-run ceremony, pyHanko PAdES
        DigiSignProvider  (adapters.providers.digisign)  provider-run ceremony
    PdfInspector       — bounded, out-of-loop parsing of untrusted uploads
    EmailSender        — SmtpEmailSender, OutboxEmailSender
    SmsSender          — OutboxSmsSender, HttpSmsSender
    DocumentStore      — FileDocumentStore (content-addressed by SHA-256)
    PageRenderer       — PdfiumPageRenderer (pages as PNG for the signer's page, cached per version)
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "PAGE_IMAGE_WIDTHS",
    "ArchiveStamper",
    "AuditReport",
    "CeremonyHost",
    "ComponentHealth",
    "DocumentStore",
    "EmailSender",
    "FieldRequest",
    "HealthCheck",
    "InboundEvent",
    "InspectorHealth",
    "InvalidWebhook",
    "OutgoingEmail",
    "OutgoingSms",
    "PageRenderer",
    "PageSize",
    "PdfInfo",
    "PdfInspector",
    "PlacementRequest",
    "RemoteCeremony",
    "RemoteEnvelope",
    "RemoteHandle",
    "RemoteNote",
    "RemoteResult",
    "RemoteSigner",
    "RemoteSignerState",
    "RemoteState",
    "ReportDocument",
    "ReportEvent",
    "ReportRenderer",
    "ReportSignature",
    "ReportSigner",
    "SignatureFacts",
    "SignatureProvider",
    "SignatureReader",
    "SignatureRequest",
    "SignedPdf",
    "SmsSender",
    "StampPlacement",
]


# --------------------------------------------------------------------------- readiness


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One part's answer to ``/readyz``: a part that is not ``ready`` makes the gateway answer 503."""

    name: str
    ready: bool
    detail: str = ""
    """Plain words for an operator (never a secret, an address or a document byte)."""


HealthCheck = Callable[[], Awaitable[ComponentHealth]]
"""Cheap and bounded (no network round trip per call): ``/readyz`` runs every check on each request."""


# --------------------------------------------------------------------------- PDF inspection


@dataclass(frozen=True, slots=True)
class FieldRequest:
    """Where the sender wants one signer's stamp on one document: an ``anchor`` text, or a box.

    Boxes are in PDF points from the top-left corner of the *displayed* page (its CropBox, turned
    by ``/Rotate``), the convention DigiSign uses; ``page`` is 1-based."""

    path: str
    """Where the request came from, for a 422 that names it: ``signers[0].fields[1]``."""
    anchor: str | None = None
    occurrence: int = 1
    """Which occurrence of the anchor: 1 = first, -1 = last."""
    offset_x: float | None = None
    offset_y: float | None = None
    page: int | None = None
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """Everything the inspector needs to place each signer's stamp on one document."""

    envelope_id: str
    envelope_name: str
    document_name: str
    language: str
    signers: tuple[str, ...]
    """Signer names, one per signer in the envelope's order."""
    fields: tuple[FieldRequest | None, ...]
    """Per signer: the sender's placement on this document, or None (a form field, else automatic)."""


@dataclass(frozen=True, slots=True)
class StampPlacement:
    """Where one signer's stamp goes: a box on the displayed page (see :class:`FieldRequest`)."""

    page: int
    """0-based page index."""
    x: float
    y: float
    width: float
    height: float
    source: str
    """``anchor``, ``coordinates``, ``form_field`` (an empty signature field of the PDF),
    ``automatic`` (free space on a page) or ``signature_page`` (the page the gateway appended)."""
    field_name: str | None = None
    """The PDF's own empty signature field this signer signs (``source == "form_field"``)."""
    anchor: str | None = None
    """The anchor text, for a provider that places by placeholder."""

    def as_dict(self) -> dict[str, object]:
        return {"page": self.page, "x": self.x, "y": self.y, "width": self.width, "height": self.height,
                "source": self.source, "field_name": self.field_name, "anchor": self.anchor}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> StampPlacement:
        return cls(page=int(d["page"]), x=float(d["x"]), y=float(d["y"]),  # type: ignore[arg-type]
                   width=float(d["width"]), height=float(d["height"]), source=str(d["source"]),  # type: ignore[arg-type]
                   field_name=d.get("field_name"), anchor=d.get("anchor"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class PdfInfo:
    """What the gateway needs to know about an uploaded PDF."""

    pages: int
    prepared: bytes | None = None
    """The file every signer signs when it is not the upload itself: the upload repaired (it
    carried no signature) and/or with a signature page appended; None when the upload is signed as
    it is."""
    repairs: tuple[str, ...] = ()
    """What was wrong with the upload, in words (empty when nothing was repaired)."""
    placements: tuple[StampPlacement, ...] = ()
    """One per signer of the :class:`PlacementRequest`, in its order."""
    signature_page: bool = False
    """A signature page was appended (it is in ``prepared``; ``pages`` counts it)."""


@dataclass(frozen=True, slots=True)
class InspectorHealth:
    workers: int
    """Inspector processes configured."""
    alive: int
    """Running now (a replaced one is starting when this is below ``workers``)."""
    replaced: int
    """Replaced since start (killed by a limit, died, or retired after their job quota)."""


class PdfInspector(Protocol):
    """Parse an untrusted PDF with bounded memory and time, off the event loop.

    ``inspect`` returns :class:`PdfInfo` for a file that can be signed, or raises
    ``esign_gateway.errors.PdfInvalidError`` (not a PDF, truncated, beyond repair, cannot take a
    signature, too expensive to parse: a decompression bomb), ``PdfEncryptedError`` or
    ``PdfCertifiedError`` (certified "no changes allowed"). It never raises anything else for bad
    input; ``InspectorBusyError`` (503) means no inspector was free in time — the file was not judged.
    With a ``placement`` request it also places every signer's stamp (see ``StampPlacement``) and
    raises ``ValidationFailedError`` naming the field when a sender's anchor is not in the document
    or a box is not on the page.
    """

    async def inspect(self, data: bytes, placement: PlacementRequest | None = None) -> PdfInfo: ...

    def health(self) -> InspectorHealth: ...


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
    """Unique per signer within the document, e.g. ``Signature-<signer id>``; a placement that names
    the PDF's own empty field (``StampPlacement.field_name``) signs that field instead."""
    slot: int
    """0-based position of this signer among the signers; places the stamp when ``placement`` is None
    (envelopes created before placements were stored): bottom-left of the last page's visible area."""
    verification: str
    """Human-readable verification method, e.g. ``e-mail link + SMS code to +420 6** *** *56``."""
    language: str = "cs"
    final: bool = False
    """True for the last signature on the document: the provider may add long-term data."""
    visible: bool = True
    """A visible stamp; a seal on our own report goes without one (cheaper)."""
    placement: StampPlacement | None = None
    """Where the stamp goes, as placed when the envelope was created."""


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


# --------------------------------------------------------------------------- audit report


@dataclass(frozen=True, slots=True)
class ReportSignature:
    """One signature found in a signed document (read from the file, not from our records)."""

    field_name: str
    signer_name: str | None
    """The signature dictionary's ``/Name``."""
    level: str
    """The PAdES baseline level the file carries for it: ``B-B``, ``B-T``, ``B-LT`` or ``B-LTA``."""
    timestamp: datetime | None
    """The TSA time (``genTime``) of this signature's own timestamp token."""


@dataclass(frozen=True, slots=True)
class SignatureFacts:
    """What a signed PDF holds: its signatures in order, and its document timestamps' TSA times."""

    signatures: list[ReportSignature]
    document_timestamps: list[datetime]


@runtime_checkable
class SignatureReader(Protocol):
    """Reads a signed PDF's signatures and timestamps for the audit report (CPU work: off the loop)."""

    async def read_signatures(self, pdf: bytes) -> SignatureFacts: ...


@dataclass(frozen=True, slots=True)
class ReportDocument:
    name: str
    pages: int
    sha256_original: str
    sha256_signed: str | None
    document_timestamps: tuple[datetime, ...] = ()
    """The TSA times of the signed file's document timestamps (B-LTA, renewals)."""


@dataclass(frozen=True, slots=True)
class ReportSigner:
    name: str
    email_masked: str
    phone_masked: str
    verification: str
    """How the signer was verified, as a code the report words in its language: ``email_sms``
    (our e-mail link and SMS code) or ``provider`` (the provider's own ceremony)."""
    status: str
    signed_at: datetime | None
    signature_level: str | None = None
    """The PAdES level of this signer's signature in the signed file (``B-LTA``…)."""
    signature_time: datetime | None = None
    """The TSA time of this signer's own signature timestamp (not the document timestamp's)."""
    decline_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ReportEvent:
    seq: int
    at: datetime
    type: str
    actor: str
    signer_name: str | None
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Everything the sealed audit report shows (SPEC §10); personal data already masked."""

    language: str
    envelope_id: str
    envelope_name: str
    status: str
    tenant_name: str
    record: str
    provider: str
    created_at: datetime
    sent_at: datetime | None
    ended_at: datetime | None
    retained_until: datetime | None
    documents: list[ReportDocument]
    signers: list[ReportSigner]
    events: list[ReportEvent]
    chain_head: str
    generated_at: datetime
    signature_kind: str = "gateway_seal"
    """What the signatures are: ``gateway_seal`` (the ``local`` provider: the gateway's electronic
    seal backed by two-channel evidence) or ``provider`` (made by ``provider``, e.g. DigiSign)."""
    cancel_reason: str | None = None


class ReportRenderer(Protocol):
    """Renders the audit report PDF (CPU work: off the event loop). Sealing is the caller's."""

    async def render(self, report: AuditReport) -> bytes: ...


@runtime_checkable
class ArchiveStamper(Protocol):
    """Keeps B-LTA files verifiable: a fresh document timestamp before the newest one's TSA
    certificate expires (the gateway's own signing identity; the ``local`` provider)."""

    async def renew(self, pdf: bytes) -> SignedPdf: ...

    async def timestamp_expiry(self, pdf: bytes) -> datetime | None: ...


# --------------------------------------------------------------------------- provider-run ceremonies


@dataclass(frozen=True, slots=True)
class RemoteSigner:
    signer_id: str
    """Ours; the provider keeps it as the recipient's metadata."""
    name: str
    email: str
    phone: str
    order: int
    placements: tuple[StampPlacement | None, ...] = ()
    """Per document, in order: where this signer signs (placed at creation by the inspector, the
    same placement the gateway's own stamps use; ``anchor`` is set when the sender gave one)."""


@dataclass(frozen=True, slots=True)
class RemoteEnvelope:
    """What a provider-run ceremony needs to send an envelope."""

    envelope_id: str
    name: str
    message: str | None
    language: str
    expires_at: datetime
    documents: list[tuple[str, bytes]]
    signers: list[RemoteSigner]
    reminder_days_before_expiry: list[int] = field(default_factory=list)
    reminder_every_days: int | None = None
    document_ids: tuple[str, ...] = ()
    """Ours, per document in order; the provider keeps each as the document's metadata."""


@dataclass(frozen=True, slots=True)
class RemoteNote:
    """Something the provider did otherwise than asked, for the envelope's audit trail (``type`` is the
    audit event type, ``data`` its non-personal facts), e.g. reminders it refused."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RemoteHandle:
    ref: str
    signer_refs: dict[str, str]
    """Our signer id → the provider's recipient id."""
    notes: tuple[RemoteNote, ...] = ()


@dataclass(frozen=True, slots=True)
class RemoteSignerState:
    ref: str
    status: str
    """In our words: ``waiting``, ``notified``, ``viewed``, ``signed``, ``declined``, ``auth_failed``,
    ``undeliverable``."""
    at: datetime | None = None
    decline_reason: str | None = None
    viewed_at: datetime | None = None
    delivery_error: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteState:
    ref: str
    status: str
    """In our words: ``sent``, ``completed``, ``declined``, ``expired``, ``cancelled``; ``gone`` (the
    provider no longer knows the envelope) or ``unknown`` (a state the adapter does not know: never
    taken as anything)."""
    signers: list[RemoteSignerState]
    at: datetime | None = None
    """When the provider reached ``status`` (completed/declined/expired/cancelled)."""
    reason: str | None = None
    """The provider's reason for ``cancelled`` (e.g. a withdrawal's)."""


@dataclass(frozen=True, slots=True)
class RemoteResult:
    documents: dict[str, bytes]
    """Our document id → that document as signed (the provider's per-document download)."""
    audit_log: bytes
    """The provider's own audit log (protocol) PDF."""


@dataclass(frozen=True, slots=True)
class InboundEvent:
    event_id: str
    envelope_ref: str
    type: str
    gone: bool = False
    """The provider says the envelope no longer exists (deleted there)."""


class InvalidWebhook(Exception):
    """An inbound provider webhook whose signature does not verify (answer 401, change nothing)."""


@runtime_checkable
class RemoteCeremony(Protocol):
    """A provider that runs the ceremony itself (``CeremonyHost.PROVIDER``).

    The core never trusts a webhook's content: ``parse_webhook`` only authenticates it and names
    the envelope; the core then asks ``fetch`` for the provider's authoritative state (events may
    arrive late, twice or out of order) and, at completion, ``download``s the result into its own
    archive. Every call is idempotent from the core's side or guarded by state.
    ``ValidationFailedError`` (with our field paths) for what the provider refuses as invalid,
    ``InvalidStateError`` (with the provider's text) for what it refuses in the envelope's or a
    recipient's current state (cancel, extend, remind), ``ProviderError`` for anything else.
    """

    name: str

    async def prepare(self, envelope: RemoteEnvelope) -> RemoteHandle:
        """Create and fill a draft at the provider (free), during the CRM's send request, so its
        validation errors reach the CRM as ``422``. A draft left by an interrupted attempt is replaced."""
        ...

    async def send(self, ref: str, expires_at: datetime | None = None) -> list[RemoteNote]:
        """Send a prepared draft (a job, after our send committed). Sending twice is a no-op; a send
        whose answer was lost is checked by reading the envelope, never repeated blindly. Notes what
        the provider did otherwise (e.g. an expiry other than ``expires_at``)."""
        ...

    async def discard(self, ref: str) -> None:
        """Delete a prepared draft that our send did not commit (e.g. over the allowance)."""
        ...

    async def fetch(self, ref: str) -> RemoteState: ...

    async def cancel(self, ref: str, reason: str | None) -> None: ...

    async def extend(self, ref: str, expires_at: datetime) -> list[RemoteNote]:
        """Move the provider's expiry; read back, a mismatch is a note (not assumed done)."""
        ...

    async def remind(self, ref: str, signer_ref: str) -> None: ...

    async def download(self, ref: str, document_ids: Sequence[str]) -> RemoteResult:
        """Each of our documents (``document_ids``, in order) as signed, and the provider's audit log."""
        ...

    def parse_webhook(
        self, headers: dict[str, str], body: bytes, now: datetime, secrets: Iterable[str]
    ) -> InboundEvent:
        """Authenticate a webhook with one of ``secrets`` (raise ``InvalidWebhook``) and say which
        envelope it concerns."""
        ...


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
    from_name: str | None = None
    """The From display name (the tenant's: "Demo s.r.o. přes esign-gateway"); the address is
    always the gateway's own (``ESIGN_MAIL_FROM``). None: the display name of ``ESIGN_MAIL_FROM``."""


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

    ``put`` returns the key (the hex SHA-256 of the bytes); writing the same bytes twice stores
    nothing more but marks the blob as just written. ``get`` raises ``KeyError`` for an unknown key.
    ``delete`` of a missing key is a no-op. Keys are validated: a key that is not 64 hex characters
    is refused (no paths from input). ``written_before`` lists the keys last put before a moment
    (candidates for garbage collection: a blob being stored right now is never among them).
    """

    async def put(self, data: bytes) -> str: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    async def written_before(self, moment: datetime) -> list[str]: ...



# --------------------------------------------------------------------------- page images


PAGE_IMAGE_WIDTHS = (400, 800, 1200, 1800)
"""The widths (pixels) a page image is made in: the signer page's ``srcset``; the last is the zoom."""


@dataclass(frozen=True, slots=True)
class PageSize:
    """A page as a viewer shows it (CropBox, turned by ``/Rotate``), in PDF points: the frame
    ``StampPlacement`` boxes are measured in."""

    width: float
    height: float


class PageRenderer(Protocol):
    """The pages of one document version as PNG images, for the signer's page.

    Rendering happens in bounded worker processes, never on the event loop. Answers are cached by
    the version's SHA-256 (plus page and width): ``load`` is called for the PDF's bytes only when
    the cache has no answer, and a version's images are dropped by ``forget`` (with its blob).
    ``render`` takes a 0-based page index and a width from :data:`PAGE_IMAGE_WIDTHS`; it raises
    ``IndexError`` for a page the document does not have and ``ValueError`` for another width.
    """

    async def sizes(self, sha256: str, load: Callable[[], Awaitable[bytes]]) -> list[PageSize]: ...

    async def render(self, sha256: str, page: int, width: int, load: Callable[[], Awaitable[bytes]]) -> bytes: ...

    async def forget(self, sha256: str) -> None: ...
