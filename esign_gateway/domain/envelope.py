"""The Envelope aggregate: documents, signers, signing order, expiry — as pure Python.

Every transition takes ``now`` and appends :class:`DomainEvent` s to ``envelope.events``; the
unit of work writes them to the audit trail and the outbox in the same transaction as the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from esign_gateway.ports import StampPlacement

from .events import DomainEvent
from .masking import mask_addresses
from .otp import Tries
from .states import SIGNER_CAN_ACT, TERMINAL, EnvelopeStatus, InvalidTransition, SignerStatus

__all__ = [
    "DEFAULT_EXPIRY_DAYS",
    "DEFAULT_REMINDERS",
    "RETENTION_YEARS",
    "Document",
    "Envelope",
    "RemoteSignerFacts",
    "Signer",
]

DEFAULT_EXPIRY_DAYS = 7
DEFAULT_REMINDERS: dict[str, Any] = {"before_expiry_days": [1], "every_days": None}
RETENTION_YEARS = 3


@dataclass(slots=True)
class Document:
    id: str
    name: str
    pages: int
    size: int
    sha256: str
    """SHA-256 (hex) of the uploaded original; also its storage key."""
    current_sha256: str
    """The document as it stands: the original, then each signer's incremental update."""
    signed_sha256: str | None = None
    """Set at completion: the final signed version."""
    position: int = 0
    prepared_sha256: str | None = None
    """Set when the upload had to be repaired before signing (it carried no signature) or got a
    signature page: the file every signer signs. ``sha256`` stays the upload's."""
    placements: dict[str, StampPlacement] = field(default_factory=dict)
    """Signer id → where that signer's stamp goes on this document (placed at creation)."""


@dataclass(slots=True)
class Signer:
    id: str
    name: str
    email: str
    phone: str
    order: int
    status: SignerStatus = SignerStatus.WAITING
    position: int = 0
    notified_at: datetime | None = None
    viewed_at: datetime | None = None
    verified_at: datetime | None = None
    signed_at: datetime | None = None
    declined_at: datetime | None = None
    decline_reason: str | None = None
    failed_attempts: int = 0
    provider_ref: str | None = None
    """The provider's id of this signer (provider-run ceremonies)."""
    delivery_error: str | None = None
    """Why the invitation could not be delivered (``undeliverable``), e.g. the SMTP server's answer."""

    @property
    def can_act(self) -> bool:
        return self.status in SIGNER_CAN_ACT


