"""DigiSignProvider: the ceremony runs at DigiSign; we send, follow and archive.

DigiSign e-mails the link, checks the SMS code (``authenticationOnOpen: sms``) and signs. Our
envelope id travels as DigiSign's envelope ``metadata``, our signer id as the recipient's and our
document id as the document's. Their words never leave this module: states are mapped onto ours
here. The corrections of the DigiSign notes (§10, C1–C16) are marked where they are kept:

* **Finding ours again (C1).** No source shows ``metadata`` as a list filter, so a listing may hold
  anybody's envelopes: only one whose *own* ``metadata`` equals our envelope id is ever adopted (sent
  by an earlier attempt) or deleted (a draft an interrupted attempt left); anything else is left
  alone, and nothing found means not found.
* **Safe retries (C5).** A POST whose answer is lost (:class:`DigiSignUncertain`) is never repeated
  blindly: the adapter reads back what it would have made (the envelope by metadata, a document,
  recipient, tag or notification in the envelope's lists, the envelope's status after ``send`` or
  ``cancel``, the webhook list) and posts again only when it is not there. A lost ``send`` is
  followed by a GET, never a second send (DigiSign bills per sent envelope).
* **Expiry (C3, C4).** Create sends both ``expiration`` (whole days, rounded up) and ``validTo``; the
  draft is read back and its ``validTo`` put right when DigiSign did not take it; after ``send`` and
  after ``extend`` the envelope is read again, a ``validTo`` that is still not ours is moved with
  ``PUT …/extend`` and, if it still differs, reported as an ``envelope.provider_expiry_mismatch`` note.
* **Reminders (C2).** Our before-expiry reminders go as ``toSignBeforeExpires`` (a type only a
  low-confidence source names), ``every_days`` as the vendor-confirmed ``toSignAfterSent``. A type
  DigiSign refuses does not fail the send: it is left out, DigiSign keeps its account's default
  reminders, and the envelope's audit trail says so (``envelope.provider_reminders_refused``).
* **States (C6, C7, C10).** ``withdrawn`` is our ``cancelled`` (with the withdrawal's reason); a
  recipient ``nonDelivered`` is our ``undeliverable``; an envelope DigiSign answers 404 for is
  ``gone`` (``envelopeDeleted`` is subscribed to); a state this module does not know is logged as an
  error and reported ``unknown`` — never taken as ``sent``.
* **Archive (C8).** Each document's own signed PDF from ``…/documents/{d}/download`` plus the audit
  log (``output=only_log``); ``combined`` (all documents merged) is not an archive of each.
* **Drafts (C11).** An API key without the permission to DELETE (403) discards the draft instead.
* **State errors (C16).** A 400 whose violations name no field, on cancel, extend or remind, is our
  ``InvalidStateError`` (409 ``invalid_state``) with DigiSign's text.

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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from adapters._pdf.geometry import frame_of_page
from esign_gateway.errors import InvalidStateError, ProviderError, ValidationFailedError
from esign_gateway.ports import (
    CeremonyHost,
    InboundEvent,
    InvalidWebhook,
    RemoteEnvelope,
    RemoteHandle,
    RemoteNote,
    RemoteResult,
    RemoteSigner,
    RemoteSignerState,
    RemoteState,
    SignatureRequest,
    SignedPdf,
    StampPlacement,
)

from .client import DigiSignClient, DigiSignError, DigiSignInvalid, DigiSignUncertain

__all__ = [
    "AUTHENTICATION_METHODS", "ENVELOPE_STATES", "EVENTS", "NOTIFICATION_TYPES", "RECIPIENT_STATES",
    "DigiSignProvider", "tag_box",
]

log = structlog.get_logger(__name__)

ENVELOPE_STATES = {
    "draft": "sent", "sent": "sent", "correction": "sent", "completed": "completed", "declined": "declined",
    "disapproved": "declined", "expired": "expired", "cancelled": "cancelled", "withdrawn": "cancelled",
}
"""DigiSign's envelope states → ours (``draft``: our send job has not reached DigiSign yet). Any other
state is ``unknown``."""
RECIPIENT_STATES = {
    "draft": "waiting", "sent": "notified", "nonDelivered": "undeliverable", "delivered": "viewed",
    "signed": "signed", "declined": "declined", "disapproved": "declined", "authFailed": "auth_failed",
    "cancelled": "notified",
}
EVENTS = (
    "envelopeSent", "envelopeCompleted", "envelopeExpired", "envelopeDeclined", "envelopeDisapproved",
    "envelopeCancelled", "envelopeDeleted", "recipientSent", "recipientDelivered", "recipientNonDelivered",
    "recipientAuthFailed", "recipientSigned", "recipientDeclined", "recipientDisapproved",
)
"""The webhook events we subscribe to (one DigiSign webhook each)."""
BEFORE_EXPIRY, AFTER_SENT = "toSignBeforeExpires", "toSignAfterSent"
NOTIFICATION_TYPES = (AFTER_SENT, BEFORE_EXPIRY)
AUTHENTICATION_METHODS = ("sms",)
"""The recipients' ``authenticationOnOpen`` values this adapter sends."""
_FIELDS = {"email": "email", "mobile": "phone", "name": "name", "xPosition": "x", "yPosition": "y",
           "placeholder": "anchor"}

