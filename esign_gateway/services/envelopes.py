"""CRM-side use cases: create, send, cancel, delete, read, list, download."""

from __future__ import annotations

import asyncio
import io
import math
import secrets
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from esign_gateway.clock import Clock
from esign_gateway.db.models import EnvelopeRow
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.envelope import DEFAULT_EXPIRY_DAYS, DEFAULT_REMINDERS, Document, Envelope, Signer
from esign_gateway.domain.ids import uuid7
from esign_gateway.domain.policy import MAX_EXPIRY_DAYS, token_hash
from esign_gateway.domain.reminders import MANUAL_REMINDER_INTERVAL, reminder_slots
from esign_gateway.domain.states import EnvelopeStatus, InvalidTransition
from esign_gateway.errors import (
    GatewayError,
    InvalidStateError,
    NotFoundError,
    TooManyRequestsError,
    ValidationFailedError,
)
from esign_gateway.metrics import Metrics
from esign_gateway.ports import (
    CeremonyHost,
    DocumentStore,
    FieldRequest,
    PdfInspector,
    PlacementRequest,
    RemoteHandle,
    SignatureProvider,
)
from esign_gateway.secretbox import SecretBox

from .archive import refuse_if_purged
from .idempotency import Claim, IdempotencyService
from .paging import Page, envelope_page
from .plans import PlanService
from .remote import attach, remote_envelope, remote_of
from .tenants import TenantInfo

__all__ = ["EnvelopeService", "NewDocument", "NewEnvelope", "NewSigner", "issue_signer_links", "plan_envelope_jobs"]

@dataclass(frozen=True, slots=True)
class NewDocument:
    name: str
    content: bytes


@dataclass(frozen=True, slots=True)
class NewField:
    document: int
    """0-based index into the envelope's documents."""
    request: FieldRequest


@dataclass(frozen=True, slots=True)
class NewSigner:
    name: str
    email: str
    phone: str
    order: int = 1
    fields: list[NewField] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NewEnvelope:
    record_type: str
    record_id: str
    record_name: str | None
    name: str
    documents: list[NewDocument]
    signers: list[NewSigner]
    message: str | None = None
    language: str = "cs"
    expires_in_days: int | None = None
    expires_at: datetime | None = None
    reminders: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_REMINDERS))
    metadata: dict[str, Any] = field(default_factory=dict)
    send: bool = True


def _placement_request(envelope_id: str, cmd: NewEnvelope, document: int) -> PlacementRequest:
    """What the inspector needs to place every signer's stamp on document ``document``."""
    fields: list[FieldRequest | None] = []
    for s in cmd.signers:
        mine = [f.request for f in s.fields if f.document == document]
        fields.append(mine[0] if mine else None)
    return PlacementRequest(
        envelope_id=envelope_id, envelope_name=cmd.name, document_name=cmd.documents[document].name,
        language=cmd.language, signers=tuple(s.name for s in cmd.signers), fields=tuple(fields),
    )


def _check_fields(cmd: NewEnvelope) -> None:
    errors = [
        {"field": f"{f.request.path}.document",
         "message": f"the envelope has {len(cmd.documents)} document(s); document {f.document + 1} does not exist"}
        for s in cmd.signers for f in s.fields if not 0 <= f.document < len(cmd.documents)
    ]
    if errors:
        raise ValidationFailedError(errors=errors)


async def _record_lazy_expiry(uow: UnitOfWork, env: Envelope) -> None:
    """An envelope found past its expiry (by the sweep, a read, or a refused cancel, extend or
    remind) is saved as expired, and its signers' reusable links are dropped: nothing is re-sent."""
    if env.status == EnvelopeStatus.EXPIRED:
        await uow.signers.forget_sealed(env.id)
    await uow.envelopes.save(env)


async def issue_signer_links(
    uow: UnitOfWork, box: SecretBox, env: Envelope, signers: list[Signer], now: datetime
) -> None:
    """Give each newly notified signer a link token and queue the invitation e-mail."""
    for signer in signers:
        token = secrets.token_urlsafe(32)
        await uow.signers.set_token(signer.id, token_hash(token), box.seal(token))
        await uow.jobs.enqueue(
            "send_invitation", {"envelope_id": env.id, "signer_id": signer.id}, now,
            dedupe_key=f"invitation:{signer.id}",
        )


