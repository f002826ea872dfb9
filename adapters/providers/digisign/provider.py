"""DigiSignProvider: the ceremony runs at DigiSign; we send, follow and archive.

DigiSign e-mails the link, checks the SMS code (``authenticationOnOpen: sms``) and signs. Our
envelope id travels as DigiSign's envelope ``metadata``, our signer id as the recipient's, so a
send interrupted half-way is found again instead of being sent twice (DigiSign bills per sent
envelope). Their words never leave this module: states are mapped onto ours here.

Signature tags (the notes' §3 and C9) go exactly where the gateway placed each signer's stamp when the
envelope was created (``RemoteSigner.placements``: the inspector's anchor, box, form field, free space or
signature page — the local provider's stamps go to the same boxes):

* an anchor that is a placeholder written for the purpose (``{{…}}``) → ``POST …/tags/by-placeholder``
  ``{recipient, type, placeholder, positioning: "bottom_left"}`` (the only ``positioning`` the notes
  show). DigiSign tags *every* occurrence of the placeholder in *every* document of the envelope
  (the SDK answers with a collection), so it is asked once per signer and placeholder (a document that
  carries the placeholder but where the sender placed this signer elsewhere gets both tags). Should DigiSign
  refuse it (its text extraction or its rules for placeholder characters are not ours), the tag goes
  by coordinates to the box the inspector found on the same placeholder instead;
* anything else → ``POST …/tags`` ``{document, recipient, type, page, xPosition, yPosition, width,
  height}``: the placement's box in whole points (the SDK types them ``int``), rounded *inwards*
  so the tag never leaves the box the inspector checked to lie on the displayed page;
* no placement (an envelope stored before placements existed) → the local provider's rule for such
  envelopes: tags in rows from the bottom-left of the last page's displayed area, by signer position.

A tag DigiSign refuses (400) is a 422 on ``signers[i].fields`` naming the document.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import structlog

from adapters._pdf.geometry import frame_of_page
from esign_gateway.errors import ProviderError, ValidationFailedError
from esign_gateway.ports import (
    CeremonyHost,
    InboundEvent,
    InvalidWebhook,
    RemoteEnvelope,
    RemoteHandle,
    RemoteResult,
    RemoteSigner,
    RemoteSignerState,
    RemoteState,
    SignatureRequest,
    SignedPdf,
    StampPlacement,
)

from .client import DigiSignClient, DigiSignInvalid

__all__ = ["ENVELOPE_STATES", "EVENTS", "RECIPIENT_STATES", "DigiSignProvider", "tag_box"]

log = structlog.get_logger(__name__)

ENVELOPE_STATES = {
    "draft": "sent", "sent": "sent", "correction": "sent", "completed": "completed", "declined": "declined",
    "disapproved": "declined", "expired": "expired", "cancelled": "cancelled",
}
RECIPIENT_STATES = {
    "draft": "waiting", "sent": "notified", "nonDelivered": "notified", "delivered": "viewed", "signed": "signed",
    "declined": "declined", "disapproved": "declined", "authFailed": "auth_failed", "cancelled": "notified",
}
EVENTS = (
    "envelopeSent", "envelopeCompleted", "envelopeExpired", "envelopeDeclined", "envelopeDisapproved",
    "envelopeCancelled", "recipientSent", "recipientDelivered", "recipientNonDelivered", "recipientAuthFailed",
    "recipientSigned", "recipientDeclined", "recipientDisapproved",
)
_FIELDS = {"email": "email", "mobile": "phone", "name": "name", "xPosition": "x", "yPosition": "y",
           "placeholder": "anchor"}

TAG_W, TAG_H = 156, 60
"""DigiSign's signature tag, 55 × 21 mm (notes C9): the size of a tag placed without a placement."""
TAG_MARGIN, TAG_GAP = 24, 8
PLACEHOLDER_POSITIONING = "bottom_left"
"""The tag's bottom-left corner on the placeholder's: the one value of ``positioning`` the notes show."""
_EPS = 1e-6

Verifier = Callable[[Iterable[str], str | None, bytes], None]


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


