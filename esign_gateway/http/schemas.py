"""Pydantic v2 request/response models: the CRM API contract (and the OpenAPI source)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from esign_gateway.domain.envelope import Envelope
from esign_gateway.domain.policy import MAX_EXPIRY_DAYS
from esign_gateway.domain.quota import Plan, PlanTerms
from esign_gateway.ports import StampPlacement
from esign_gateway.services.plans import MonthUsage, PlanState

from .examples import CREATE_ENVELOPE

__all__ = [
    "CancelIn",
    "CodeIn",
    "CodeSentOut",
    "CreateEnvelopeIn",
    "DeclineIn",
    "DocumentIn",
    "EnvelopeOut",
    "EnvelopePage",
    "ExtendIn",
    "PlanCatalogueOut",
    "PlanIn",
    "PlanOut",
    "PlanStateOut",
    "RemindOut",
    "SignIn",
    "SignerIn",
    "UsageOut",
]

RECORD_TYPES = ("client", "contact", "deal", "offer", "order")
METADATA_MAX_BYTES = 4096


def _utc(v: datetime | None) -> datetime | None:
    """Explicit times must carry a zone; they are kept in UTC."""
    if v is not None and v.tzinfo is None:
        raise ValueError("give a timezone, e.g. 2026-12-01T12:00:00Z")
    return v.astimezone(UTC) if v else v


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


ONE_LINE = r"^[^\x00-\x1f\x7f\u2028\u2029]*$"
"""No control character and no line break: names end up in e-mail headers, file names, PDF stamps."""
TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
"""A message may have lines and tabs (LF, TAB), but no CR and no other control character."""


class RecordIn(_In):
    type: Literal["client", "contact", "deal", "offer", "order"]
    id: Annotated[str, Field(min_length=1, max_length=128, pattern=ONE_LINE)]
    name: Annotated[str | None, Field(max_length=300, pattern=ONE_LINE)] = None


class DocumentIn(_In):
    name: Annotated[str, Field(min_length=1, max_length=255, pattern=ONE_LINE)]
    content: Annotated[str, Field(min_length=1, description="base64 of the PDF")]

    def decoded(self) -> bytes:
        try:
            return base64.b64decode(self.content, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("content is not valid base64") from None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if any(c in v for c in "/\\\x00") or v in {".", ".."}:
            raise ValueError("a file name, without path separators")
        return v


Points = Annotated[float, Field(ge=0, le=14400)]
"""PDF points (1/72 inch); 14 400 pt is the largest page PDF allows."""


class FieldIn(_In):
    """Where a signer's stamp goes on one document: an ``anchor`` text in the document, or a box
    (``page``, ``x``, ``y``) in PDF points from the top-left corner of the page as a viewer displays it."""

    document: Annotated[int, Field(ge=1, le=20, description="1-based, in the order of `documents`")] = 1
    anchor: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    occurrence: Annotated[int, Field(ge=-100, le=100, description="which occurrence of the anchor; -1 = the last")] = 1
    offset_x: Annotated[float | None, Field(ge=-14400, le=14400)] = None
    offset_y: Annotated[float | None, Field(ge=-14400, le=14400)] = None
    page: Annotated[int | None, Field(ge=1, le=5000)] = None
    x: Points | None = None
    y: Points | None = None
    width: Annotated[float | None, Field(ge=30, le=1000)] = None
    height: Annotated[float | None, Field(ge=15, le=1000)] = None

    @model_validator(mode="after")
    def _anchor_or_box(self) -> FieldIn:
        box = (self.page, self.x, self.y)
        if self.anchor is not None:
            if any(v is not None for v in box):
                raise ValueError("give an anchor or a box (page, x, y), not both")
            if self.occurrence == 0:
                raise ValueError("occurrence counts from 1 (or from -1 for the last)")
        else:
            if any(v is None for v in box):
                raise ValueError("give an anchor, or page, x and y")
            if self.offset_x is not None or self.offset_y is not None:
                raise ValueError("offset_x and offset_y go with an anchor")
        return self


class SignerIn(_In):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=ONE_LINE)]
    email: str
    phone: str
    order: Annotated[int, Field(ge=1, le=10)] = 1
    fields: Annotated[list[FieldIn], Field(max_length=20)] = []
    """At most one per document; a document without one gets the PDF's own empty signature field
    (in form order), else free space on its last page, else a signature page."""

    @field_validator("fields")
    @classmethod
    def _one_per_document(cls, v: list[FieldIn]) -> list[FieldIn]:
        documents = [f.document for f in v]
        if len(set(documents)) != len(documents):
            raise ValueError("one field per document: a signer signs each document once")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        try:
            return validate_email(v, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        try:
            number = phonenumbers.parse(v, "CZ")
        except phonenumbers.NumberParseException:
            raise ValueError("not a phone number") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError("not a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class RemindersIn(_In):
    before_expiry_days: Annotated[list[Annotated[int, Field(ge=1, le=89)]], Field(max_length=10)] = [1]
    every_days: Annotated[int | None, Field(ge=1, le=30)] = None


class CreateEnvelopeIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [CREATE_ENVELOPE]})
    record: RecordIn
    name: Annotated[str, Field(min_length=1, max_length=300, pattern=ONE_LINE)]
    message: Annotated[str | None, Field(max_length=2000, pattern=TEXT)] = None
    language: Literal["cs", "sk", "en"] = "cs"
    documents: Annotated[list[DocumentIn], Field(max_length=20)] = []
    """1 to 20 in a JSON request; empty in a multipart one, whose documents are file parts."""
    signers: Annotated[list[SignerIn], Field(min_length=1, max_length=10)]
    expires_in_days: Annotated[int | None, Field(ge=1, le=MAX_EXPIRY_DAYS)] = None
    expires_at: datetime | None = None
    reminders: RemindersIn = RemindersIn()
    send: bool = True
    metadata: dict[str, Any] = {}

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(v, ensure_ascii=False).encode()) > METADATA_MAX_BYTES:
            raise ValueError("metadata is limited to 4 KB of JSON")
        return v

    _aware = field_validator("expires_at")(classmethod(lambda cls, v: _utc(v)))

    @model_validator(mode="after")
    def _one_expiry(self) -> CreateEnvelopeIn:
        if self.expires_in_days is not None and self.expires_at is not None:
            raise ValueError("give expires_in_days or expires_at, not both")
        emails = [s.email.lower() for s in self.signers]
        if len(set(emails)) != len(emails):
            raise ValueError("each signer needs their own e-mail address")
        return self


class CancelIn(_In):
    reason: Annotated[str | None, Field(max_length=1000, pattern=TEXT)] = None


class ExtendIn(_In):
    # exactly one of the two, as ``_exactly_one`` checks (a null counts as absent); each branch says
    # its field in full, so a generated client gets one typed shape per branch
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["expires_in_days"],
         "properties": {"expires_in_days": {"type": "integer", "minimum": 1, "maximum": MAX_EXPIRY_DAYS}}},
        {"required": ["expires_at"], "properties": {"expires_at": {"type": "string", "format": "date-time"}}},
    ]})
    expires_in_days: Annotated[int | None, Field(ge=1, le=MAX_EXPIRY_DAYS)] = None
    expires_at: datetime | None = None

    _aware = field_validator("expires_at")(classmethod(lambda cls, v: _utc(v)))

    @model_validator(mode="after")
    def _exactly_one(self) -> ExtendIn:
        if (self.expires_in_days is None) == (self.expires_at is None):
            raise ValueError("give expires_in_days or expires_at")
        return self


class DownloadLinksRevokedOut(BaseModel):
    revoked: int
    """How many live download links died (0 when they were already dead or revoked)."""


class RemindOut(BaseModel):
    reminded: list[str]
    """Ids of the signers who will get the reminder (those who still have to act now)."""


class CodeIn(_In):
    pass


class SignIn(_In):
    code: Annotated[str | None, Field(pattern=r"^\d{6}$")] = None
    agree: Annotated[bool, Field(json_schema_extra={"const": True})]
    """Must be ``true``: the signer's consent to sign (``false`` is refused, 422)."""


