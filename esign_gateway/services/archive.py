"""Evidence that holds for years (SPEC §10): the sealed audit report, audit-chain verification,
timestamp renewal, retention with tombstones, support retrieval with an access log, and GDPR.

* **Audit report.** When an envelope ends, a job renders the report (envelope ID first, documents
  with both SHA-256, signers masked, the whole timeline in UTC and Prague time, the chain head)
  and seals it with the gateway's own certificate, B-LTA like the documents.
* **Renewal.** A completed envelope's signed PDFs get a fresh document timestamp before the TSA
  certificate of the newest one expires (``RENEW_BEFORE``), for as long as they are retained.
* **Retention.** Completed envelopes are kept until ``retained_until`` (3 years by default);
  unsigned ones 90 days (by default) after they ended. Then the document bytes, the report and the signers'
  personal data go; the row stays as a tombstone (ids, dates, hashes), answered with ``410``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from tortoise.expressions import Q

from esign_gateway.clock import Clock
from esign_gateway.db.models import (
    AuditEvent,
    DocumentRow,
    DownloadLink,
    EnvelopeRow,
    Job,
    SignerRow,
    SupportAccess,
    Tenant,
)
from esign_gateway.db.repositories import verify_chain
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.envelope import Envelope
from esign_gateway.domain.masking import mask_email, mask_phone
from esign_gateway.domain.states import EnvelopeStatus
from esign_gateway.errors import GoneError, InvalidStateError, NotFoundError, ProviderError
from esign_gateway.ports import (
    ArchiveStamper,
    AuditReport,
    CeremonyHost,
    DocumentStore,
    ReportDocument,
    ReportEvent,
    ReportRenderer,
    ReportSignature,
    ReportSigner,
    SignatureProvider,
    SignatureReader,
    SignatureRequest,
)

from .paging import Page, envelope_page

__all__ = ["RENEW_BEFORE", "ArchiveService", "ChainReport", "ErasureReport", "refuse_if_purged", "schedule_gc"]

log = structlog.get_logger(__name__)

RENEW_BEFORE = timedelta(days=90)
ERASED = "[erased]"


@dataclass(frozen=True, slots=True)
class ChainReport:
    envelope_id: str
    events: int
    broken_at: int | None


@dataclass(frozen=True, slots=True)
class ErasureReport:
    erased: list[str]
    """Envelope ids whose signer data for this e-mail was erased."""
    kept: list[tuple[str, str]]
    """(envelope id, why it is kept)."""


GC_GRACE = timedelta(days=1)
GC_INTERVAL = timedelta(days=1)


async def _referenced(key: str) -> bool:
    """Does any live envelope (not purged) still point at this blob?"""
    return await DocumentRow.filter(
        Q(sha256=key) | Q(prepared_sha256=key) | Q(current_sha256=key) | Q(signed_sha256=key),
        envelope__purged_at__isnull=True,
    ).exists() or await EnvelopeRow.filter(audit_report_sha256=key).exists()


async def schedule_gc(at: datetime) -> None:
    """The next daily blob collection (one per day, whatever the number of processes)."""
    async with UnitOfWork() as uow:
        await uow.jobs.enqueue("blob_gc", {}, at, dedupe_key=f"blob_gc:{at.date().isoformat()}")


def refuse_if_purged(env: Envelope) -> None:
    """``410 Gone`` for a tombstone, saying when it was purged."""
    if env.purged_at is not None:
        raise GoneError(
            f"Envelope {env.id} was purged on {env.purged_at.date().isoformat()} when its retention ended; "
            "its tombstone (dates and document hashes) remains.",
            extra={"purged_at": env.purged_at.isoformat(), "reason": "purged"},
        )


class ArchiveService:
    def __init__(
        self, *, clock: Clock, store: DocumentStore, renderer: ReportRenderer | None, sealer: SignatureProvider | None,
        providers: dict[str, SignatureProvider],
    ) -> None:
        """``renderer`` and ``sealer`` None: this process seals no audit report (the operator's
        commands, which verify chains and answer GDPR requests)."""
        self.clock = clock
        self.store = store
        self.renderer = renderer
        self.sealer = sealer
        self.providers = providers

    # ------------------------------------------------------------------ reading, for tenant and support
    async def load(self, envelope_id: str, tenant_id: str | None) -> Envelope:
        """The envelope (of ``tenant_id`` unless support reads it); ``410`` for a purged one."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id, tenant_id=tenant_id)
        if env is None:
            raise NotFoundError(f"No envelope {envelope_id}.")
        refuse_if_purged(env)
        return env

    async def trail(self, envelope_id: str) -> list[AuditEvent]:
        return list(await AuditEvent.filter(envelope_id=envelope_id).order_by("seq"))

    async def report_pdf(self, envelope_id: str, tenant_id: str | None) -> bytes:
        env = await self.load(envelope_id, tenant_id)
        if not env.is_terminal:
            raise InvalidStateError(
                f"The sealed audit report is made when the envelope ends; it is {env.status.value}. "
                "Ask with 'Accept: application/json' for the trail so far."
            )
        row = await EnvelopeRow.get(id=env.id)
        key = row.audit_report_sha256 or await self.seal_report(env.id)
        return await self.store.get(key)

    # ------------------------------------------------------------------ the audit report
    async def report_job(self, payload: dict[str, Any]) -> None:
        """Job ``audit_report``: seal the report of an ended envelope (once)."""
        row = await EnvelopeRow.filter(id=payload["envelope_id"]).only("id", "audit_report_sha256", "purged_at").first()
        if row is not None and row.audit_report_sha256 is None and row.purged_at is None:
            await self.seal_report(row.id)

    async def seal_report(self, envelope_id: str) -> str:
        now = self.clock.now()
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id)
        assert env is not None
        events = await self.trail(env.id)
        tenant = await Tenant.get(id=env.tenant_id)
        names = {s.id: s.name for s in env.signers}
        provider = self.providers.get(env.provider)
        by_provider = provider is not None and provider.ceremony is CeremonyHost.PROVIDER
        method = "provider" if by_provider else "email_sms"
        documents, found = await self._signature_facts(env)
        report = AuditReport(
            language=env.language, envelope_id=env.id, envelope_name=env.name, status=env.status.value,
            tenant_name=tenant.name,
            record=f"{env.record_type} {env.record_id}" + (f" — {env.record_name}" if env.record_name else ""),
            provider=env.provider, created_at=env.created_at, sent_at=env.sent_at, ended_at=env.ended_at,
            retained_until=env.retained_until,
            documents=documents,
            signers=[
                ReportSigner(s.name, mask_email(s.email), mask_phone(s.phone), method,
                             s.status.value, s.signed_at,
                             signature_level=found[s.id].level if s.id in found else None,
                             signature_time=found[s.id].timestamp if s.id in found else _trail_tsa_time(events, s.id),
                             decline_reason=s.decline_reason)
                for s in env.signers
            ],
            events=[
                ReportEvent(e.seq, e.at, e.type, e.actor, names.get(e.signer_id or ""), e.ip, e.user_agent)
                for e in events
            ],
            signature_kind="provider" if by_provider else "gateway_seal",
            cancel_reason=env.cancel_reason,
            chain_head=events[-1].hash if events else "",
            generated_at=now,
        )
        if self.sealer is None or self.renderer is None:
            raise ProviderError("No signing identity to seal audit reports with (the local provider).")
        pdf = await self.renderer.render(report)
        sealed = await self.sealer.sign(SignatureRequest(
            pdf=pdf, envelope_id=env.id, document_id="audit-report", signer_id="gateway",
            signer_name="esign-gateway", signer_email="", field_name="AuditReportSeal", slot=0,
            verification="the gateway's seal", language=env.language, final=True, visible=False,
        ))
        key = await self.store.put(sealed.pdf)
        async with UnitOfWork() as uow:
            current = await uow.envelopes.get(envelope_id, for_update=True)
            assert current is not None
            await EnvelopeRow.filter(id=envelope_id).using_db(uow.conn).update(audit_report_sha256=key)
            current.note("envelope.audit_report_sealed", now,
                         data={"sha256": key, "chain_head": report.chain_head, "events": len(events)})
            await uow.envelopes.save(current, bump=False)
        log.info("audit_report_sealed", envelope_id=envelope_id)
        return key

    async def _signature_facts(self, env: Envelope) -> tuple[list[ReportDocument], dict[str, ReportSignature]]:
        """The documents with their document timestamps, and each signer's signature on the first
        signed document (its PAdES level and its own TSA time), read from the signed files."""
        reader = self.renderer if isinstance(self.renderer, SignatureReader) else None
        documents, found = [], {}
        for d in env.documents:
            facts = None
            if reader is not None and d.signed_sha256:
                facts = await reader.read_signatures(await self.store.get(d.signed_sha256))
            documents.append(ReportDocument(d.name, d.pages, d.sha256, d.signed_sha256,
                                            tuple(facts.document_timestamps) if facts else ()))
            for s in env.signers if facts else ():
                fields = {f"Signature-{s.id}"} | ({p.field_name} if (p := d.placements.get(s.id)) and p.field_name
                                                 else set())
                mine = next((x for x in facts.signatures if x.field_name in fields), None)  # type: ignore[union-attr]
                if mine is not None:
                    found.setdefault(s.id, mine)
        return documents, found

    # ------------------------------------------------------------------ chains
    async def verify_chains(self, envelope_id: str | None = None) -> list[ChainReport]:
        ids = [envelope_id] if envelope_id else [str(i) for i in await EnvelopeRow.all().order_by("id")
                                                     .values_list("id", flat=True)]
        out = []
        for eid in ids:
            if not await EnvelopeRow.exists(id=eid):
                raise NotFoundError(f"No envelope {eid}.")
            out.append(ChainReport(eid, await AuditEvent.filter(envelope_id=eid).count(), await verify_chain(eid)))
        return out

    # ------------------------------------------------------------------ timestamp renewal
    async def renewal_job(self, payload: dict[str, Any]) -> None:
        """Job ``lta_renewal``: renew before the newest timestamp's TSA certificate expires; plan the next check."""
        now = self.clock.now()
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if (env is None or env.purged_at is not None or env.status != EnvelopeStatus.COMPLETED
                or env.retained_until is None or now >= env.retained_until
                or not isinstance(self.sealer, ArchiveStamper)):
            return
        stamper = self.sealer
        next_check = env.retained_until
        renewed: dict[str, str] = {}
        for doc in env.documents:
            assert doc.signed_sha256 is not None
            pdf = await self.store.get(doc.signed_sha256)
            expiry = await stamper.timestamp_expiry(pdf)
            if expiry is None:
                continue  # not our LTA file (e.g. a provider's result): nothing we can renew
            if expiry - RENEW_BEFORE <= now:
                fresh = await stamper.renew(pdf)
                renewed[doc.id] = await self.store.put(fresh.pdf)
                expiry = await stamper.timestamp_expiry(fresh.pdf) or expiry
            next_check = min(next_check, expiry - RENEW_BEFORE)
        if renewed:
            async with UnitOfWork() as uow:
                current = await uow.envelopes.get(env.id, for_update=True)
                assert current is not None
                for doc in current.documents:
                    if doc.id in renewed:
                        old, doc.signed_sha256 = doc.signed_sha256, renewed[doc.id]
                        doc.current_sha256 = renewed[doc.id]
                        current.note("document.timestamp_renewed", now,
                                     data={"document_id": doc.id, "from": old, "to": renewed[doc.id]})
                await uow.envelopes.save(current, bump=False)
            log.info("lta_renewed", envelope_id=env.id, documents=len(renewed))
        if next_check < env.retained_until:
            async with UnitOfWork() as uow:
                await uow.jobs.enqueue("lta_renewal", {"envelope_id": env.id}, max(next_check, now),
                                       dedupe_key=f"lta_renewal:{env.id}:{next_check.date().isoformat()}")

    # ------------------------------------------------------------------ retention
    async def purge_job(self, payload: dict[str, Any]) -> None:
        """Job ``retention_purge``: at the end of retention remove bytes and personal data, keep a tombstone."""
        now = self.clock.now()
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"], for_update=True)
            if env is None or env.purged_at is not None or not env.is_terminal:
                return
            due = env.retained_until if env.status == EnvelopeStatus.COMPLETED else None
            if due is None:
                assert env.ended_at is not None
                due = env.ended_at + timedelta(days=uow.retention.unsigned_days)
            if now < due:
                return  # retention moved (nothing moves it today, but never purge early)
            row = await EnvelopeRow.get(id=env.id).using_db(uow.conn)
            keys = {k for d in env.documents
                    for k in (d.sha256, d.prepared_sha256, d.current_sha256, d.signed_sha256) if k}
            keys |= {row.audit_report_sha256} if row.audit_report_sha256 else set()
            await EnvelopeRow.filter(id=env.id).using_db(uow.conn).update(purged_at=now, audit_report_sha256=None)
            await _erase_signers(uow, SignerRow.filter(envelope_id=env.id))
            await AuditEvent.filter(envelope_id=env.id).using_db(uow.conn).update(ip=None, user_agent=None, note=None)
            await _erase_job_errors(uow, env.id)
            await DownloadLink.filter(envelope_id=env.id).using_db(uow.conn).delete()
            env.note("envelope.purged", now, data={"blobs": sorted(keys)})
            await uow.envelopes.save(env, bump=False)
        for key in keys:  # content-addressed: another live envelope may hold the same bytes
            if not await _referenced(key):
                await self.store.delete(key)
        log.info("envelope_purged", envelope_id=env.id)

    async def gc_job(self, payload: dict[str, Any]) -> None:
        """Job ``blob_gc`` (daily): delete stored blobs no envelope refers to — uploads whose send was
        refused after they were stored, results of purged envelopes shared with nobody. Only blobs
        last written more than a day ago: one being stored by a request right now is never touched."""
        now = self.clock.now()
        removed = 0
        for key in await self.store.written_before(now - GC_GRACE):
            if not await _referenced(key):
                await self.store.delete(key)
                removed += 1
        if removed:
            log.info("blobs_collected", count=removed)
        await schedule_gc(now + GC_INTERVAL)

    # ------------------------------------------------------------------ support
    async def record_access(self, *, key_id: str, envelope_id: str, action: str, reason: str, ip: str | None) -> None:
        owner = await EnvelopeRow.filter(id=envelope_id).values_list("tenant_id", flat=True)
        await SupportAccess.create(key_id=key_id, envelope_id=envelope_id, tenant_id=owner[0] if owner else None,
                                   action=action, reason=reason[:500], ip=ip, at=self.clock.now())

    async def access_log(self, envelope_id: str | None, limit: int = 100) -> list[SupportAccess]:
        qs = SupportAccess.all()
        if envelope_id:
            qs = qs.filter(envelope_id=envelope_id)
        return list(await qs.order_by("-id").limit(limit))

    # ------------------------------------------------------------------ the tenant's archive
    async def archive_page(
        self, tenant_id: str, *, since: datetime | None, until: datetime | None, record_type: str | None,
        record_id: str | None, limit: int, cursor: str | None,
    ) -> Page:
        qs = EnvelopeRow.filter(tenant_id=tenant_id, status="completed", purged_at__isnull=True)
        if since:
            qs = qs.filter(completed_at__gte=since)
        if until:
            qs = qs.filter(completed_at__lt=until)
        if record_type:
            qs = qs.filter(record_type=record_type)
        if record_id:
            qs = qs.filter(record_id=record_id)
        return await envelope_page(qs, tenant_id, limit=limit, cursor=cursor)

    # ------------------------------------------------------------------ GDPR
    async def gdpr_export(self, email: str) -> dict[str, Any]:
        """Everything held about the signer with ``email`` (case-insensitive)."""
        signers = await SignerRow.filter(email__iexact=email.strip()).order_by("envelope_id")
        out: list[dict[str, Any]] = []
        for s in signers:
            env = await EnvelopeRow.get(id=s.envelope_id)  # type: ignore[attr-defined]
            events = await AuditEvent.filter(envelope_id=env.id, signer_id=s.id).order_by("seq")
            out.append({
                "envelope_id": env.id, "envelope_name": env.name, "status": env.status,
                "retained_until": env.retained_until.isoformat() if env.retained_until else None,
                "signer": {"id": s.id, "name": s.name, "email": s.email, "phone": s.phone, "status": s.status,
                           "signed_at": s.signed_at.isoformat() if s.signed_at else None,
                           "declined_at": s.declined_at.isoformat() if s.declined_at else None,
                           "decline_reason": s.decline_reason, "delivery_error": s.delivery_error},
                "events": [{"at": e.at.isoformat(), "type": e.type, "ip": e.ip, "user_agent": e.user_agent,
                            "note": e.note} for e in events],
            })
        return {"email": email, "generated_at": self.clock.now().isoformat(), "envelopes": out}

    async def gdpr_erase(self, email: str) -> ErasureReport:
        """Erase the signer's personal data except where the law keeps it: a completed envelope
        within its retention (the contract's evidence) and envelopes still in progress. What goes:
        name, e-mail, phone, decline reason, delivery error, the IP/user agent and free-text notes
        beside the chain of the signer's events, and the last errors of the envelope's jobs. The
        chained fields never hold any of it, so the chain still verifies."""
        now = self.clock.now()
        erased, kept = [], []
        for s in await SignerRow.filter(email__iexact=email.strip()):
            env = await EnvelopeRow.get(id=s.envelope_id)  # type: ignore[attr-defined]
            if env.status == "completed" and env.retained_until and env.retained_until > now and env.purged_at is None:
                kept.append((env.id, f"signed contract kept as evidence until {env.retained_until.date().isoformat()}"))
                continue
            if env.status in ("draft", "sent"):
                kept.append((env.id, f"envelope still {env.status}: cancel it first"))
                continue
            async with UnitOfWork() as uow:
                await _erase_signers(uow, SignerRow.filter(id=s.id))
                await AuditEvent.filter(envelope_id=env.id, signer_id=s.id).using_db(uow.conn).update(
                    ip=None, user_agent=None, note=None)
                await _erase_job_errors(uow, env.id)
                locked = await uow.envelopes.get(env.id, for_update=True)
                assert locked is not None
                locked.note("signer.personal_data_erased", now, locked.signer(s.id), data={"by": "gdpr"})
                await uow.envelopes.save(locked, bump=False)
            erased.append(env.id)
        return ErasureReport(erased, kept)


def _trail_tsa_time(events: list[AuditEvent], signer_id: str) -> datetime | None:
    """The signature's TSA time as the trail recorded it (``signer.signed``), when the file cannot be read."""
    for e in events:
        data = e.data if isinstance(e.data, dict) else {}
        if e.type == "signer.signed" and e.signer_id == signer_id and data.get("tsa_time"):
            return datetime.fromisoformat(e.data["tsa_time"])
    return None


async def _erase_signers(uow: UnitOfWork, qs: Any) -> None:
    await qs.using_db(uow.conn).update(name=ERASED, email=ERASED, phone=ERASED, token_hash=None, token_sealed=None,
                                       decline_reason=None, delivery_error=None)


async def _erase_job_errors(uow: UnitOfWork, envelope_id: str) -> None:
    """The last errors of the envelope's jobs (a mail server's answer may quote an address)."""
    failed = await Job.filter(last_error__isnull=False).using_db(uow.conn).only("id", "payload")
    ids = [j.id for j in failed if isinstance(j.payload, dict) and j.payload.get("envelope_id") == envelope_id]
    if ids:
        await Job.filter(id__in=ids).using_db(uow.conn).update(last_error=None)