async def plan_envelope_jobs(uow: UnitOfWork, env: Envelope, now: datetime) -> None:
    """Queue the expiry and every reminder slot of a sent envelope (idempotent by dedupe keys)."""
    assert env.expires_at is not None and env.sent_at is not None
    stamp = env.expires_at.isoformat()
    await uow.jobs.enqueue(
        "expire_envelope", {"envelope_id": env.id, "expires_at": stamp}, env.expires_at,
        dedupe_key=f"expire:{env.id}@{stamp}",
    )
    for slot in reminder_slots(env.reminders, env.sent_at, env.expires_at, now):
        await uow.jobs.enqueue(
            "send_reminder", {"envelope_id": env.id, "slot": slot.name, "expires_at": stamp}, slot.due,
            dedupe_key=f"reminder:{env.id}:{slot.name}"[:128],
        )


class EnvelopeService:
    def __init__(
        self, *, clock: Clock, providers: dict[str, SignatureProvider], default_provider: str,
        store: DocumentStore, inspector: PdfInspector, box: SecretBox, plans: PlanService,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.plans = plans
        self.providers = providers
        self.default_provider = default_provider
        self.store = store
        self.inspector = inspector
        self.box = box

    def _provider_for(self, tenant: TenantInfo) -> str:
        return tenant.provider or self.default_provider

    async def create_envelope(self, tenant: TenantInfo, cmd: NewEnvelope, *, claim: Claim | None = None) -> Envelope:
        """Create (and by default send) an envelope. With ``claim`` (an Idempotency-Key), the key is
        completed in the same transaction as the envelope."""
        # refused early, before anything is parsed or stored; ``_send`` holds the real guard
        await self.plans.ensure_may_send(tenant, len(cmd.documents) if cmd.send else 0)
        now = self.clock.now()
        if cmd.expires_at is not None and cmd.expires_at <= now:
            raise ValidationFailedError(errors=[{"field": "expires_at", "message": "must be in the future"}])
        _check_fields(cmd)
        envelope_id = str(uuid7())
        signer_ids = [str(uuid7()) for _ in cmd.signers]
        # Parse every upload (bounded, off the loop) and place every stamp before anything is stored.
        infos = []
        for i, doc in enumerate(cmd.documents):
            try:
                with self.metrics.inspecting():
                    infos.append(await self.inspector.inspect(doc.content, _placement_request(envelope_id, cmd, i)))
            except GatewayError as exc:
                if exc.errors is None:
                    exc.errors = [{"field": f"documents[{i}]", "message": exc.detail}]
                raise
        documents = []
        for i, (doc, info) in enumerate(zip(cmd.documents, infos, strict=True)):
            key = await self.store.put(doc.content)
            prepared = await self.store.put(info.prepared) if info.prepared is not None else None
            documents.append(
                Document(id=str(uuid7()), name=doc.name, pages=info.pages, size=len(doc.content), sha256=key,
                         current_sha256=prepared or key, position=i, prepared_sha256=prepared,
                         placements=dict(zip(signer_ids, info.placements, strict=True)))
            )
        env = Envelope(
            id=envelope_id, tenant_id=tenant.id, record_type=cmd.record_type, record_id=cmd.record_id,
            record_name=cmd.record_name, name=cmd.name, message=cmd.message, language=cmd.language,
            provider=self._provider_for(tenant), created_at=now, documents=documents,
            signers=[
                Signer(id=signer_ids[i], name=s.name, email=s.email, phone=s.phone, order=s.order, position=i)
                for i, s in enumerate(cmd.signers)
            ],
            expires_in_days=cmd.expires_in_days or tenant.default_expires_in_days or DEFAULT_EXPIRY_DAYS,
            requested_expires_at=cmd.expires_at,
            reminders=cmd.reminders, metadata=cmd.metadata,
        )
        env.note("envelope.created", now, actor="api",
                 data={"documents": [{"id": d.id, "sha256": d.sha256, "pages": d.pages} for d in documents]})
        for d, info in zip(documents, infos, strict=True):
            if info.repairs:
                env.note("document.normalised", now, actor="gateway",
                         data={"document_id": d.id, "sha256": d.sha256, "prepared_sha256": d.prepared_sha256,
                               "repairs": list(info.repairs)})
            if info.signature_page:
                env.note("document.signature_page_added", now, actor="gateway",
                         data={"document_id": d.id, "sha256": d.sha256, "prepared_sha256": d.prepared_sha256,
                               "page": d.pages})
        files = [(d.name, info.prepared or upload.content)
                 for d, upload, info in zip(documents, cmd.documents, infos, strict=True)]
        handle = await self._prepare_remote(env, files, now) if cmd.send else None
        try:
            async with UnitOfWork() as uow:
                await uow.envelopes.add(env, tenant.id)
                if cmd.send:
                    await self._send(uow, env, now, handle)
                await IdempotencyService.complete(uow, claim, envelope_id=env.id, status=201)
        except BaseException:
            await self._discard_remote(env, handle)
            raise
        return env

    async def _prepare_remote(
        self, env: Envelope, documents: list[tuple[str, bytes]], now: datetime
    ) -> RemoteHandle | None:
        """For a provider-run ceremony: build the provider's draft now, outside any transaction,
        so what the provider refuses reaches the CRM as 422 and nothing of ours is sent."""
        remote = remote_of(self.providers[env.provider])
        if remote is None:
            return None
        expires_at = env.requested_expires_at or now + timedelta(days=env.expires_in_days)
        return await remote.prepare(remote_envelope(env, documents, expires_at))

    async def _discard_remote(self, env: Envelope, handle: RemoteHandle | None) -> None:
        remote = remote_of(self.providers[env.provider])
        if handle is not None and remote is not None:
            await asyncio.shield(remote.discard(handle.ref))

    async def _send(self, uow: UnitOfWork, env: Envelope, now: datetime, handle: RemoteHandle | None = None) -> None:
        try:
            notified = env.send(now)
        except InvalidTransition as exc:
            raise InvalidStateError(str(exc)) from exc
        # Sending is when documents count: refused over the allowance, in this very transaction.
        await self.plans.take(uow, env.tenant_id, env.id, [d.id for d in env.documents], now)
        provider = self.providers[env.provider]
        if provider.ceremony is CeremonyHost.GATEWAY:
            await issue_signer_links(uow, self.box, env, notified, now)
        else:
            assert handle is not None, "a provider-run envelope is prepared at the provider before it is sent"
            attach(env, handle)
            await uow.jobs.enqueue("provider_send", {"envelope_id": env.id}, now, dedupe_key=f"provider_send:{env.id}")
        await plan_envelope_jobs(uow, env, now)
        await uow.envelopes.save(env)

    async def extend_envelope(
        self, tenant: TenantInfo, envelope_id: str, *, expires_in_days: int | None, expires_at: datetime | None
    ) -> Envelope:
        now = self.clock.now()
        target = expires_at if expires_at is not None else now + timedelta(days=expires_in_days or 0)
        if target > now + timedelta(days=MAX_EXPIRY_DAYS):
            raise ValidationFailedError(
                errors=[{"field": "expires_at", "message": f"at most {MAX_EXPIRY_DAYS} days from now"}]
            )
        async with UnitOfWork() as uow:
            env = await self._get(uow, tenant, envelope_id, for_update=True)
            try:
                env.extend(target, now)
            except InvalidTransition as exc:
                await _record_lazy_expiry(uow, env)
                refused: GatewayError | None = (
                    ValidationFailedError(errors=[{"field": "expires_at", "message": str(exc)}])
                    if exc.reason == "expires_at_past"
                    else InvalidStateError(f"Only a sent envelope can be extended; this one is {env.status.value}.")
                )
            else:
                refused = None
                await plan_envelope_jobs(uow, env, now)
                if env.provider_ref is not None and env.expires_at is not None:
                    stamp = env.expires_at.isoformat()
                    await uow.jobs.enqueue("provider_extend", {"envelope_id": env.id, "expires_at": stamp}, now,
                                           dedupe_key=f"provider_extend:{env.id}@{stamp}")
                await uow.envelopes.save(env)
        if refused is not None:
            raise refused
        return env

    async def remind_now(self, tenant: TenantInfo, envelope_id: str) -> list[Signer]:
        """Queue a reminder to the signers who still have to act; at most once an hour per envelope."""
        now = self.clock.now()
        async with UnitOfWork() as uow:
            env = await self._get(uow, tenant, envelope_id, for_update=True)
            last = await uow.envelopes.last_manual_reminder(env.id)
            if env.is_past_expiry(now) or env.status != EnvelopeStatus.SENT:
                if env.is_past_expiry(now):
                    env.expire(now)
                    await _record_lazy_expiry(uow, env)
                refused: GatewayError | None = InvalidStateError(
                    f"Only a sent envelope can be reminded; this one is {env.status.value}."
                )
            elif last is not None and now - last < MANUAL_REMINDER_INTERVAL:
                wait = max(1, math.ceil((last + MANUAL_REMINDER_INTERVAL - now).total_seconds()))
                refused = TooManyRequestsError(
                    f"Signers were reminded at {last.isoformat().replace('+00:00', 'Z')}; the next reminder is "
                    f"possible in {wait} s.",
                    headers={"Retry-After": str(wait)}, extra={"retry_after": wait},
                )
            else:
                refused = None
                await uow.envelopes.set_manual_reminder(env.id, now)
                assert env.expires_at is not None
                slot = f"manual:{now.isoformat()}"
                await uow.jobs.enqueue(
                    "send_reminder", {"envelope_id": env.id, "slot": slot, "expires_at": env.expires_at.isoformat()},
                    now, dedupe_key=f"reminder:{env.id}:{slot}",
                )
        if refused is not None:
            raise refused
        return env.pending_signers()

    async def send_envelope(self, tenant: TenantInfo, envelope_id: str, *, claim: Claim | None = None) -> Envelope:
        await self.plans.ensure_may_send(tenant)
        now = self.clock.now()
        handle = None
        provider = await EnvelopeRow.filter(id=envelope_id, tenant_id=tenant.id).values_list("provider", flat=True)
        if provider and remote_of(self.providers[str(provider[0])]) is not None:
            # a provider-run ceremony: its draft is built at the provider first (outside the transaction)
            draft = await self.get_envelope(tenant, envelope_id)
            if draft.status != EnvelopeStatus.DRAFT:
                raise InvalidStateError(f"The envelope is {draft.status.value}.")
            files = [(d.name, await self.store.get(d.current_sha256)) for d in draft.documents]
            handle = await self._prepare_remote(draft, files, now)
        try:
            async with UnitOfWork() as uow:
                env = await self._get(uow, tenant, envelope_id, for_update=True)
                await self._send(uow, env, now, handle)
                await IdempotencyService.complete(uow, claim, envelope_id=env.id, status=200)
        except BaseException:
            if handle is not None:
                await self._discard_remote(draft, handle)
            raise
        return env

    async def cancel_envelope(self, tenant: TenantInfo, envelope_id: str, reason: str | None) -> Envelope:
        now = self.clock.now()
        async with UnitOfWork() as uow:
            env = await self._get(uow, tenant, envelope_id, for_update=True)
            try:
                told = env.cancel(reason, now)
            except InvalidTransition:
                await _record_lazy_expiry(uow, env)
                refused = InvalidStateError(f"Only a sent envelope can be cancelled; this one is {env.status.value}.")
            else:
                refused = None
                if env.provider_ref is not None:  # the provider tells its signers
                    await uow.jobs.enqueue("provider_cancel", {"envelope_id": env.id}, now,
                                           dedupe_key=f"provider_cancel:{env.id}")
                for signer in [] if env.provider_ref is not None else told:
                    await uow.jobs.enqueue(
                        "send_cancel_notice", {"envelope_id": env.id, "signer_id": signer.id}, now,
                        dedupe_key=f"cancel_notice:{signer.id}",
                    )
                await uow.signers.forget_sealed(env.id)
                await uow.envelopes.save(env)
        if refused is not None:
            raise refused
        return env

    async def delete_draft(self, tenant: TenantInfo, envelope_id: str) -> None:
        async with UnitOfWork() as uow:
            env = await self._get(uow, tenant, envelope_id, for_update=True)
            if env.status != EnvelopeStatus.DRAFT:
                raise InvalidStateError("Only a draft can be deleted; cancel a sent envelope instead.")
            await uow.envelopes.delete(env)

    async def get_envelope(self, tenant: TenantInfo, envelope_id: str) -> Envelope:
        await self.expire_if_due(tenant.id, envelope_id)
        async with UnitOfWork() as uow:
            return await self._get(uow, tenant, envelope_id)

    async def expire_if_due(self, tenant_id: str | None, envelope_id: str) -> bool:
        """Expire a sent envelope whose time has passed. Used by the sweep job and at read time,
        so an envelope is never shown (or signed) as open after its expiry. True if it expired now."""
        now = self.clock.now()
        row = await EnvelopeRow.filter(id=envelope_id).only("id", "status", "expires_at").first()
        if row is None or row.status != "sent" or row.expires_at is None or row.expires_at > now:
            return False
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id, tenant_id=tenant_id, for_update=True)
            if env is None or not env.is_past_expiry(now):
                return False
            env.expire(now)
            await _record_lazy_expiry(uow, env)
        return True

    async def expire_job(self, payload: dict[str, Any]) -> None:
        """Job handler ``expire_envelope`` (idempotent: a moved or ended envelope is left alone)."""
        await self.expire_if_due(None, payload["envelope_id"])

    async def list_envelopes(
        self, tenant: TenantInfo, *, record_type: str | None, record_id: str | None, status: str | None,
        limit: int, cursor: str | None,
    ) -> Page:
        qs = EnvelopeRow.filter(tenant_id=tenant.id)
        if record_type:
            qs = qs.filter(record_type=record_type)
        if record_id:
            qs = qs.filter(record_id=record_id)
        if status:
            qs = qs.filter(status=status)
        return await envelope_page(qs, tenant.id, limit=limit, cursor=cursor)

    async def _get(
        self, uow: UnitOfWork, tenant: TenantInfo, envelope_id: str, *, for_update: bool = False
    ) -> Envelope:
        env = await uow.envelopes.get(envelope_id, tenant_id=tenant.id, for_update=for_update)
        if env is None:
            raise NotFoundError(f"No envelope {envelope_id}.")
        refuse_if_purged(env)
        return env

    async def document_content(
        self, tenant: TenantInfo, envelope_id: str, document_id: str, *, version: str = "current"
    ) -> tuple[Document, bytes]:
        """``version``: ``current`` (as it stands), ``original`` (the upload) or ``prepared`` (what the
        first signer signs: the repaired file when the upload was repaired, else the upload)."""
        env = await self.get_envelope(tenant, envelope_id)
        try:
            doc = env.document(document_id)
        except KeyError:
            raise NotFoundError(f"No document {document_id} in envelope {envelope_id}.") from None
        if version == "original":
            key = doc.sha256
        elif version == "prepared":
            key = doc.prepared_sha256 or doc.sha256
        else:
            key = doc.current_sha256
        return doc, await self.store.get(key)

    async def signed_result(self, tenant: TenantInfo, envelope_id: str) -> tuple[str, str, bytes]:
        return await self.result_of(await self.get_envelope(tenant, envelope_id))

    async def result_of(self, env: Envelope) -> tuple[str, str, bytes]:
        """(filename, content type, bytes): the PDF, or a ZIP when there are several documents
        (one PDF when the provider returned all of them combined in one file)."""
        if env.status != EnvelopeStatus.COMPLETED:
            raise InvalidStateError(
                f"The signed result exists once the envelope is completed; it is {env.status.value}."
            )
        keys = [d.signed_sha256 or d.current_sha256 for d in env.documents]
        if len(set(keys)) == 1:
            name = env.documents[0].name if len(keys) == 1 else f"{env.id}.pdf"
            return name, "application/pdf", await self.store.get(keys[0])
        files = [(d.name, await self.store.get(k)) for d, k in zip(env.documents, keys, strict=True)]
        data = await asyncio.to_thread(_zip, files)
        return f"{env.id}.zip", "application/zip", data



def _entry_names(names: list[str]) -> list[str]:
    """ZIP entry names, unique: each name's first holder keeps it, a later one gets the first free
    ``name (n).ext`` that no document is called (stored names have no separators, NUL or ``..``)."""
    taken = set(names)
    out: list[str] = []
    used: set[str] = set()
    for name in names:
        if name not in used:
            out.append(name)
            used.add(name)
            continue
        stem, dot, ext = name.rpartition(".")
        n = 1
        while (candidate := f"{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})") in taken | used:
            n += 1
        out.append(candidate)
        used.add(candidate)
    return out


def _zip(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (_, data) in zip(_entry_names([n for n, _ in files]), files, strict=True):
            zf.writestr(name, data)
    return buf.getvalue()