class DeclineIn(_In):
    reason: Annotated[str, Field(min_length=1, max_length=1000, pattern=TEXT)]


# ------------------------------------------------------------------------------ responses


class RecordOut(BaseModel):
    type: str
    id: str
    name: str | None


class DocumentOut(BaseModel):
    id: str
    name: str
    pages: int
    size: int
    sha256: str
    """SHA-256 of the upload, byte for byte."""
    prepared_sha256: str | None = None
    """Set when the signers sign another file than the upload (which carried no signature): the upload
    repaired (audit event ``document.normalised``) and/or with a signature page appended because its
    last page had no room for the stamps (``document.signature_page_added``; ``pages`` counts it)."""
    signed_sha256: str | None


class PlacementOut(BaseModel):
    """Where a signer's stamp goes on one document (points from the displayed page's top-left)."""

    document_id: str
    page: int
    """1-based."""
    x: float
    y: float
    width: float
    height: float
    source: Literal["anchor", "coordinates", "form_field", "automatic", "signature_page"]
    """The sender's ``anchor`` or box (``coordinates``), the PDF's own empty signature field
    (``form_field``), free space the gateway found (``automatic``), or the signature page it appended."""

    @classmethod
    def of(cls, document_id: str, p: StampPlacement) -> PlacementOut:
        return cls(document_id=document_id, page=p.page + 1, x=p.x, y=p.y, width=p.width, height=p.height,
                   source=p.source)  # type: ignore[arg-type]


