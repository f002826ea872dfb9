"""Domain events. One string per event type serves the audit trail, the webhook and the log.

Types are ``<noun>.<past participle>``. ``WEBHOOK_TYPES`` are the ones a CRM receives (SPEC §9);
every event lands in the hash-chained audit trail. ``data`` is hashed into the chain, so it holds
facts of our own making only (ids, channels, counts, hashes) — never text someone else wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["WEBHOOK_TYPES", "DomainEvent"]

WEBHOOK_TYPES = frozenset(
    {
        "envelope.sent",
        "signer.viewed",
        "signer.signed",
        "signer.declined",
        "signer.auth_failed",
        "signer.undeliverable",
        "envelope.completed",
        "envelope.declined",
        "envelope.expired",
        "envelope.cancelled",
        "envelope.reminder_sent",
        "usage.threshold",
    }
)


@dataclass(frozen=True, slots=True)
class DomainEvent:
    type: str
    at: datetime
    signer_id: str | None = None
    actor: str = "system"
    """``api`` (the CRM), ``signer``, ``system`` (worker), ``provider`` or ``support`` (the command line)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Non-personal facts only (hashed into the audit chain)."""
    ip: str | None = None
    user_agent: str | None = None
    """Personal data: stored beside the chain, committed to by a salted hash."""
    note: str | None = None
    """Free text from outside (a mail server's answer): stored beside the chain, not hashed and not
    committed to, with e-mail addresses masked; ``gdpr erase`` and the retention purge clear it."""
