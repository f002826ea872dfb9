"""Webhook tables (registered with tortoise by name from esign_gateway.db.tortoise_config)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

__all__ = ["WebhookAttempt", "WebhookDelivery", "WebhookEndpoint"]


class WebhookEndpoint(Model):
    id = fields.CharField(pk=True, max_length=36)
    tenant_id = fields.CharField(max_length=36, unique=True)
    url = fields.CharField(max_length=2000)
    events = fields.JSONField(null=True)  # None: every event type
    secret_sealed = fields.TextField()
    previous_secret_sealed = fields.TextField(null=True)
    previous_valid_until = fields.DatetimeField(null=True)
    enabled = fields.BooleanField(default=True)
    disabled_reason = fields.CharField(max_length=300, null=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "webhook_endpoint"


class WebhookDelivery(Model):
    id = fields.CharField(pk=True, max_length=36)
    tenant_id = fields.CharField(max_length=36)
    endpoint_id = fields.CharField(max_length=36)
    event_id = fields.CharField(max_length=40)
    event_type = fields.CharField(max_length=48)
    envelope_id = fields.CharField(max_length=36, null=True)
    body = fields.TextField()
    status = fields.CharField(max_length=12)  # pending | succeeded | failed
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    last_status_code = fields.IntField(null=True)
    last_error = fields.CharField(max_length=500, null=True)
    created_at = fields.DatetimeField()
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_delivery"
        unique_together = (("endpoint_id", "event_id"),)
        indexes = (("tenant_id", "status"), ("tenant_id", "envelope_id"))


class WebhookAttempt(Model):
    id = fields.BigIntField(pk=True)
    delivery_id = fields.CharField(max_length=36, db_index=True)
    at = fields.DatetimeField()
    status_code = fields.IntField(null=True)
    error = fields.CharField(max_length=500, null=True)
    latency_ms = fields.IntField()

    class Meta:
        table = "webhook_attempt"