class DigiSignProvider:
    name = "digisign"
    ceremony = CeremonyHost.PROVIDER

    def __init__(self, client: DigiSignClient, *, verify_signature: Callable[..., None]) -> None:
        self.client = client
        self._verify = verify_signature

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    async def sign(self, request: SignatureRequest) -> SignedPdf:
        raise ProviderError("DigiSign signs in its own ceremony; the gateway never asks it to sign a page.")

    # ------------------------------------------------------------------ send
    async def prepare(self, envelope: RemoteEnvelope) -> RemoteHandle:
        found = await self.client.call("GET", "/api/envelopes",
                                       params={"metadata[eq]": envelope.envelope_id, "itemsPerPage": "5"})
        for item in found.get("items", []):
            if item["status"] != "draft":  # an earlier attempt got as far as sending: it is ours
                return self._handle(item)
            await self.client.call("DELETE", f"/api/envelopes/{item['id']}")  # half-built: start again
        created = await self.client.call("POST", "/api/envelopes", json={
            "name": envelope.name, "emailBody": envelope.message or envelope.name, "language": envelope.language,
            "validTo": envelope.expires_at.isoformat(timespec="seconds"), "metadata": envelope.envelope_id,
        })
        eid = created["id"]
        try:
            await self._fill(f"/api/envelopes/{eid}", envelope)
        except BaseException:
            await self.discard(eid)
            raise
        return self._handle(await self.client.call("GET", f"/api/envelopes/{eid}"))

    async def _fill(self, iri: str, envelope: RemoteEnvelope) -> None:
        docs = []
        for i, (name, content) in enumerate(envelope.documents):
            try:
                file = await self.client.upload(name, content)
                docs.append(await self.client.call("POST", f"{iri}/documents", json={
                    "name": name, "file": f"/api/files/{file['id']}",
                }))
            except DigiSignInvalid as exc:
                raise _invalid(exc, f"documents[{i}]") from None
        recipients = []
        for i, s in enumerate(envelope.signers):
            try:
                recipients.append(await self.client.call("POST", f"{iri}/recipients", json={
                    "role": "signer", "name": s.name, "email": s.email, "mobile": s.phone, "signingOrder": s.order,
                    "language": envelope.language, "authenticationOnOpen": "sms", "channelForSigner": "email",
                    "metadata": s.signer_id,
                }))
            except DigiSignInvalid as exc:
                raise _invalid(exc, f"signers[{i}]") from None
        last_pages: dict[int, tuple[int, float, float]] = {}  # read only for signers without placements
        for i, (signer, rec) in enumerate(zip(envelope.signers, recipients, strict=True)):
            await self._tag(iri, envelope, docs, i, signer, f"{iri}/recipients/{rec['id']}", last_pages)
        for days in sorted(set(envelope.reminder_days_before_expiry)):
            await self.client.call("POST", f"{iri}/notifications", json={"type": "toSignBeforeExpires", "days": days})

    async def _tag(
        self, iri: str, envelope: RemoteEnvelope, docs: list[dict[str, Any]], i: int, signer: RemoteSigner,
        recipient: str, last_pages: dict[int, tuple[int, float, float]],
    ) -> None:
        """One signer's signature tags, one per document (see the module docs)."""
        by_placeholder: dict[str, bool] = {}  # placeholder → DigiSign placed it (in every document)
        for d, doc in enumerate(docs):
            placement = signer.placements[d] if d < len(signer.placements) else None
            anchor = placement.anchor.strip() if placement is not None and placement.anchor else None
            if anchor is not None and _is_placeholder(anchor):
                if anchor not in by_placeholder:
                    by_placeholder[anchor] = await self._by_placeholder(iri, recipient, anchor, envelope, i)
                if by_placeholder[anchor]:
                    continue
            if placement is None and d not in last_pages:
                last_pages[d] = await asyncio.to_thread(_last_page, envelope.documents[d][1])
            page, x, y, w, h = tag_box(placement) if placement is not None else _fallback_box(*last_pages[d], i)
            try:
                await self.client.call("POST", f"{iri}/tags", json={
                    "type": "signature", "document": f"{iri}/documents/{doc['id']}", "recipient": recipient,
                    "page": page, "xPosition": x, "yPosition": y, "width": w, "height": h,
                })
            except DigiSignInvalid as exc:
                raise _invalid(exc, f"signers[{i}].fields", where=f"documents[{d}]") from None

    async def _by_placeholder(
        self, iri: str, recipient: str, placeholder: str, envelope: RemoteEnvelope, i: int
    ) -> bool:
        try:
            await self.client.call("POST", f"{iri}/tags/by-placeholder", json={
                "recipient": recipient, "type": "signature", "placeholder": placeholder,
                "positioning": PLACEHOLDER_POSITIONING,
            })
        except DigiSignInvalid as exc:
            log.warning("digisign_placeholder_refused", envelope_id=envelope.envelope_id, signer=i,
                        placeholder=placeholder, detail=exc.detail)
            return False
        return True

    async def send(self, ref: str) -> None:
        item = await self.client.call("GET", f"/api/envelopes/{ref}")
        if item["status"] != "draft":
            return
        try:
            await self.client.call("POST", f"/api/envelopes/{ref}/send")
        except DigiSignInvalid as exc:
            raise _invalid(exc, "") from None

    async def discard(self, ref: str) -> None:
        with contextlib.suppress(ProviderError, DigiSignInvalid):  # best effort: a draft costs nothing
            await self.client.call("DELETE", f"/api/envelopes/{ref}")

    @staticmethod
    def _handle(item: dict[str, Any]) -> RemoteHandle:
        refs = {r["metadata"]: r["id"] for r in item.get("recipients", []) if r.get("metadata")}
        return RemoteHandle(item["id"], refs)

    # ------------------------------------------------------------------ follow
    async def fetch(self, ref: str) -> RemoteState:
        item = await self.client.call("GET", f"/api/envelopes/{ref}")
        status = ENVELOPE_STATES.get(item["status"], "sent")
        at = _when(item.get(f"{item['status']}At"))
        signers = [
            RemoteSignerState(
                ref=r["id"], status=RECIPIENT_STATES.get(r["status"], "notified"),
                at=_when(r.get("signedAt") or r.get("declinedAt") or r.get("authFailedAt") or r.get("deliveredAt")
                         or r.get("sentAt")),
                decline_reason=r.get("declineReason"), viewed_at=_when(r.get("deliveredAt")),
            )
            for r in item.get("recipients", []) if r.get("role", "signer") == "signer"
        ]
        return RemoteState(ref=ref, status=status, signers=signers, at=at)

    async def cancel(self, ref: str, reason: str | None) -> None:
        item = await self.client.call("GET", f"/api/envelopes/{ref}")
        if item["status"] in ("sent", "correction"):
            await self.client.call("POST", f"/api/envelopes/{ref}/cancel", json={"reason": reason or ""})

    async def extend(self, ref: str, expires_at: datetime) -> None:
        await self.client.call("PUT", f"/api/envelopes/{ref}/extend",
                               json={"validTo": expires_at.isoformat(timespec="seconds")})

    async def remind(self, ref: str, signer_ref: str) -> None:
        await self.client.call("POST", f"/api/envelopes/{ref}/recipients/{signer_ref}/resend")

    async def download(self, ref: str) -> RemoteResult:
        combined = await self.client.call("GET", f"/api/envelopes/{ref}/download", params={"output": "combined"})
        log = await self.client.call("GET", f"/api/envelopes/{ref}/download", params={"output": "only_log"})
        if not (isinstance(combined, bytes) and combined.startswith(b"%PDF")):
            raise ProviderError("DigiSign's combined download is not a PDF.")
        if not (isinstance(log, bytes) and log.startswith(b"%PDF")):
            raise ProviderError("DigiSign's audit log download is not a PDF.")
        return RemoteResult(signed_pdf=combined, audit_log=log)

    def parse_webhook(
        self, headers: dict[str, str], body: bytes, now: datetime, secrets: Iterable[str]
    ) -> InboundEvent:
        signature = next((v for k, v in headers.items() if k.lower() == "signature"), None)
        try:
            self._verify(list(secrets), signature, body, now=now.timestamp())
        except Exception as exc:
            raise InvalidWebhook(str(exc)) from None
        try:
            payload = json.loads(body)
            envelope = payload.get("envelope") or {}
            ref = envelope.get("id") or (payload["entityId"] if payload.get("entityName") == "envelope" else None)
            return InboundEvent(event_id=str(payload["id"]), envelope_ref=str(ref), type=str(payload.get("event")))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidWebhook("the body is not a DigiSign event") from None

    async def register_webhooks(self, url: str) -> list[dict[str, Any]]:
        """One DigiSign webhook per event we follow (DigiSign's rule), each with its own secret."""
        existing = await self.client.call("GET", "/api/webhooks", params={"itemsPerPage": "100"})
        have = {(w["event"], w["url"]) for w in existing.get("items", [])}
        created = []
        for event in EVENTS:
            if (event, url) not in have:
                created.append(await self.client.call("POST", "/api/webhooks",
                                                      json={"event": event, "url": url, "status": "enabled"}))
        return created