def placements_of(env: Envelope, signer_id: str) -> list[PlacementOut]:
    return [PlacementOut.of(d.id, d.placements[signer_id]) for d in env.documents if signer_id in d.placements]


class SignerOut(BaseModel):
    id: str
    name: str
    email: str
    phone: str
    order: int
    status: str
    viewed_at: datetime | None
    verified_at: datetime | None
    signed_at: datetime | None
    decline_reason: str | None
    delivery_error: str | None = None
    """Why the invitation could not be delivered (status ``undeliverable``)."""
    fields: list[PlacementOut] = []
    """Where this signer's stamp goes, per document."""


class LinksOut(BaseModel):
    self: str
    download: str
    audit: str


class EnvelopeOut(BaseModel):
    id: str
    status: str
    record: RecordOut
    name: str
    message: str | None
    language: str
    provider: str
    created_at: datetime
    sent_at: datetime | None
    expires_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    """What the sender gave when cancelling (shown to the signers)."""
    declined_at: datetime | None = None
    """When a signer declined (that signer's ``decline_reason`` says why)."""
    retained_until: datetime | None
    documents: list[DocumentOut]
    signers: list[SignerOut]
    reminders: dict[str, Any]
    metadata: dict[str, Any]
    links: LinksOut

    @classmethod
    def from_domain(cls, env: Envelope, base_url: str = "") -> EnvelopeOut:
        """``base_url``: the gateway's public URL (``ESIGN_PUBLIC_URL``): the links are absolute."""
        base = f"{base_url}/v1/envelopes/{env.id}"
        ended = env.ended_at
        return cls(
            id=env.id, status=env.status.value,
            record=RecordOut(type=env.record_type, id=env.record_id, name=env.record_name),
            name=env.name, message=env.message, language=env.language, provider=env.provider,
            created_at=env.created_at, sent_at=env.sent_at, expires_at=env.expires_at,
            completed_at=env.completed_at, retained_until=env.retained_until,
            cancelled_at=ended if env.status.value == "cancelled" else None, cancel_reason=env.cancel_reason,
            declined_at=ended if env.status.value == "declined" else None,
            documents=[
                DocumentOut(id=d.id, name=d.name, pages=d.pages, size=d.size, sha256=d.sha256,
                            prepared_sha256=d.prepared_sha256, signed_sha256=d.signed_sha256)
                for d in env.documents
            ],
            signers=[
                SignerOut(id=s.id, name=s.name, email=s.email, phone=s.phone, order=s.order, status=s.status.value,
                          viewed_at=s.viewed_at, verified_at=s.verified_at, signed_at=s.signed_at,
                          decline_reason=s.decline_reason, delivery_error=s.delivery_error,
                          fields=placements_of(env, s.id))
                for s in env.signers
            ],
            reminders=env.reminders, metadata=env.metadata,
            links=LinksOut(self=base, download=f"{base}/download", audit=f"{base}/audit"),
        )


