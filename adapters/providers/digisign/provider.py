"""DigiSignProvider: the ceremony runs at DigiSign; we send, follow and archive.

DigiSign e-mails the link, checks the SMS code (``authenticationOnOpen: sms``) and signs. Our
envelope id travels as DigiSign's envelope ``metadata``, our signer id as the recipient's, so a
send interrupted half-way is found again instead of being sent twice (DigiSign bills per sent
envelope). Their words never leave this module: states are mapped onto ours here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from esign_gateway.errors import ProviderError, ValidationFailedError
from esign_gateway.ports import (
    CeremonyHost,
    InboundEvent,
    InvalidWebhook,
    RemoteEnvelope,
    RemoteHandle,
    RemoteResult,
    RemoteSignerState,
    RemoteState,
    SignatureRequest,
    SignedPdf,
)

from .client import DigiSignClient, DigiSignInvalid

__all__ = ["ENVELOPE_STATES", "EVENTS", "RECIPIENT_STATES", "DigiSignProvider"]

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
_FIELDS = {"email": "email", "mobile": "phone", "name": "name"}

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
        for doc in docs:
            for slot, rec in enumerate(recipients):
                await self.client.call("POST", f"{iri}/tags", json={
                    "type": "signature", "document": f"{iri}/documents/{doc['id']}",
                    "recipient": f"{iri}/recipients/{rec['id']}", "page": 1,
                    "xPosition": 60 + (slot % 2) * 260, "yPosition": 640 + (slot // 2) * 70,
                })
        for days in sorted(set(envelope.reminder_days_before_expiry)):
            await self.client.call("POST", f"{iri}/notifications", json={"type": "toSignBeforeExpires", "days": days})

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


def _invalid(exc: DigiSignInvalid, prefix: str) -> ValidationFailedError:
    errors = []
    for path, text in exc.violations or [("", exc.detail)]:
        name = _FIELDS.get(path, path)
        field = f"{prefix}.{name}" if prefix and name else (prefix or name or "body")
        errors.append({"field": field, "message": f"DigiSign: {text}"})
    return ValidationFailedError("DigiSign refused the envelope.", errors=errors)
