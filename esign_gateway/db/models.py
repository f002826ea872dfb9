"""Tables. No business rules here: the domain decides, repositories map.

Primary keys of envelopes, documents and signers are UUIDv7 strings (time-ordered), so the
newest-first listing walks the primary key index and cursors are plain ids.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

__all__ = [
    "ApiKey",
    "ApiUsage",
    "AuditEvent",
    "DocumentRow",
    "DownloadLink",
    "EnvelopeRow",
    "GatewaySecret",
    "IdempotencyKey",
    "InboundEvent",
    "Job",
    "OutboxEvent",
    "PlanChange",
    "ReminderLog",
    "SignerRow",
    "SupportAccess",
    "Tenant",
    "UsageCounter",
    "UsageRecord",
    "VerificationCode",
]


class Tenant(Model):
    id = fields.CharField(pk=True, max_length=36)
    name = fields.CharField(max_length=200)
    mode = fields.CharField(max_length=10, default="trial")  # trial | paid
    provider = fields.CharField(max_length=32, null=True)
    default_expires_in_days = fields.IntField(null=True)
    contact_email = fields.CharField(max_length=320, null=True)
    # The sender's contact: gets the completion e-mail with the envelope ID and the signed result.
    created_at = fields.DatetimeField()
    # Branding (operator CLI `tenant update`): the From display name, a logo (PNG/JPEG, validated and
    # re-encoded; served from /branding/…) and the accent colour (#rrggbb) of the page and the e-mails.
    display_name = fields.CharField(max_length=200, null=True)
    logo = fields.BinaryField(null=True)
    logo_type = fields.CharField(max_length=16, null=True)
    logo_sha256 = fields.CharField(max_length=64, null=True)
    accent_color = fields.CharField(max_length=7, null=True)

    class Meta:
        table = "tenant"


class ApiKey(Model):
    id = fields.CharField(pk=True, max_length=36)
    tenant: fields.ForeignKeyNullableRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="api_keys", null=True, on_delete=fields.CASCADE
    )
    role = fields.CharField(max_length=16)  # integration | support | operator
    prefix = fields.CharField(max_length=16, db_index=True)
    key_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_key"


class EnvelopeRow(Model):
    id = fields.CharField(pk=True, max_length=36)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="envelopes", on_delete=fields.CASCADE
    )
    record_type = fields.CharField(max_length=16)
    record_id = fields.CharField(max_length=128)
    record_name = fields.CharField(max_length=300, null=True)
    name = fields.CharField(max_length=300)
    message = fields.TextField(null=True)
    language = fields.CharField(max_length=2)
    provider = fields.CharField(max_length=32)
    provider_ref = fields.CharField(max_length=128, null=True, db_index=True)
    status = fields.CharField(max_length=16, db_index=True)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    expires_in_days = fields.IntField()
    requested_expires_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    cancel_reason = fields.TextField(null=True)
    retained_until = fields.DatetimeField(null=True)
    reminders = fields.JSONField()
    metadata = fields.JSONField()
    version = fields.IntField(default=0)
    # Optimistic concurrency: every state change bumps it with a conditional UPDATE.
    audit_head = fields.CharField(max_length=64, null=True)
    audit_seq = fields.IntField(default=0)
    last_manual_reminder_at = fields.DatetimeField(null=True)
    audit_report_sha256 = fields.CharField(max_length=64, null=True)
    purged_at = fields.DatetimeField(null=True)
    # Set when the retention job removed documents and personal data: the row is a tombstone.

    class Meta:
        table = "envelope"
        indexes = (("tenant_id", "record_type", "record_id"), ("tenant_id", "status"), ("tenant_id", "id"))


class DocumentRow(Model):
    id = fields.CharField(pk=True, max_length=36)
    envelope: fields.ForeignKeyRelation[EnvelopeRow] = fields.ForeignKeyField(
        "models.EnvelopeRow", related_name="documents", on_delete=fields.CASCADE
    )
    position = fields.IntField()
    name = fields.CharField(max_length=255)
    pages = fields.IntField()
    size = fields.BigIntField()
    sha256 = fields.CharField(max_length=64)
    current_sha256 = fields.CharField(max_length=64)
    signed_sha256 = fields.CharField(max_length=64, null=True)
    prepared_sha256 = fields.CharField(max_length=64, null=True)
    placements = fields.JSONField(null=True)
    """Signer id → StampPlacement.as_dict(); null for envelopes created before placements existed."""

    class Meta:
        table = "document"
        indexes = (("envelope_id", "position"),)


class SignerRow(Model):
    id = fields.CharField(pk=True, max_length=36)
    envelope: fields.ForeignKeyRelation[EnvelopeRow] = fields.ForeignKeyField(
        "models.EnvelopeRow", related_name="signers", on_delete=fields.CASCADE
    )
    position = fields.IntField()
    name = fields.CharField(max_length=200)
    email = fields.CharField(max_length=320)
    phone = fields.CharField(max_length=20)
    order = fields.IntField()
    status = fields.CharField(max_length=16)
    token_hash = fields.CharField(max_length=64, null=True, unique=True)
    token_sealed = fields.TextField(null=True)
    # The signer link token, Fernet-encrypted: reminders must send the same link again.
    notified_at = fields.DatetimeField(null=True)
    viewed_at = fields.DatetimeField(null=True)
    verified_at = fields.DatetimeField(null=True)
    signed_at = fields.DatetimeField(null=True)
    declined_at = fields.DatetimeField(null=True)
    decline_reason = fields.TextField(null=True)
    failed_attempts = fields.IntField(default=0)
    provider_ref = fields.CharField(max_length=128, null=True)
    delivery_error = fields.CharField(max_length=500, null=True)

    class Meta:
        table = "signer"
        indexes = (("envelope_id", "position"),)


class VerificationCode(Model):
    id = fields.CharField(pk=True, max_length=36)
    signer: fields.ForeignKeyRelation[SignerRow] = fields.ForeignKeyField(
        "models.SignerRow", related_name="codes", on_delete=fields.CASCADE
    )
    digest = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    attempts = fields.IntField(default=0)
    used_at = fields.DatetimeField(null=True)
    dead = fields.BooleanField(default=False)

    class Meta:
        table = "verification_code"
        indexes = (("signer_id", "created_at"),)


class AuditEvent(Model):
    # Append-only, hash-chained per envelope. ``ip``/``user_agent``/``pii_salt`` sit outside.

    id = fields.BigIntField(pk=True)
    envelope_id = fields.CharField(max_length=36)
    tenant_id = fields.CharField(max_length=36)
    seq = fields.IntField()
    type = fields.CharField(max_length=48)
    at = fields.DatetimeField()
    actor = fields.CharField(max_length=16)
    signer_id = fields.CharField(max_length=36, null=True)
    data = fields.JSONField()
    pii_commitment = fields.CharField(max_length=64, null=True)
    prev_hash = fields.CharField(max_length=64)
    hash = fields.CharField(max_length=64)
    ip = fields.CharField(max_length=64, null=True)
    user_agent = fields.CharField(max_length=512, null=True)
    pii_salt = fields.CharField(max_length=32, null=True)
    note = fields.CharField(max_length=500, null=True)
    # Free text beside the chain (e.g. a mail server's answer, addresses masked); gdpr erase clears it.

    class Meta:
        table = "audit_event"
        unique_together = (("envelope_id", "seq"),)


class OutboxEvent(Model):
    # CRM-facing events, written in the same transaction as the state change (SPEC §9).

    id = fields.CharField(pk=True, max_length=36)
    tenant_id = fields.CharField(max_length=36, db_index=True)
    envelope_id = fields.CharField(max_length=36, null=True)
    type = fields.CharField(max_length=48)
    created_at = fields.DatetimeField()
    payload = fields.JSONField()
    dispatched_at = fields.DatetimeField(null=True, db_index=True)

    class Meta:
        table = "outbox_event"


class Job(Model):
    # Durable background work. Claimed by due time; a lease makes a crashed job reappear.

    id = fields.BigIntField(pk=True)
    kind = fields.CharField(max_length=48)
    payload = fields.JSONField()
    status = fields.CharField(max_length=12, default="pending")  # pending | running | done | failed
    due_at = fields.DatetimeField()
    attempts = fields.IntField(default=0)
    max_attempts = fields.IntField(default=8)
    locked_until = fields.DatetimeField(null=True)
    locked_by = fields.CharField(max_length=64, null=True)
    last_error = fields.TextField(null=True)
    dedupe_key = fields.CharField(max_length=128, null=True, unique=True)
    created_at = fields.DatetimeField()
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "job"
        indexes = (("status", "due_at"),)


class ReminderLog(Model):
    # One row per (signer, reminder slot), written before the e-mail goes out: a slot is never
    # e-mailed twice, whatever the number of workers or a crash between two sends.
    id = fields.BigIntField(pk=True)
    envelope_id = fields.CharField(max_length=36, db_index=True)
    signer_id = fields.CharField(max_length=36)
    slot = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()

    class Meta:
        table = "reminder_log"
        unique_together = (("signer_id", "slot"),)


class DownloadLink(Model):
    # The link to the signed result of one completion for one recipient (a signer, or the sender's
    # contact keyed by the envelope id): minted once, shown again while valid, revocable. Looked up
    # by the token's SHA-256; the Fernet-sealed copy lets the page show the same link again.
    id = fields.BigIntField(pk=True)
    envelope_id = fields.CharField(max_length=36)
    recipient_id = fields.CharField(max_length=36)
    token_hash = fields.CharField(max_length=64, unique=True)
    token_sealed = fields.TextField()
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "download_link"
        unique_together = (("envelope_id", "recipient_id"),)


class GatewaySecret(Model):
    # Secrets the gateway must use again (e.g. the SMS-code pepper), Fernet-encrypted.

    name = fields.CharField(pk=True, max_length=64)
    sealed = fields.TextField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "gateway_secret"


class PlanChange(Model):
    # The plans a tenant held, append-only: each row a snapshot of the terms, effective from an
    # instant (a lowering is written ahead, effective on the 1st of next month in Prague).
    id = fields.BigIntField(pk=True)
    tenant_id = fields.CharField(max_length=36)
    code = fields.CharField(max_length=32)
    documents = fields.IntField()
    fee = fields.DecimalField(max_digits=12, decimal_places=2)
    daily_requests = fields.IntField()
    enabled = fields.BooleanField()
    effective_at = fields.DatetimeField()
    created_at = fields.DatetimeField()
    actor = fields.CharField(max_length=16)  # api | operator | system

    class Meta:
        table = "plan_change"
        indexes = (("tenant_id", "effective_at"),)


class UsageCounter(Model):
    # Documents sent per tenant and Prague month. The allowance check is one conditional UPDATE
    # of this row (``used + n <= allowance``), so concurrent sends cannot both take the last one.
    id = fields.BigIntField(pk=True)
    tenant_id = fields.CharField(max_length=36)
    month = fields.CharField(max_length=7)
    used = fields.IntField(default=0)

    class Meta:
        table = "usage_counter"
        unique_together = (("tenant_id", "month"),)


class UsageRecord(Model):
    # One row per sent document, written in the send's transaction: what the bill is made of.
    id = fields.BigIntField(pk=True)
    tenant_id = fields.CharField(max_length=36)
    envelope_id = fields.CharField(max_length=36)
    document_id = fields.CharField(max_length=36, unique=True)
    month = fields.CharField(max_length=7)
    at = fields.DatetimeField()

    class Meta:
        table = "usage_record"
        indexes = (("tenant_id", "month"),)


class ApiUsage(Model):
    # API requests per tenant and Prague day: the daily limit, shared by every web process.
    id = fields.BigIntField(pk=True)
    tenant_id = fields.CharField(max_length=36)
    day = fields.CharField(max_length=10)
    count = fields.IntField(default=0)

    class Meta:
        table = "api_usage"
        unique_together = (("tenant_id", "day"),)


class IdempotencyKey(Model):
    # One row per (tenant, Idempotency-Key): claimed before the work, completed in the work's own
    # transaction (so the effect and "it is done" commit together), replayed for 24 h.
    id = fields.CharField(pk=True, max_length=36)
    tenant_id = fields.CharField(max_length=36)
    key = fields.CharField(max_length=255)
    fingerprint = fields.CharField(max_length=64)
    status = fields.CharField(max_length=12)  # in_progress | done
    owner = fields.CharField(max_length=32)
    lease_until = fields.DatetimeField()
    envelope_id = fields.CharField(max_length=36, null=True)
    response_status = fields.IntField(null=True)
    response_body = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "idempotency_key"
        unique_together = (("tenant_id", "key"),)


class InboundEvent(Model):
    # Provider webhooks already taken in (deduplication by the provider's event id).
    id = fields.BigIntField(pk=True)
    provider = fields.CharField(max_length=32)
    event_id = fields.CharField(max_length=128)
    event_type = fields.CharField(max_length=64)
    envelope_ref = fields.CharField(max_length=128)
    received_at = fields.DatetimeField()

    class Meta:
        table = "inbound_event"
        unique_together = (("provider", "event_id"),)


class SupportAccess(Model):
    # Append-only: every support read of an envelope (who, when, why, from where, what).
    id = fields.BigIntField(pk=True)
    key_id = fields.CharField(max_length=36)
    envelope_id = fields.CharField(max_length=36, db_index=True)
    tenant_id = fields.CharField(max_length=36, null=True)
    action = fields.CharField(max_length=16)
    reason = fields.CharField(max_length=500)
    ip = fields.CharField(max_length=64, null=True)
    at = fields.DatetimeField()

    class Meta:
        table = "support_access"
