"""Provider-run ceremonies (DigiSign): send, follow by webhook and by polling, archive the result.

The provider's webhooks are only a doorbell. ``accept_webhook`` authenticates one, remembers its
event id (a replay changes nothing) and queues a ``provider_sync`` job; the job asks the provider
for the envelope's authoritative state and moves ours forward (``domain.envelope.apply_remote``),
so late, repeated or out-of-order events are harmless. At completion the signed PDF and the
provider's audit log are downloaded into our archive *before* the envelope is shown completed.
Missed webhooks are healed by the same job run on a timer for every open envelope.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from tortoise.exceptions import IntegrityError

from esign_gateway.clock import Clock
from esign_gateway.db.models import EnvelopeRow, InboundEvent
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.envelope import Envelope, RemoteSignerFacts, apply_remote
from esign_gateway.domain.states import EnvelopeStatus, SignerStatus
from esign_gateway.ports import (
    DocumentStore,
    InvalidWebhook,
    RemoteCeremony,
    RemoteEnvelope,
    RemoteHandle,
    RemoteSigner,
    SignatureProvider,
)

__all__ = ["SYNC_INTERVALS", "InvalidWebhook", "RemoteCeremonyService", "attach", "remote_envelope", "remote_of"]

log = structlog.get_logger(__name__)

SYNC_INTERVALS = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4), timedelta(hours=12))
"""Polling of an open envelope, in case its webhooks were lost: sooner first, then rarer."""


def remote_of(provider: SignatureProvider) -> RemoteCeremony | None:
    return provider if isinstance(provider, RemoteCeremony) else None


def remote_envelope(env: Envelope, documents: list[tuple[str, bytes]], expires_at: datetime) -> RemoteEnvelope:
    return RemoteEnvelope(
        envelope_id=env.id, name=env.name, message=env.message, language=env.language, expires_at=expires_at,
        documents=documents,
        signers=[RemoteSigner(s.id, s.name, s.email, s.phone, s.order,
                              placements=tuple(d.placements.get(s.id) for d in env.documents))
                 for s in env.signers],
        reminder_days_before_expiry=list(env.reminders.get("before_expiry_days") or []),
    )


def attach(env: Envelope, handle: RemoteHandle) -> None:
    env.provider_ref = handle.ref
    for signer in env.signers:
        signer.provider_ref = handle.signer_refs.get(signer.id)


class RemoteCeremonyService:
    def __init__(
        self, *, clock: Clock, providers: dict[str, SignatureProvider], store: DocumentStore,
        webhook_secrets: dict[str, list[str]],
    ) -> None:
        self.clock = clock
        self.providers = providers
        self.store = store
        self.webhook_secrets = webhook_secrets

    def _remote(self, name: str) -> RemoteCeremony:
        provider = self.providers.get(name)
        remote = remote_of(provider) if provider is not None else None
        if remote is None:
            raise LookupError(f"{name} is not a provider-run ceremony")
        return remote

    # ------------------------------------------------------------------ jobs
    async def send_job(self, payload: dict[str, Any]) -> None:
        """``provider_send``: send the draft prepared during the CRM's request (idempotent)."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is None or env.provider_ref is None or env.status != EnvelopeStatus.SENT:
            return
        await self._remote(env.provider).send(env.provider_ref)
        log.info("provider_sent", envelope_id=env.id, provider=env.provider)
        await self._schedule_sync(env.id, 0)

    async def _schedule_sync(self, envelope_id: str, step: int) -> None:
        due = self.clock.now() + SYNC_INTERVALS[min(step, len(SYNC_INTERVALS) - 1)]
        async with UnitOfWork() as uow:
            await uow.jobs.enqueue("provider_sync", {"envelope_id": envelope_id, "step": step}, due,
                                   dedupe_key=f"provider_sync:{envelope_id}:{step}")

    async def sync_job(self, payload: dict[str, Any]) -> None:
        """``provider_sync``: take the provider's state; on a timer (``step``) or after a webhook."""
        changed = await self.sync(payload["envelope_id"])
        step = payload.get("step")
        if step is not None and changed is not None and changed.status == EnvelopeStatus.SENT:
            await self._schedule_sync(changed.id, int(step) + 1)

    async def sync(self, envelope_id: str) -> Envelope | None:
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id)
        if env is None or env.provider_ref is None or env.is_terminal:
            return env
        remote = self._remote(env.provider)
        state = await remote.fetch(env.provider_ref)
        by_ref = {s.provider_ref: s.id for s in env.signers if s.provider_ref}
        facts = {
            by_ref[r.ref]: RemoteSignerFacts(SignerStatus(r.status), r.at, r.decline_reason, r.viewed_at)
            for r in state.signers if r.ref in by_ref
        }
        signed: dict[str, str] | None = None
        archived: dict[str, str] = {}
        if state.status == "completed":
            result = await remote.download(env.provider_ref)
            combined = await self.store.put(result.signed_pdf)
            archived = {"signed_pdf": combined, "audit_log": await self.store.put(result.audit_log)}
            signed = {d.id: combined for d in env.documents}
        now = self.clock.now()
        async with UnitOfWork() as uow:
            current = await uow.envelopes.get(envelope_id, for_update=True)
            assert current is not None
            if archived and not current.is_terminal:
                current.note("envelope.provider_result_archived", now, actor="provider", data=archived)
            apply_remote(current, state.status, state.at, facts, now, signed)
            if current.is_terminal:
                await uow.signers.forget_sealed(current.id)
            await uow.envelopes.save(current, bump=False)
        log.info("provider_synced", envelope_id=envelope_id, status=current.status.value)
        return current

    async def cancel_job(self, payload: dict[str, Any]) -> None:
        """``provider_cancel``: our cancel already happened; tell the provider (idempotent)."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is not None and env.provider_ref is not None:
            await self._remote(env.provider).cancel(env.provider_ref, env.cancel_reason)

    async def extend_job(self, payload: dict[str, Any]) -> None:
        """``provider_extend``: move the provider's expiry to ours (the latest one wins)."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is None or env.provider_ref is None or env.status != EnvelopeStatus.SENT or env.expires_at is None:
            return
        if env.expires_at.isoformat() != payload["expires_at"]:
            return  # extended again since: that job carries the newer date
        await self._remote(env.provider).extend(env.provider_ref, env.expires_at)

    async def remind(self, env: Envelope, signer_id: str) -> None:
        """A reminder through the provider (it e-mails its own link)."""
        signer = env.signer(signer_id)
        if env.provider_ref is None or signer.provider_ref is None:
            raise LookupError("the envelope is not at the provider yet")
        await self._remote(env.provider).remind(env.provider_ref, signer.provider_ref)

    # ------------------------------------------------------------------ inbound webhooks
    async def accept_webhook(self, provider_name: str, headers: dict[str, str], body: bytes) -> str:
        """Authenticate, deduplicate and queue a sync. Returns ``accepted``, ``duplicate`` or
        ``unknown`` (not one of our envelopes: ignored). Raises ``InvalidWebhook``."""
        remote = self._remote(provider_name)
        event = remote.parse_webhook(headers, body, self.clock.now(), self.webhook_secrets.get(provider_name, []))
        row = await EnvelopeRow.filter(provider=provider_name, provider_ref=event.envelope_ref).only("id").first()
        now = self.clock.now()
        try:  # the event id is the provider's: a replay (or a retry after our 5xx) is recognised here
            await InboundEvent.create(provider=provider_name, event_id=event.event_id, event_type=event.type[:64],
                                      envelope_ref=event.envelope_ref[:128], received_at=now)
        except IntegrityError:
            return "duplicate"
        if row is None:
            log.warning("provider_webhook_unknown_envelope", provider=provider_name, event_type=event.type,
                        envelope_ref=event.envelope_ref)
            return "unknown"
        # (a crash right here loses only the doorbell: the timed sync of the envelope still comes)
        async with UnitOfWork() as uow:
            await uow.jobs.enqueue("provider_sync", {"envelope_id": row.id}, now)
        return "accepted"