class EnvelopePage(BaseModel):
    items: list[EnvelopeOut]
    next_cursor: str | None


class AuditEventOut(BaseModel):
    seq: int
    type: str
    at: datetime
    actor: str
    signer_id: str | None
    data: dict[str, Any]
    ip: str | None
    user_agent: str | None
    note: str | None = None
    """Free text beside the chain (a mail server's answer, addresses masked); not hashed, erasable."""
    hash: str
    prev_hash: str


class AuditTrailOut(BaseModel):
    """The envelope's hash-chained event trail (``Accept: application/json``)."""

    envelope_id: str
    chain_head: str | None
    events: list[AuditEventOut]


class SignedOut(BaseModel):
    status: Literal["signed", "declined"]
    envelope_status: str


class CodeSentOut(BaseModel):
    sent_to: str
    expires_in: int
    resend_after: int


class SignerDocumentOut(BaseModel):
    id: str
    name: str
    pages: int
    url: str
    signature: PlacementOut | None = None
    """Where this signer's stamp goes on the document."""


class SignerViewOut(BaseModel):
    envelope_id: str
    envelope_name: str
    sender: str
    message: str | None
    signer_name: str
    phone: str
    status: str
    envelope_status: str
    expires_at: datetime | None
    language: str
    documents: list[SignerDocumentOut]


# ----------------------------------------------------------------------------- plans and usage


class PlanIn(_In):
    code: Annotated[str, Field(min_length=1, max_length=32)]


class PlanOut(BaseModel):
    """A catalogue entry. ``custom`` has no numbers: the operator sets them per tenant."""

    code: str
    name: str
    monthly_documents: int | None
    monthly_fee: str | None
    currency: str
    daily_requests: int

    @classmethod
    def from_domain(cls, p: Plan, currency: str) -> PlanOut:
        return cls(
            code=p.code, name=p.name, monthly_documents=p.monthly_documents,
            monthly_fee=f"{p.monthly_fee:.2f}" if p.monthly_fee is not None else None, currency=currency,
            daily_requests=p.daily_requests,
        )


class PlanCatalogueOut(BaseModel):
    items: list[PlanOut]


class HeldPlanOut(BaseModel):
    """A plan as the tenant holds it (its numbers are kept from when it was chosen)."""

    code: str
    monthly_documents: int
    monthly_fee: str
    daily_requests: int
    effective_from: datetime | None

    @classmethod
    def from_domain(cls, t: PlanTerms | None) -> HeldPlanOut | None:
        if t is None:
            return None
        return cls(code=t.code, monthly_documents=t.documents, monthly_fee=f"{t.fee:.2f}",
                   daily_requests=t.daily_requests, effective_from=t.effective_at)


class PlanStateOut(BaseModel):
    plan: HeldPlanOut | None
    """In force now; with ``signing_enabled: false`` it is the plan that was terminated."""
    signing_enabled: bool
    pending_plan: HeldPlanOut | None
    """A lowering, effective from the 1st of next month (Europe/Prague)."""

    @classmethod
    def from_domain(cls, s: PlanState) -> PlanStateOut:
        return cls(plan=HeldPlanOut.from_domain(s.current), signing_enabled=s.enabled,
                   pending_plan=HeldPlanOut.from_domain(s.pending))


class UsageOut(BaseModel):
    month: str
    documents_sent: int
    allowance: int
    remaining: int
    overage: int
    plan: HeldPlanOut | None
    """The highest plan held in the month: it sets the allowance and the fee."""
    pending_plan: HeldPlanOut | None
    fee: str
    currency: str
    signing_enabled: bool

    @classmethod
    def from_domain(cls, u: MonthUsage, currency: str) -> UsageOut:
        return cls(
            month=u.month, documents_sent=u.documents_sent, allowance=u.allowance, remaining=u.remaining,
            overage=u.overage, plan=HeldPlanOut.from_domain(u.plan),
            pending_plan=HeldPlanOut.from_domain(u.state.pending),
            fee=f"{u.fee:.2f}", currency=currency, signing_enabled=u.state.enabled,
        )
