"""The bodies of the webhooks a CRM receives (SPEC §9): built from these models, and documented
from them (OpenAPI's ``webhooks``), so the two cannot differ."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

__all__ = ["EnvelopeEventData", "UsageEventData", "WebhookEnvelope", "WebhookEvent", "WebhookRecord",
           "WebhookSigner", "WebhookUsage", "WebhookUsageEvent"]


class WebhookRecord(BaseModel):
    type: str
    id: str
    name: str | None


class WebhookEnvelope(BaseModel):
    id: str
    status: str
    record: WebhookRecord
    name: str
    metadata: dict[str, Any]
    sent_at: datetime | None
    expires_at: datetime | None
    completed_at: datetime | None
    version: int
    """Grows with every change: a CRM can drop stale events."""


class WebhookSigner(BaseModel):
    id: str
    name: str
    status: str
    order: int
    decline_reason: str | None = None
    """Set on ``signer.declined``: what the signer wrote."""


class EnvelopeEventData(BaseModel):
    envelope: WebhookEnvelope
    signer: WebhookSigner | None = None
    """Set on ``signer.*`` events."""
    sequence: int
    """Per envelope, strictly increasing: orders events that arrive out of order."""


class WebhookEvent(BaseModel):
    """An envelope's or a signer's event."""

    id: str
    """The same on every retry (also the ``webhook-id`` header)."""
    type: str
    created_at: datetime
    data: EnvelopeEventData


class WebhookUsage(BaseModel):
    month: str
    threshold_percent: int
    documents_sent: int
    allowance: int
    remaining: int
    plan: str | None


class UsageEventData(BaseModel):
    usage: WebhookUsage


class WebhookUsageEvent(BaseModel):
    """``usage.threshold``: the month's sent documents crossed 75 % or 100 % of the allowance."""

    id: str
    type: str
    created_at: datetime
    data: UsageEventData