def _is_placeholder(anchor: str) -> bool:
    """A text written into the document for the purpose, ``{{…}}`` (not a label such as "Podpis")."""
    text = anchor.strip()
    return len(text) > 4 and text.startswith("{{") and text.endswith("}}")


def tag_box(placement: StampPlacement) -> tuple[int, int, int, int, int]:
    """``(page, xPosition, yPosition, width, height)`` for DigiSign: 1-based page, whole points rounded
    inwards, so the tag lies within the placement's box (which the inspector checked is on the page)."""
    x0, y0 = math.ceil(placement.x - _EPS), math.ceil(placement.y - _EPS)
    x1 = math.floor(placement.x + placement.width + _EPS)
    y1 = math.floor(placement.y + placement.height + _EPS)
    return placement.page + 1, x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def _fallback_box(pages: int, width: float, height: float, slot: int) -> tuple[int, int, int, int, int]:
    """No stored placement (an envelope from before placements): like the local provider's stamps for
    such envelopes, rows of tags from the bottom-left of the last page's displayed area (``pages``,
    ``width`` × ``height``), by the signer's position; on a page too small for a tag, it is made
    smaller, never placed off the page."""
    w = max(1, min(TAG_W, math.floor(width) - 2 * TAG_MARGIN))
    h = max(1, min(TAG_H, math.floor(height) - 2 * TAG_MARGIN))
    per_row = max(1, (math.floor(width) - 2 * TAG_MARGIN + TAG_GAP) // (w + TAG_GAP))
    rows = max(1, (math.floor(height) - 2 * TAG_MARGIN + TAG_GAP) // (h + TAG_GAP))
    row, col = divmod(slot % (per_row * rows), per_row)  # more signers than room: they share a spot
    x = min(TAG_MARGIN + col * (w + TAG_GAP), max(0, math.floor(width) - w))
    y = max(0, math.floor(height) - TAG_MARGIN - h - row * (h + TAG_GAP))
    return pages, x, y, w, h


def _last_page(pdf: bytes) -> tuple[int, float, float]:
    """The page count and the last page's displayed width and height (points). The file passed the
    inspector at upload; reading its page tree is cheap, but it is still run off the event loop."""
    import pikepdf

    try:
        with pikepdf.open(io.BytesIO(pdf)) as doc:
            frame = frame_of_page(doc.pages[-1].obj)
            return len(doc.pages), frame.width, frame.height
    except (pikepdf.PdfError, IndexError) as exc:
        raise ProviderError(f"The document's pages could not be read to place DigiSign's tags: {exc}") from None


def _invalid(exc: DigiSignInvalid, prefix: str, where: str | None = None) -> ValidationFailedError:
    errors = []
    for path, text in exc.violations or [("", exc.detail)]:
        name = _FIELDS.get(path, path)
        field = f"{prefix}.{name}" if prefix and name else (prefix or name or "body")
        errors.append({"field": field, "message": f"DigiSign: {text}" + (f" ({where})" if where else "")})
    return ValidationFailedError("DigiSign refused the envelope.", errors=errors)