TAG_W, TAG_H = 156, 60
"""DigiSign's signature tag, 55 × 21 mm (notes C9): the size of a tag placed without a placement."""
TAG_MARGIN, TAG_GAP = 24, 8
PLACEHOLDER_POSITIONING = "bottom_left"
"""The tag's bottom-left corner on the placeholder's: the one value of ``positioning`` the notes show."""
_EPS = 1e-6
LIST_PAGE, LIST_PAGES = 100, 5
"""Finding our envelope again reads at most this many newest envelopes (pages × size)."""
EXPIRY_TOLERANCE = timedelta(seconds=60)
"""DigiSign's ``validTo`` within this of ours is ours (it may count from its own clock)."""

Found = Callable[[], Awaitable[dict[str, Any] | None]]


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _id_of(value: Any) -> str | None:
    """The id in a relation, given as an IRI (``/api/…/{id}``) or embedded (``{"id": …}``)."""
    if isinstance(value, dict):
        return str(value["id"]) if value.get("id") else _id_of((value.get("_links") or {}).get("self"))
    if isinstance(value, str) and value:
        return value.rstrip("/").rsplit("/", 1)[-1]
    return None


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _same_moment(theirs: datetime | None, ours: datetime) -> bool:
    return theirs is not None and theirs.tzinfo is not None and abs(theirs - ours) <= EXPIRY_TOLERANCE


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

    # ------------------------------------------------------------------ helpers
    async def _post(self, path: str, body: dict[str, Any], found: Found, *, repeat: bool = True) -> Any:
        """POST once; after a lost answer, what ``found`` reads back is the answer, and the POST is
        repeated (once, unless not ``repeat``) only when it is not there (C5)."""
        try:
            return await self.client.call("POST", path, json=body)
        except DigiSignUncertain:
            again = await found()
            if again is not None:
                log.info("digisign_post_found_after_lost_answer", path=path)
                return again
            if not repeat:
                raise
            return await self.client.call("POST", path, json=body)

    async def _items(self, path: str) -> list[dict[str, Any]]:
        listing = await self.client.call("GET", path, params={"itemsPerPage": str(LIST_PAGE)})
        return [i for i in (listing.get("items") or []) if isinstance(i, dict)] if isinstance(listing, dict) else []

    async def _ours(self, envelope_id: str) -> list[dict[str, Any]]:
        """Listed envelopes whose own ``metadata`` is our envelope id, newest first (C1: the filter
        is asked for, but whatever the listing holds is compared here), trashed drafts left out."""
        mine: list[dict[str, Any]] = []
        for page in range(1, LIST_PAGES + 1):
            listing = await self.client.call("GET", "/api/envelopes", params={
                "metadata[eq]": envelope_id, "order[createdAt]": "DESC", "itemsPerPage": str(LIST_PAGE),
                "page": str(page),
            })
            items = [i for i in (listing.get("items") or []) if isinstance(i, dict)]
            mine += [i for i in items if i.get("metadata") == envelope_id and not i.get("discardedAt")]
            if mine or len(items) < LIST_PAGE or page * LIST_PAGE >= int(listing.get("count") or 0):
                break
        return mine

    # ------------------------------------------------------------------ send
    async def prepare(self, envelope: RemoteEnvelope) -> RemoteHandle:
        for item in await self._ours(envelope.envelope_id):
            if item["status"] != "draft":  # an earlier attempt got as far as sending: it is ours
                return self._handle(await self.client.call("GET", f"/api/envelopes/{item['id']}"))
            await self._remove(item["id"])  # half-built by an interrupted attempt: start again
        eid = await self._create(envelope)
        try:
            notes = await self._fill(f"/api/envelopes/{eid}", envelope)
            item = await self.client.call("GET", f"/api/envelopes/{eid}")
            if not _same_moment(_when(item.get("validTo")), envelope.expires_at):  # C3: not taken on create
                log.info("digisign_valid_to_not_taken", envelope_id=envelope.envelope_id,
                         valid_to=item.get("validTo"))
                await self.client.call("PUT", f"/api/envelopes/{eid}", json={
                    "validTo": _stamp(envelope.expires_at)})
                item = await self.client.call("GET", f"/api/envelopes/{eid}")
        except BaseException:
            await self.discard(eid)
            raise
        return self._handle(item, notes)

    async def _create(self, envelope: RemoteEnvelope) -> str:
        days = max(1, math.ceil((envelope.expires_at - self.client.clock()).total_seconds() / 86400))
        body = {
            "name": envelope.name, "emailBody": envelope.message or envelope.name, "language": envelope.language,
            "expiration": days, "validTo": _stamp(envelope.expires_at), "metadata": envelope.envelope_id,
        }

        async def found() -> dict[str, Any] | None:
            return next((i for i in await self._ours(envelope.envelope_id) if i["status"] == "draft"), None)

        created = await self._post("/api/envelopes", body, found)
        return str(created["id"])

    async def _fill(self, iri: str, envelope: RemoteEnvelope) -> list[RemoteNote]:
        docs = []
        for i, (name, content) in enumerate(envelope.documents):
            ours = envelope.document_ids[i] if i < len(envelope.document_ids) else None
            try:
                file = await self.client.upload(name, content)
                file_iri = f"/api/files/{file['id']}"

                async def doc_found(file_iri: str = file_iri, ours: str | None = ours) -> dict[str, Any] | None:
                    item = await self.client.call("GET", iri)
                    return next((d for d in item.get("documents") or []
                                 if (ours and d.get("metadata") == ours) or _id_of(d.get("file")) == _id_of(file_iri)),
                                None)

                docs.append(await self._post(f"{iri}/documents", {"name": name, "file": file_iri, "metadata": ours},
                                             doc_found))
            except DigiSignInvalid as exc:
                raise _invalid(exc, f"documents[{i}]") from None
        recipients = []
        for i, s in enumerate(envelope.signers):

            async def rec_found(signer_id: str = s.signer_id) -> dict[str, Any] | None:
                return next((r for r in await self._items(f"{iri}/recipients") if r.get("metadata") == signer_id),
                            None)

            try:
                recipients.append(await self._post(f"{iri}/recipients", {
                    "role": "signer", "name": s.name, "email": s.email, "mobile": s.phone, "signingOrder": s.order,
                    "language": envelope.language, "authenticationOnOpen": AUTHENTICATION_METHODS[0],
                    "channelForSigner": "email", "metadata": s.signer_id,
                }, rec_found))
            except DigiSignInvalid as exc:
                raise _invalid(exc, f"signers[{i}]") from None
        last_pages: dict[int, tuple[int, float, float]] = {}  # read only for signers without placements
        for i, (signer, rec) in enumerate(zip(envelope.signers, recipients, strict=True)):
            await self._tag(iri, envelope, docs, i, signer, f"{iri}/recipients/{rec['id']}", last_pages)
        return await self._reminders(iri, envelope)

    async def _reminders(self, iri: str, envelope: RemoteEnvelope) -> list[RemoteNote]:
        """Our planned reminders as DigiSign notifications; the ones it refuses are left out (C2)."""
        wanted = [(BEFORE_EXPIRY, days) for days in sorted(set(envelope.reminder_days_before_expiry))]
        if envelope.reminder_every_days:
            wanted.append((AFTER_SENT, int(envelope.reminder_every_days)))
        refused: list[dict[str, Any]] = []
        texts: list[str] = []
        for kind, days in wanted:

            async def found(kind: str = kind, days: int = days) -> dict[str, Any] | None:
                return next((n for n in await self._items(f"{iri}/notifications")
                             if n.get("type") == kind and n.get("days") == days), None)

            try:
                await self._post(f"{iri}/notifications", {"type": kind, "days": days}, found)
            except DigiSignInvalid as exc:
                log.warning("digisign_reminder_refused", envelope_id=envelope.envelope_id, type=kind, days=days,
                            detail=exc.text)
                refused.append({"type": kind, "days": days})
                texts.append(exc.text)
        if not refused:
            return []
        return [RemoteNote("envelope.provider_reminders_refused", {
            "refused": refused, "detail": "; ".join(dict.fromkeys(texts)),
            "consequence": "DigiSign sends the reminders of its account's defaults instead",
        })]

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

            async def found(doc_id: str = doc["id"], page: int = page, x: int = x, y: int = y) -> dict[str, Any] | None:
                return next((t for t in await self._items(f"{iri}/tags")
                             if _id_of(t.get("recipient")) == _id_of(recipient) and _id_of(t.get("document")) == doc_id
                             and (t.get("page"), t.get("xPosition"), t.get("yPosition")) == (page, x, y)), None)

            try:
                await self._post(f"{iri}/tags", {
                    "type": "signature", "document": f"{iri}/documents/{doc['id']}", "recipient": recipient,
                    "page": page, "xPosition": x, "yPosition": y, "width": w, "height": h,
                }, found)
            except DigiSignInvalid as exc:
                raise _invalid(exc, f"signers[{i}].fields", where=f"documents[{d}]") from None

    async def _by_placeholder(
        self, iri: str, recipient: str, placeholder: str, envelope: RemoteEnvelope, i: int
    ) -> bool:
        async def found() -> dict[str, Any] | None:  # not repeated unless it can be seen not to have happened
            return next((t for t in await self._items(f"{iri}/tags")
                         if _id_of(t.get("recipient")) == _id_of(recipient) and t.get("placeholder") == placeholder),
                        None)

        try:
            await self._post(f"{iri}/tags/by-placeholder", {
                "recipient": recipient, "type": "signature", "placeholder": placeholder,
                "positioning": PLACEHOLDER_POSITIONING,
            }, found, repeat=False)
        except DigiSignInvalid as exc:
            log.warning("digisign_placeholder_refused", envelope_id=envelope.envelope_id, signer=i,
                        placeholder=placeholder, detail=exc.detail)
            return False
        return True

    async def send(self, ref: str, expires_at: datetime | None = None) -> list[RemoteNote]:
        item = await self.client.call("GET", f"/api/envelopes/{ref}")
        if item["status"] == "draft":
            try:
                await self.client.call("POST", f"/api/envelopes/{ref}/send")
            except DigiSignUncertain:  # C5: read back; never a second (billed) send on a lost answer
                if (await self.client.call("GET", f"/api/envelopes/{ref}"))["status"] == "draft":
                    raise ProviderError("DigiSign did not confirm the send; it is looked at again before any "
                                        "other attempt.") from None
            except DigiSignInvalid as exc:
                if not exc.is_state:
                    raise _invalid(exc, "") from None
                if (await self.client.call("GET", f"/api/envelopes/{ref}"))["status"] == "draft":
                    raise _invalid(exc, "") from None  # refused, and not because it was sent meanwhile
            item = await self.client.call("GET", f"/api/envelopes/{ref}")
        return [] if expires_at is None else await self._align_expiry(ref, item, expires_at)

    async def _align_expiry(self, ref: str, item: dict[str, Any], ours: datetime) -> list[RemoteNote]:
        """C3/C4: DigiSign's ``validTo`` read back; moved with ``extend`` when it is not ours; a
        difference that remains is a note, never taken as done."""
        if _same_moment(_when(item.get("validTo")), ours):
            return []
        log.info("digisign_valid_to_differs", envelope_ref=ref, valid_to=item.get("validTo"), ours=_stamp(ours))
        try:
            await self.client.call("PUT", f"/api/envelopes/{ref}/extend", json={"validTo": _stamp(ours)})
        except DigiSignInvalid as exc:
            log.warning("digisign_extend_refused", envelope_ref=ref, detail=exc.text)
        item = await self.client.call("GET", f"/api/envelopes/{ref}")
        theirs = item.get("validTo")
        if _same_moment(_when(theirs), ours):
            return []
        return [RemoteNote("envelope.provider_expiry_mismatch", {
            "expires_at": _stamp(ours), "provider_expires_at": theirs if isinstance(theirs, str) else None,
        })]

    async def discard(self, ref: str) -> None:
        with contextlib.suppress(ProviderError, DigiSignInvalid):  # best effort: a draft costs nothing
            await self._remove(ref)

    async def _remove(self, ref: str) -> None:
        """Delete a draft of ours; with an API key that may not delete (403), discard it (C11)."""
        try:
            await self.client.call("DELETE", f"/api/envelopes/{ref}")
        except DigiSignError as exc:
            if exc.status == 404:
                return
            if exc.status != 403:
                raise
            log.info("digisign_delete_forbidden_discarding", envelope_ref=ref)
            await self.client.call("POST", f"/api/envelopes/{ref}/discard", json={}, retry=True)

    @staticmethod
    def _handle(item: dict[str, Any], notes: list[RemoteNote] | None = None) -> RemoteHandle:
        refs = {r["metadata"]: r["id"] for r in item.get("recipients", []) if r.get("metadata")}
        return RemoteHandle(item["id"], refs, tuple(notes or ()))

    # ------------------------------------------------------------------ follow
    async def fetch(self, ref: str) -> RemoteState:
        try:
            item = await self.client.call("GET", f"/api/envelopes/{ref}")
        except DigiSignError as exc:
            if exc.status == 404:  # deleted at DigiSign (C10); the core decides when to believe it
                return RemoteState(ref=ref, status="gone", signers=[])
            raise
        raw = str(item.get("status"))
        status = ENVELOPE_STATES.get(raw)
        if status is None:  # C6: never taken as sent
            log.error("digisign_unknown_envelope_state", envelope_ref=ref, status=raw)
            status = "unknown"
        reason = _withdrawal_reason(item) if raw == "withdrawn" else None
        signers = []
        for r in item.get("recipients", []):
            if r.get("role", "signer") != "signer":
                continue
            mapped = RECIPIENT_STATES.get(str(r.get("status")))
            if mapped is None:
                log.error("digisign_unknown_recipient_state", envelope_ref=ref, recipient_ref=r.get("id"),
                          status=r.get("status"))
                continue
            signers.append(RemoteSignerState(
                ref=r["id"], status=mapped,
                at=_when(r.get("signedAt") or r.get("declinedAt") or r.get("authFailedAt") or r.get("nonDeliveredAt")
                         or r.get("deliveredAt") or r.get("sentAt")),
                decline_reason=r.get("declineReason"), viewed_at=_when(r.get("deliveredAt")),
                delivery_error=r.get("nonDeliveryReason") if mapped == "undeliverable" else None,
            ))
        return RemoteState(ref=ref, status=status, signers=signers, at=_when(item.get(f"{raw}At")), reason=reason)

    async def cancel(self, ref: str, reason: str | None) -> None:
        item = await self.client.call("GET", f"/api/envelopes/{ref}")
        status = item["status"]
        if status == "draft":  # cancelled before our send job reached DigiSign
            await self.discard(ref)
            return
        if status in ("cancelled", "withdrawn"):
            return
        if status not in ("sent", "correction"):
            raise InvalidStateError(f"DigiSign: the envelope is {status} there; it cannot be cancelled.")
        try:
            await self.client.call("POST", f"/api/envelopes/{ref}/cancel", json={"reason": reason or ""})
        except DigiSignUncertain:
            if (await self.client.call("GET", f"/api/envelopes/{ref}"))["status"] not in ("cancelled", "withdrawn"):
                raise ProviderError("DigiSign did not confirm the cancellation.") from None
        except DigiSignInvalid as exc:
            raise _state(exc) from None

    async def extend(self, ref: str, expires_at: datetime) -> list[RemoteNote]:
        try:
            await self.client.call("PUT", f"/api/envelopes/{ref}/extend", json={"validTo": _stamp(expires_at)})
        except DigiSignInvalid as exc:
            raise _state(exc) from None
        item = await self.client.call("GET", f"/api/envelopes/{ref}")  # C4: read back, never assumed
        if _same_moment(_when(item.get("validTo")), expires_at):
            return []
        theirs = item.get("validTo")
        return [RemoteNote("envelope.provider_expiry_mismatch", {
            "expires_at": _stamp(expires_at), "provider_expires_at": theirs if isinstance(theirs, str) else None,
        })]

    async def remind(self, ref: str, signer_ref: str) -> None:
        try:
            await self.client.call("POST", f"/api/envelopes/{ref}/recipients/{signer_ref}/resend")
        except DigiSignUncertain:  # cannot be read back: a second e-mail to the signer is worse than none
            log.warning("digisign_resend_unconfirmed", envelope_ref=ref, recipient_ref=signer_ref)
        except DigiSignInvalid as exc:
            raise _state(exc) from None

    async def download(self, ref: str, document_ids: Sequence[str]) -> RemoteResult:
        """C8: every document's own download, matched by its ``metadata`` (our id), else by position."""
        item = await self.client.call("GET", f"/api/envelopes/{ref}")
        theirs = [d for d in item.get("documents") or [] if isinstance(d, dict)]
        by_meta = {d.get("metadata"): d for d in theirs if d.get("metadata")}
        documents: dict[str, bytes] = {}
        for i, ours in enumerate(document_ids):
            doc = by_meta.get(ours) or (theirs[i] if i < len(theirs) and not theirs[i].get("metadata") else None)
            if doc is None:
                raise ProviderError(f"DigiSign's envelope has no document for ours #{i + 1}.")
            pdf = await self.client.call("GET", f"/api/envelopes/{ref}/documents/{doc['id']}/download")
            if not (isinstance(pdf, bytes) and pdf.startswith(b"%PDF")):
                raise ProviderError(f"DigiSign's download of document #{i + 1} is not a PDF.")
            documents[ours] = pdf
        audit = await self.client.call("GET", f"/api/envelopes/{ref}/download", params={"output": "only_log"})
        if not (isinstance(audit, bytes) and audit.startswith(b"%PDF")):
            raise ProviderError("DigiSign's audit log download is not a PDF.")
        return RemoteResult(documents=documents, audit_log=audit)

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
            if not ref:
                raise KeyError("envelope")
            event = str(payload.get("event"))
            return InboundEvent(event_id=str(payload["id"]), envelope_ref=str(ref), type=event,
                                gone=event == "envelopeDeleted")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidWebhook("the body is not a DigiSign event") from None

    async def register_webhooks(self, url: str) -> list[dict[str, Any]]:
        """One DigiSign webhook per event we follow (DigiSign's rule), each with its own secret (C12).

        Returns every hook for ``url`` with its ``secret`` and what was done (``action``): ``created``;
        ``existing`` (its secret read back from the list or the hook itself); ``recreated`` (an existing
        hook whose secret DigiSign does not show: deleted and made again, so its secret is known)."""
        have = await self._items("/api/webhooks")
        out = []
        for event in EVENTS:
            hook = next((w for w in have if w.get("event") == event and w.get("url") == url), None)
            action = "existing"
            if hook is not None and not hook.get("secret"):
                hook = await self.client.call("GET", f"/api/webhooks/{hook['id']}")
            if hook is not None and not hook.get("secret"):
                await self.client.call("DELETE", f"/api/webhooks/{hook['id']}")
                hook, action = None, "recreated"
            if hook is None:

                async def found(event: str = event) -> dict[str, Any] | None:
                    return next((w for w in await self._items("/api/webhooks")
                                 if w.get("event") == event and w.get("url") == url and w.get("secret")), None)

                hook = await self._post("/api/webhooks", {"event": event, "url": url, "status": "enabled"}, found)
                action = "created" if action == "existing" else action
            out.append({**hook, "action": action})
        return out


def _withdrawal_reason(item: dict[str, Any]) -> str | None:
    """The reason of a withdrawn envelope: where the newer SDK's ``EnvelopeWithdrawal`` may keep it."""
    withdrawal = item.get("withdrawal")
    for value in ((withdrawal or {}).get("reason") if isinstance(withdrawal, dict) else None,
                  item.get("withdrawalReason"), item.get("withdrawReason"), item.get("cancelReason")):
        if isinstance(value, str) and value.strip():
            return value.strip()[:500]
    return "withdrawn at the provider"


def _state(exc: DigiSignInvalid) -> Exception:
    """C16: a refusal that names no field is about the state (409); one that names a field is a fault."""
    if exc.is_state:
        return InvalidStateError(f"DigiSign: {exc.text}")
    return ProviderError(f"DigiSign refused the request: {exc.text}")


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
