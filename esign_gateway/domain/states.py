"""Envelope and signer states (SPEC §3) and the domain's own error."""

from __future__ import annotations

import enum

__all__ = ["TERMINAL", "EnvelopeStatus", "InvalidTransition", "SignerStatus"]


class EnvelopeStatus(enum.StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    COMPLETED = "completed"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL = frozenset(
    {EnvelopeStatus.COMPLETED, EnvelopeStatus.DECLINED, EnvelopeStatus.EXPIRED, EnvelopeStatus.CANCELLED}
)


class SignerStatus(enum.StrEnum):
    WAITING = "waiting"  # not yet their turn in sequential order
    NOTIFIED = "notified"
    VIEWED = "viewed"
    VERIFIED = "verified"  # SMS code accepted
    SIGNED = "signed"
    DECLINED = "declined"
    AUTH_FAILED = "auth_failed"  # too many wrong codes
    UNDELIVERABLE = "undeliverable"  # the invitation was refused permanently (e.g. no such mailbox)


SIGNER_CAN_ACT = frozenset({SignerStatus.NOTIFIED, SignerStatus.VIEWED, SignerStatus.VERIFIED})


class InvalidTransition(Exception):
    """The aggregate refuses a transition. ``reason`` is a stable word (e.g. ``expired``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
