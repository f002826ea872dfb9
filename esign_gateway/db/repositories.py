"""Mapping between the Envelope aggregate and its rows; audit chain and outbox writing.

``EnvelopeRepository.save`` is the one place where an aggregate's pending events become audit
rows (hash-chained) and outbox rows, inside the caller's transaction.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from esign_gateway.domain import audit_chain
from esign_gateway.domain.envelope import RETENTION_YEARS, Document, Envelope, Signer
from esign_gateway.domain.events import WEBHOOK_TYPES, DomainEvent
from esign_gateway.domain.ids import uuid7
from esign_gateway.domain.policy import UNSIGNED_RETENTION_DAYS
from esign_gateway.domain.states import EnvelopeStatus, SignerStatus
from esign_gateway.ports import StampPlacement
from esign_gateway.webhook_payloads import EnvelopeEventData, WebhookEnvelope, WebhookRecord, WebhookSigner

from .jobs import JobRepository
from .models import AuditEvent, DocumentRow, EnvelopeRow, OutboxEvent, SignerRow

__all__ = ["ConcurrentUpdate", "EnvelopeRepository", "chain_body", "outbox_event", "verify_chain", "write_outbox"]

_ENVELOPE_FIELDS = (
    "status", "sent_at", "expires_at", "completed_at", "ended_at", "cancel_reason", "retained_until",
    "reminders", "metadata", "name", "message", "language", "expires_in_days", "requested_expires_at",
    "provider_ref",
)
_SIGNER_FIELDS = (
    "status", "notified_at", "viewed_at", "verified_at", "signed_at", "declined_at", "decline_reason",
    "failed_attempts", "provider_ref", "delivery_error",
)
_DOCUMENT_FIELDS = ("current_sha256", "signed_sha256")


class ConcurrentUpdate(Exception):
    """The envelope changed since it was read (optimistic concurrency); retry the use case."""


def _to_domain(row: EnvelopeRow, docs: list[DocumentRow], signers: list[SignerRow]) -> Envelope:
    return Envelope(
        id=row.id,
        tenant_id=row.tenant_id,  # type: ignore[attr-defined]
        record_type=row.record_type,
        record_id=row.record_id,
        record_name=row.record_name,
        name=row.name,
        message=row.message,
        language=row.language,
        provider=row.provider,
        created_at=row.created_at,
        status=EnvelopeStatus(row.status),
        expires_in_days=row.expires_in_days,
        requested_expires_at=row.requested_expires_at,
        reminders=row.reminders,
        metadata=row.metadata,
        sent_at=row.sent_at,
        expires_at=row.expires_at,
        completed_at=row.completed_at,
        ended_at=row.ended_at,
        cancel_reason=row.cancel_reason,
        retained_until=row.retained_until,
        provider_ref=row.provider_ref,
        purged_at=row.purged_at,
        version=row.version,
        documents=[
            Document(
                id=d.id, name=d.name, pages=d.pages, size=d.size, sha256=d.sha256,
                current_sha256=d.current_sha256, signed_sha256=d.signed_sha256, position=d.position,
                prepared_sha256=d.prepared_sha256,
                placements={k: StampPlacement.from_dict(v) for k, v in (d.placements or {}).items()},
            )
            for d in sorted(docs, key=lambda d: d.position)
        ],
        signers=[
            Signer(
                id=s.id, name=s.name, email=s.email, phone=s.phone, order=s.order,
                status=SignerStatus(s.status), position=s.position, notified_at=s.notified_at,
                viewed_at=s.viewed_at, verified_at=s.verified_at, signed_at=s.signed_at,
                declined_at=s.declined_at, decline_reason=s.decline_reason, failed_attempts=s.failed_attempts,
                provider_ref=s.provider_ref, delivery_error=s.delivery_error,
            )
            for s in sorted(signers, key=lambda s: s.position)
        ],
    )


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") and not isinstance(value, datetime) else value


class EnvelopeRepository:
    def __init__(
        self, conn: BaseDBAsyncClient, retention_years: int = RETENTION_YEARS,
        unsigned_retention_days: int = UNSIGNED_RETENTION_DAYS,
    ) -> None:
        self.conn = conn
        self.retention_years = retention_years
        self.unsigned_retention_days = unsigned_retention_days
        self._snapshots: dict[str, dict[str, Any]] = {}
        self._audit: dict[str, tuple[int, str]] = {}

    async def get(self, envelope_id: str, *, tenant_id: str | None = None, for_update: bool = False) -> Envelope | None:
        """Load one envelope; ``tenant_id`` scopes it (another tenant's id is simply not found)."""
        qs = EnvelopeRow.filter(id=envelope_id).using_db(self.conn)
        if tenant_id is not None:
            qs = qs.filter(tenant_id=tenant_id)
        if for_update and self.conn.capabilities.dialect == "postgres":
            qs = qs.select_for_update()
        row = await qs.first()
        if row is None:
            return None
        docs = await DocumentRow.filter(envelope_id=row.id).using_db(self.conn)
        signers = await SignerRow.filter(envelope_id=row.id).using_db(self.conn)
        return self._loaded(row, docs, signers)

    async def get_many(self, envelope_ids: list[str], *, tenant_id: str) -> list[Envelope]:
        """Load several envelopes of one tenant in three queries (not three per envelope), in the
        order of ``envelope_ids``; ids not found (or another tenant's) are left out."""
        rows = {r.id: r for r in await EnvelopeRow.filter(id__in=envelope_ids, tenant_id=tenant_id)
                .using_db(self.conn)}
        docs: dict[str, list[DocumentRow]] = {i: [] for i in rows}
        signers: dict[str, list[SignerRow]] = {i: [] for i in rows}
        for d in await DocumentRow.filter(envelope_id__in=list(rows)).using_db(self.conn):
            docs[d.envelope_id].append(d)  # type: ignore[attr-defined]
        for s in await SignerRow.filter(envelope_id__in=list(rows)).using_db(self.conn):
            signers[s.envelope_id].append(s)  # type: ignore[attr-defined]
        return [self._loaded(rows[i], docs[i], signers[i]) for i in envelope_ids if i in rows]

    def _loaded(self, row: EnvelopeRow, docs: list[DocumentRow], signers: list[SignerRow]) -> Envelope:
        env = _to_domain(row, docs, signers)
        env.retention_years = self.retention_years
        self._snapshots[env.id] = _snapshot(env)
        self._audit[env.id] = (row.audit_seq, row.audit_head or audit_chain.GENESIS)
        return env

    async def add(self, env: Envelope, tenant_id: str) -> None:
        await EnvelopeRow.create(
            using_db=self.conn,
            id=env.id, tenant_id=tenant_id, record_type=env.record_type, record_id=env.record_id,
            record_name=env.record_name, name=env.name, message=env.message, language=env.language,
            provider=env.provider, status=env.status.value, created_at=env.created_at,
            expires_in_days=env.expires_in_days, requested_expires_at=env.requested_expires_at,
            reminders=env.reminders, metadata=env.metadata, version=env.version,
        )
        for d in env.documents:
            await DocumentRow.create(
                using_db=self.conn, id=d.id, envelope_id=env.id, position=d.position, name=d.name,
                pages=d.pages, size=d.size, sha256=d.sha256, current_sha256=d.current_sha256,
                prepared_sha256=d.prepared_sha256,
                placements={k: p.as_dict() for k, p in d.placements.items()} or None,
            )
        for s in env.signers:
            await SignerRow.create(
                using_db=self.conn, id=s.id, envelope_id=env.id, position=s.position, name=s.name,
                email=s.email, phone=s.phone, order=s.order, status=s.status.value,
            )
        self._snapshots[env.id] = _snapshot(env)
        self._audit[env.id] = (0, audit_chain.GENESIS)
        await self.save(env, bump=False)

    async def save(self, env: Envelope, *, bump: bool = True) -> None:
        """Persist changed fields, then append pending events to audit trail and outbox."""
        before = self._snapshots[env.id]
        after = _snapshot(env)
        seq, head = self._audit[env.id]
        events, env.events = env.events, []
        rows = []
        seqs: list[int] = []
        for event in events:
            seq += 1
            seqs.append(seq)
            salt = secrets.token_hex(16) if (event.ip or event.user_agent) else None
            body = chain_body(
                env.id, seq, event.type, event.at, event.actor, event.signer_id, event.data,
                audit_chain.pii_commitment(salt, event.ip, event.user_agent) if salt else None,
            )
            digest = audit_chain.link_hash(head, body)
            rows.append(
                AuditEvent(
                    envelope_id=env.id, tenant_id=env.tenant_id, seq=seq, type=event.type, at=event.at,
                    actor=event.actor, signer_id=event.signer_id, data=event.data,
                    pii_commitment=body["pii"], prev_hash=head, hash=digest, ip=event.ip,
                    user_agent=event.user_agent[:512] if event.user_agent else None, pii_salt=salt,
                    note=event.note[:500] if event.note else None,
                )
            )
            head = digest
        env_changes = {k: after["env"][k] for k in _ENVELOPE_FIELDS if after["env"][k] != before["env"][k]}
        if bump or env_changes or rows:
            env_changes.update(audit_seq=seq, audit_head=head if seq else None)
            updated = (
                await EnvelopeRow.filter(id=env.id, version=env.version)
                .using_db(self.conn)
                .update(version=env.version + 1, **env_changes)
            )
            if updated != 1:
                raise ConcurrentUpdate(env.id)
            env.version += 1
        for sid, fields in after["signers"].items():
            changed = {k: v for k, v in fields.items() if v != before["signers"][sid][k]}
            if changed:
                await SignerRow.filter(id=sid).using_db(self.conn).update(**changed)
        for did, fields in after["docs"].items():
            changed = {k: v for k, v in fields.items() if v != before["docs"][did][k]}
            if changed:
                await DocumentRow.filter(id=did).using_db(self.conn).update(**changed)
        if rows:
            await AuditEvent.bulk_create(rows, using_db=self.conn)
            outbox = [_outbox_row(env, e, n) for e, n in zip(events, seqs, strict=True) if e.type in WEBHOOK_TYPES]
            await write_outbox(self.conn, outbox)
        if before["env"]["status"] != after["env"]["status"] and env.is_terminal:
            await self._plan_after_end(env)
        self._snapshots[env.id] = after
        self._audit[env.id] = (seq, head)

    async def _plan_after_end(self, env: Envelope) -> None:
        """An envelope just ended: seal its audit report, keep its signatures verifiable, and
        purge it when its retention ends (completed: ``retained_until``; unsigned: ``unsigned_retention_days``)."""
        assert env.ended_at is not None
        jobs = JobRepository(self.conn)
        await jobs.enqueue("audit_report", {"envelope_id": env.id}, env.ended_at, dedupe_key=f"audit_report:{env.id}")
        if env.status == EnvelopeStatus.COMPLETED and env.retained_until is not None:
            purge_at = env.retained_until
            await jobs.enqueue("send_completion", {"envelope_id": env.id}, env.ended_at,
                               dedupe_key=f"send_completion:{env.id}")
            await jobs.enqueue("lta_renewal", {"envelope_id": env.id}, env.ended_at + timedelta(days=1),
                               dedupe_key=f"lta_renewal:{env.id}:first")
        else:
            purge_at = env.ended_at + timedelta(days=self.unsigned_retention_days)
            if env.status in (EnvelopeStatus.DECLINED, EnvelopeStatus.EXPIRED):
                await jobs.enqueue("send_end_notice", {"envelope_id": env.id}, env.ended_at,
                                   dedupe_key=f"send_end_notice:{env.id}")
        await jobs.enqueue("retention_purge", {"envelope_id": env.id}, purge_at, dedupe_key=f"purge:{env.id}")

    async def last_manual_reminder(self, envelope_id: str) -> datetime | None:
        row = await EnvelopeRow.filter(id=envelope_id).using_db(self.conn).only("id", "last_manual_reminder_at").first()
        return row.last_manual_reminder_at if row else None

    async def set_manual_reminder(self, envelope_id: str, when: datetime) -> None:
        await EnvelopeRow.filter(id=envelope_id).using_db(self.conn).update(last_manual_reminder_at=when)

    async def delete(self, env: Envelope) -> None:
        await EnvelopeRow.filter(id=env.id).using_db(self.conn).delete()
        await AuditEvent.filter(envelope_id=env.id).using_db(self.conn).delete()


def chain_body(
    envelope_id: str, seq: int, type_: str, at: datetime, actor: str, signer_id: str | None,
    data: dict[str, Any], pii: str | None,
) -> dict[str, Any]:
    """The hashed fields of one audit event (times normalised to UTC, so storage cannot change them)."""
    return {
        "envelope_id": envelope_id, "seq": seq, "type": type_, "at": at.astimezone(UTC).isoformat(),
        "actor": actor, "signer_id": signer_id, "data": data, "pii": pii,
    }


async def verify_chain(envelope_id: str) -> int | None:
    """Recompute an envelope's audit chain from storage: the seq of the first broken link, or None."""
    rows = await AuditEvent.filter(envelope_id=envelope_id).order_by("seq")
    links = [
        audit_chain.ChainLink(
            r.seq, chain_body(r.envelope_id, r.seq, r.type, r.at, r.actor, r.signer_id, r.data, r.pii_commitment),
            r.prev_hash, r.hash,
        )
        for r in rows
    ]
    broken = audit_chain.verify(links)
    if broken is not None:
        return broken
    head = await EnvelopeRow.filter(id=envelope_id).values_list("audit_seq", "audit_head")
    if head and rows and (head[0][0], head[0][1]) != (rows[-1].seq, rows[-1].hash):
        return min(int(head[0][0]), rows[-1].seq) + 1  # events cut off the end (or added beside the chain)
    for r in rows:  # personal data beside the chain must still match its commitment (unless erased)
        if not r.pii_salt or not (r.ip or r.user_agent):
            continue
        if audit_chain.pii_commitment(r.pii_salt, r.ip, r.user_agent) != r.pii_commitment:
            return r.seq
    return None


def _snapshot(env: Envelope) -> dict[str, Any]:
    return {
        "env": {k: _plain(getattr(env, k)) for k in _ENVELOPE_FIELDS},
        "signers": {s.id: {k: _plain(getattr(s, k)) for k in _SIGNER_FIELDS} for s in env.signers},
        "docs": {d.id: {k: getattr(d, k) for k in _DOCUMENT_FIELDS} for d in env.documents},
    }


def _outbox_row(env: Envelope, event: DomainEvent, sequence: int) -> OutboxEvent:
    signer = env.signer(event.signer_id) if event.signer_id else None
    data = EnvelopeEventData(
        envelope=WebhookEnvelope(
            id=env.id, status=env.status.value, name=env.name, metadata=env.metadata,
            record=WebhookRecord(type=env.record_type, id=env.record_id, name=env.record_name),
            sent_at=env.sent_at, expires_at=env.expires_at, completed_at=env.completed_at, version=env.version,
        ),
        signer=WebhookSigner(id=signer.id, name=signer.name, status=signer.status.value, order=signer.order,
                             decline_reason=signer.decline_reason) if signer else None,
        sequence=sequence,
    )
    return outbox_event(env.tenant_id, env.id, event.type, event.at,
                        data.model_dump(mode="json", exclude={"signer"} if signer is None else None))


def outbox_event(
    tenant_id: str, envelope_id: str | None, type_: str, at: datetime, data: dict[str, Any]
) -> OutboxEvent:
    """One CRM event (SPEC §9 body: ``{id, type, created_at, data}``), not yet written."""
    event_id = f"evt_{uuid7().hex}"
    return OutboxEvent(
        id=event_id, tenant_id=tenant_id, envelope_id=envelope_id, type=type_, created_at=at,
        payload={"id": event_id, "type": type_, "created_at": at.isoformat().replace("+00:00", "Z"), "data": data},
    )


async def write_outbox(conn: BaseDBAsyncClient, events: list[OutboxEvent]) -> None:
    """Write CRM events in the caller's transaction with one job that dispatches them (at least once)."""
    if not events:
        return
    await OutboxEvent.bulk_create(events, using_db=conn)
    await JobRepository(conn).enqueue(
        "dispatch_event", {"event_ids": [row.id for row in events]}, min(row.created_at for row in events)
    )