@dataclass(slots=True)
class Envelope:
    id: str
    tenant_id: str
    record_type: str
    record_id: str
    record_name: str | None
    name: str
    message: str | None
    language: str
    provider: str
    created_at: datetime
    documents: list[Document]
    signers: list[Signer]
    status: EnvelopeStatus = EnvelopeStatus.DRAFT
    expires_in_days: int = DEFAULT_EXPIRY_DAYS
    requested_expires_at: datetime | None = None
    """An explicit ``expires_at`` from the create request (wins over ``expires_in_days``)."""
    reminders: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_REMINDERS))
    metadata: dict[str, Any] = field(default_factory=dict)
    sent_at: datetime | None = None
    expires_at: datetime | None = None
    completed_at: datetime | None = None
    ended_at: datetime | None = None
    cancel_reason: str | None = None
    retained_until: datetime | None = None
    provider_ref: str | None = None
    """The provider's id of this envelope (provider-run ceremonies)."""
    purged_at: datetime | None = None
    """Set when retention removed the documents and personal data (a tombstone remains)."""
    retention_years: int = RETENTION_YEARS
    """Policy, not state: how long a completed envelope is kept (``ESIGN_RETENTION_YEARS``)."""
    version: int = 0
    events: list[DomainEvent] = field(default_factory=list)

    # ------------------------------------------------------------------ queries
    def signer(self, signer_id: str) -> Signer:
        for s in self.signers:
            if s.id == signer_id:
                return s
        raise KeyError(signer_id)

    def document(self, document_id: str) -> Document:
        for d in self.documents:
            if d.id == document_id:
                return d
        raise KeyError(document_id)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def is_past_expiry(self, now: datetime) -> bool:
        return self.status == EnvelopeStatus.SENT and self.expires_at is not None and now >= self.expires_at

    def current_order(self) -> int | None:
        """The lowest ``order`` that still has signers who have not signed."""
        pending = [s.order for s in self.signers if s.status != SignerStatus.SIGNED]
        return min(pending) if pending else None

    def pending_signers(self) -> list[Signer]:
        """Signers whose turn it is and who still have to act (reminders go to these)."""
        return [s for s in self.signers if s.can_act]

    # ------------------------------------------------------------------ transitions
    def _event(self, type_: str, now: datetime, signer: Signer | None = None, **kw: Any) -> None:
        self.events.append(DomainEvent(type=type_, at=now, signer_id=signer.id if signer else None, **kw))

    def note(self, type_: str, now: datetime, signer: Signer | None = None, **kw: Any) -> None:
        """Record an audit-only fact (e-mail sent, code sent, …) with the state changes."""
        self._event(type_, now, signer, **kw)

    def _require(self, *allowed: EnvelopeStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(self.status.value, f"The envelope is {self.status.value}.")

    def ensure_signable(self, now: datetime) -> None:
        """Raise unless a signer may act now. Expiry is enforced here, whatever the sweep did."""
        if self.is_past_expiry(now):
            self.expire(now)
        if self.status != EnvelopeStatus.SENT:
            raise InvalidTransition(self.status.value, f"The envelope is {self.status.value}.")

    def send(self, now: datetime, actor: str = "api") -> list[Signer]:
        """draft → sent. Returns the signers to notify now (the lowest order)."""
        self._require(EnvelopeStatus.DRAFT)
        self.status = EnvelopeStatus.SENT
        self.sent_at = now
        if self.requested_expires_at is not None:
            if self.requested_expires_at <= now:
                raise InvalidTransition("expires_at_past", "expires_at is in the past.")
            self.expires_at = self.requested_expires_at
        else:
            self.expires_at = now + timedelta(days=self.expires_in_days)
        self._event(
            "envelope.sent",
            now,
            actor=actor,
            data={"expires_at": self.expires_at.isoformat(), "documents": [d.sha256 for d in self.documents]},
        )
        return self._notify_next(now)

    def _notify_next(self, now: datetime) -> list[Signer]:
        order = self.current_order()
        if order is None:
            return []
        notified = []
        for s in self.signers:
            if s.order == order and s.status == SignerStatus.WAITING:
                s.status = SignerStatus.NOTIFIED
                s.notified_at = now
                notified.append(s)
        return notified

    def mark_viewed(self, signer: Signer, now: datetime, ip: str | None, user_agent: str | None) -> None:
        self.ensure_signable(now)
        if signer.status == SignerStatus.NOTIFIED:
            signer.status = SignerStatus.VIEWED
            signer.viewed_at = now
            self._event("signer.viewed", now, signer, actor="signer", ip=ip, user_agent=user_agent)
        else:
            self._event("signer.opened", now, signer, actor="signer", ip=ip, user_agent=user_agent)

    def mark_verified(self, signer: Signer, now: datetime, ip: str | None, user_agent: str | None) -> None:
        self.ensure_signable(now)
        self._require_can_act(signer)
        signer.status = SignerStatus.VERIFIED
        signer.verified_at = now
        if signer.viewed_at is None:
            signer.viewed_at = now
        self._event(
            "signer.code_verified", now, signer, actor="signer", data={"method": "sms_code"},
            ip=ip, user_agent=user_agent,
        )

    def record_code_rejected(
        self, signer: Signer, now: datetime, *, tries: Tries, ip: str | None, user_agent: str | None
    ) -> bool:
        """Record a wrong code; ``tries`` are the signer's tries counting this one (the SMS-code
        policy, :mod:`esign_gateway.domain.otp`). Returns True when the signer is now ``auth_failed``."""
        signer.failed_attempts = tries.total
        self._event(
            "signer.code_rejected", now, signer, actor="signer",
            data={"failed_attempts": signer.failed_attempts}, ip=ip, user_agent=user_agent,
        )
        if tries.blocked:
            signer.status = SignerStatus.AUTH_FAILED
            self._event("signer.auth_failed", now, signer, data={"failed_attempts": signer.failed_attempts})
            return True
        return False

    def _require_can_act(self, signer: Signer) -> None:
        if not signer.can_act:
            raise InvalidTransition(f"signer_{signer.status.value}", f"The signer is {signer.status.value}.")

    def record_signature(
        self, signer: Signer, now: datetime, signed: dict[str, str], tsa_time: datetime | None,
        ip: str | None, user_agent: str | None,
    ) -> list[Signer]:
        """A verified signer's signature is on every document (``signed``: document id → sha256).

        Returns the signers who become due next (sequential order). Completes the envelope when
        everyone has signed.
        """
        self.ensure_signable(now)
        if signer.status != SignerStatus.VERIFIED:
            raise InvalidTransition(f"signer_{signer.status.value}", "The signer has not verified a code.")
        for doc in self.documents:
            doc.current_sha256 = signed[doc.id]
        signer.status = SignerStatus.SIGNED
        signer.signed_at = now
        self._event(
            "signer.signed", now, signer, actor="signer", ip=ip, user_agent=user_agent,
            data={
                "documents": {d.id: d.current_sha256 for d in self.documents},
                "tsa_time": tsa_time.isoformat() if tsa_time else None,
            },
        )
        if all(s.status == SignerStatus.SIGNED for s in self.signers):
            self._complete(now)
            return []
        if any(s.order == signer.order and s.status != SignerStatus.SIGNED for s in self.signers):
            return []
        return self._notify_next(now)

    def _complete(self, now: datetime) -> None:
        self.status = EnvelopeStatus.COMPLETED
        self.completed_at = now
        self.ended_at = now
        self.retained_until = _add_years(now, self.retention_years)
        for doc in self.documents:
            doc.signed_sha256 = doc.current_sha256
        self._event(
            "envelope.completed", now,
            data={"documents": {d.id: {"original": d.sha256, "signed": d.signed_sha256} for d in self.documents}},
        )

    def decline(self, signer: Signer, reason: str, now: datetime, ip: str | None, user_agent: str | None) -> None:
        self.ensure_signable(now)
        self._require_can_act(signer)
        signer.status = SignerStatus.DECLINED
        signer.declined_at = now
        signer.decline_reason = reason
        self._event("signer.declined", now, signer, actor="signer", ip=ip, user_agent=user_agent)
        self.status = EnvelopeStatus.DECLINED
        self.ended_at = now
        self._event("envelope.declined", now, data={"signer_id": signer.id})

    def mark_undeliverable(self, signer: Signer, reason: str, now: datetime) -> None:
        """The mail server refused the invitation for good: the signer cannot be reached this way.
        The envelope stays open so the sender can cancel it and send again to a right address."""
        if self.status != EnvelopeStatus.SENT or not signer.can_act:
            return
        signer.status = SignerStatus.UNDELIVERABLE
        signer.delivery_error = mask_addresses(reason)[:500]  # the server's answer quotes the address
        self._event("signer.undeliverable", now, signer, data={"channel": "email"}, note=signer.delivery_error)

    def cancel(self, reason: str | None, now: datetime) -> list[Signer]:
        """sent → cancelled. Returns the signers who had been told of it (they get a notice)."""
        if self.is_past_expiry(now):
            self.expire(now)
        self._require(EnvelopeStatus.SENT)
        self.status = EnvelopeStatus.CANCELLED
        self.cancel_reason = reason
        self.ended_at = now
        self._event("envelope.cancelled", now, actor="api")
        return [s for s in self.signers if s.notified_at is not None and s.status != SignerStatus.SIGNED]

    def extend(self, new_expires_at: datetime, now: datetime) -> None:
        """Move the expiry of a sent envelope (later or earlier, but into the future)."""
        if self.is_past_expiry(now):
            self.expire(now)
        self._require(EnvelopeStatus.SENT)
        if new_expires_at <= now:
            raise InvalidTransition("expires_at_past", "The new expiry must be in the future.")
        old = self.expires_at
        self.expires_at = new_expires_at
        self._event("envelope.extended", now, actor="api",
                    data={"from": old.isoformat() if old else None, "to": new_expires_at.isoformat()})

    def expire(self, now: datetime) -> None:
        if self.status != EnvelopeStatus.SENT or self.expires_at is None or now < self.expires_at:
            raise InvalidTransition(self.status.value, "The envelope is not due to expire.")
        self.status = EnvelopeStatus.EXPIRED
        self.ended_at = self.expires_at
        self._event("envelope.expired", now, data={"expires_at": self.expires_at.isoformat()})

    def apply_remote(
        self, status: str, at: datetime | None, signers: dict[str, RemoteSignerFacts], now: datetime,
        signed_documents: dict[str, str] | None = None, reason: str | None = None,
    ) -> None:
        """Bring an envelope of a provider-run ceremony up to what the provider reports.

        Facts only move forward (a late or repeated report changes nothing); a terminal envelope
        stays as it is. ``completed`` is applied only with ``signed_documents`` (document id → SHA-256
        of the signed PDF already in our archive): nobody sees ``completed`` before the result is ours.
        ``reason`` is the provider's for a ``cancelled`` envelope (withdrawn, deleted at the provider).
        Any other ``status`` (``sent``, or one the provider's adapter did not know) leaves it open.
        """
        if self.is_terminal:
            return
        for signer in self.signers:
            facts = signers.get(signer.id)
            if facts is None or _PROGRESS[facts.status] <= _PROGRESS[signer.status]:
                continue
            when = facts.at or now
            data = {"provider_at": when.isoformat()}
            if facts.status == SignerStatus.NOTIFIED:
                signer.status, signer.notified_at = SignerStatus.NOTIFIED, when
                self.note("signer.notified", now, signer, actor="provider", data=data)
                continue
            signer.notified_at = signer.notified_at or when
            if facts.viewed_at is not None and signer.viewed_at is None and facts.status != SignerStatus.VIEWED:
                # reported together with a later step: the CRM still learns that it was opened, in order
                signer.viewed_at = facts.viewed_at
                seen = {"provider_at": facts.viewed_at.isoformat()}
                self._event("signer.viewed", now, signer, actor="provider", data=seen)
            if facts.status == SignerStatus.VIEWED:
                signer.status, signer.viewed_at = SignerStatus.VIEWED, when
                self._event("signer.viewed", now, signer, actor="provider", data=data)
            elif facts.status == SignerStatus.SIGNED:
                signer.status, signer.signed_at = SignerStatus.SIGNED, when
                signer.viewed_at = signer.viewed_at or when
                self._event("signer.signed", now, signer, actor="provider", data=data)
            elif facts.status == SignerStatus.DECLINED:
                signer.status, signer.declined_at = SignerStatus.DECLINED, when
                signer.decline_reason = facts.decline_reason
                self._event("signer.declined", now, signer, actor="provider", data=data)
            elif facts.status == SignerStatus.AUTH_FAILED:
                signer.status = SignerStatus.AUTH_FAILED
                self._event("signer.auth_failed", now, signer, actor="provider", data=data)
            elif facts.status == SignerStatus.UNDELIVERABLE:  # as a mail server's refusal in our own ceremony
                signer.status = SignerStatus.UNDELIVERABLE
                signer.delivery_error = mask_addresses(facts.delivery_error)[:500] if facts.delivery_error else None
                self._event("signer.undeliverable", now, signer, actor="provider", data={**data, "channel": "email"},
                           note=signer.delivery_error)
        ended = at or now
        if status == "completed" and signed_documents is not None:
            for doc in self.documents:
                doc.current_sha256 = signed_documents[doc.id]
            self._complete(ended)
        elif status == "declined":
            self.status, self.ended_at = EnvelopeStatus.DECLINED, ended
            declined = next((s.id for s in self.signers if s.status == SignerStatus.DECLINED), None)
            self._event("envelope.declined", now, actor="provider", data={"signer_id": declined})
        elif status == "expired":
            self.status, self.ended_at = EnvelopeStatus.EXPIRED, ended
            self._event("envelope.expired", now, actor="provider",
                       data={"expires_at": self.expires_at.isoformat() if self.expires_at else None})
        elif status == "cancelled":
            self.status, self.ended_at = EnvelopeStatus.CANCELLED, ended
            self.cancel_reason = self.cancel_reason or reason
            self._event("envelope.cancelled", now, actor="provider", note=reason)


_PROGRESS = {
    SignerStatus.WAITING: 0, SignerStatus.NOTIFIED: 1, SignerStatus.VIEWED: 2, SignerStatus.VERIFIED: 3,
    SignerStatus.SIGNED: 4, SignerStatus.DECLINED: 4, SignerStatus.AUTH_FAILED: 4, SignerStatus.UNDELIVERABLE: 4,
}


@dataclass(frozen=True, slots=True)
class RemoteSignerFacts:
    """What a provider says of one signer, in our words."""

    status: SignerStatus
    at: datetime | None = None
    decline_reason: str | None = None
    viewed_at: datetime | None = None
    """When the signer opened the documents, if the provider says (it may report it only later)."""
    delivery_error: str | None = None
    """Why the provider could not deliver the invitation (``undeliverable``)."""


def _add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)
