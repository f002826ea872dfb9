"""Provider-run ceremonies (DigiSign): send, follow by webhook and by polling, archive the result.

The provider's webhooks are only a doorbell. ``accept_webhook`` authenticates one (with the secrets
:class:`WebhookSecrets` reads from the database: a secret stored by ``register-webhooks`` in another
process verifies within seconds, without a restart), remembers its event id (a replay changes
nothing) and queues a ``provider_sync`` job; the job asks the provider for the envelope's
authoritative state and moves ours forward (``Envelope.apply_remote``), so late, repeated or
out-of-order events are harmless. At completion each document's signed PDF and the provider's audit
log are downloaded into our archive *before* the envelope is shown completed. Missed webhooks are
healed by the same job run on a timer for every open envelope.

What the provider did otherwise than asked (reminders it refused, an expiry it did not take) comes
back as ``RemoteNote``s and goes into the envelope's audit trail. A state the provider refuses an
action in (``InvalidStateError``) ends the job with the provider's text in the trail, not in retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

import structlog
from tortoise.exceptions import IntegrityError

from esign_gateway.clock import Clock
from esign_gateway.db.jobs import Dropped
from esign_gateway.db.models import EnvelopeRow, GatewaySecret, InboundEvent
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.envelope import Envelope, RemoteSignerFacts
from esign_gateway.domain.states import EnvelopeStatus, SignerStatus
from esign_gateway.errors import InvalidStateError
from esign_gateway.ports import (
    DocumentStore,
    InvalidWebhook,
    RemoteCeremony,
    RemoteEnvelope,
    RemoteHandle,
    RemoteNote,
    RemoteSigner,
    SignatureProvider,
)
from esign_gateway.secretbox import SecretBox

__all__ = [
    "GONE_CONFIRMATION", "SYNC_INTERVALS", "InvalidWebhook", "RemoteCeremonyService", "WebhookSecrets", "attach",
    "remote_envelope", "remote_of", "store_webhook_secret", "webhook_secret_loader",
]

log = structlog.get_logger(__name__)

SYNC_INTERVALS = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4), timedelta(hours=12))
"""Polling of an open envelope, in case its webhooks were lost: sooner first, then rarer."""
GONE_CONFIRMATION = timedelta(hours=1)
"""An envelope the provider no longer knows, without its deletion event, is taken as deleted only
when it is still unknown this long after it was first missed (a wrong account or a passing fault
must not end envelopes)."""
DELETED_REASON = "deleted at the provider"


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
        reminder_every_days=env.reminders.get("every_days"),
        document_ids=tuple(d.id for d in env.documents),
    )


def attach(env: Envelope, handle: RemoteHandle) -> None:
    """Keep the provider's references on a just-sent envelope, and what it did otherwise (its notes)."""
    env.provider_ref = handle.ref
    for signer in env.signers:
        signer.provider_ref = handle.signer_refs.get(signer.id)
    _record(env, handle.notes, env.sent_at or env.created_at)


def _record(env: Envelope, notes: list[RemoteNote] | tuple[RemoteNote, ...], now: datetime) -> None:
    for note in notes:
        env.note(note.type, now, actor="provider", data=dict(note.data))
        log.warning("provider_note", envelope_id=env.id, provider=env.provider, note=note.type, **note.data)


# --------------------------------------------------------------------------- webhook secrets


def _secret_prefix(provider: str) -> str:
    return f"{provider}_webhook:"


async def store_webhook_secret(box: SecretBox, now: datetime, provider: str, webhook_id: str, secret: str) -> None:
    """Keep a provider webhook's secret (sealed) so that every process verifies its deliveries."""
    await GatewaySecret.update_or_create(
        name=f"{_secret_prefix(provider)}{webhook_id}"[:64], defaults={"sealed": box.seal(secret), "created_at": now},
    )


def webhook_secret_loader(box: SecretBox) -> Callable[[str], Awaitable[list[str]]]:
    """Reads one provider's stored webhook secrets from the database (every process sees the same)."""

    async def load(provider: str) -> list[str]:
        rows = await GatewaySecret.filter(name__startswith=_secret_prefix(provider)).order_by("name")
        return [box.open(row.sealed) for row in rows]

    return load


class WebhookSecrets:
    """The webhook secrets of each provider: the configured ones plus those stored in the database.

    Stored secrets are read again when the last read is older than ``max_age`` (by the injected
    clock), and at once when a signature matches none of them — at most once per ``miss_interval``,
    so a flood of forged deliveries costs at most one query per interval. A secret stored by
    ``register-webhooks`` (or any other process) thus verifies the next delivery."""

    def __init__(
        self, *, clock: Clock, load: Callable[[str], Awaitable[list[str]]],
        configured: dict[str, list[str]] | None = None, max_age: timedelta = timedelta(seconds=5),
        miss_interval: timedelta = timedelta(seconds=1),
    ) -> None:
        self.clock = clock
        self._load = load
        self.configured = {k: list(v) for k, v in (configured or {}).items()}
        self.max_age, self.miss_interval = max_age, miss_interval
        self._stored: dict[str, list[str]] = {}
        self._read_at: dict[str, datetime] = {}
        self._miss_at: dict[str, datetime] = {}

    def _all(self, provider: str) -> list[str]:
        return self.configured.get(provider, []) + self._stored.get(provider, [])

    async def _read(self, provider: str, now: datetime) -> None:
        self._stored[provider] = await self._load(provider)
        self._read_at[provider] = now

    async def get(self, provider: str) -> list[str]:
        now = self.clock.now()
        read = self._read_at.get(provider)
        if read is None or now - read >= self.max_age or now < read:
            await self._read(provider, now)
        return self._all(provider)

    async def after_miss(self, provider: str) -> list[str] | None:
        """Read again after a signature matched none (rate-limited): the secrets when that found a
        new one, None when nothing new could be found (or the last such read is too recent)."""
        now = self.clock.now()
        last = self._miss_at.get(provider)
        if last is not None and timedelta(0) <= now - last < self.miss_interval:
            return None
        self._miss_at[provider] = now
        before = set(self._stored.get(provider, []))
        await self._read(provider, now)
        return self._all(provider) if set(self._stored[provider]) - before else None


# --------------------------------------------------------------------------- the service


class RemoteCeremonyService:
    def __init__(
        self, *, clock: Clock, providers: dict[str, SignatureProvider], store: DocumentStore,
        webhook_secrets: WebhookSecrets,
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

    async def _note(self, envelope_id: str, notes: list[RemoteNote]) -> None:
        if not notes:
            return
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id, for_update=True)
            if env is None:
                return
            _record(env, notes, self.clock.now())
            await uow.envelopes.save(env, bump=False)

    # ------------------------------------------------------------------ jobs
    async def send_job(self, payload: dict[str, Any]) -> None:
        """``provider_send``: send the draft prepared during the CRM's request (idempotent)."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is None or env.provider_ref is None or env.status != EnvelopeStatus.SENT:
            return
        notes = await self._remote(env.provider).send(env.provider_ref, env.expires_at)
        log.info("provider_sent", envelope_id=env.id, provider=env.provider)
        await self._note(env.id, notes)
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

    async def _gone(self, env: Envelope, ref: str) -> bool:
        """The provider no longer knows ``ref``: deleted when its deletion event came, or when it has
        been unknown for ``GONE_CONFIRMATION``; until then the envelope stays as it is."""
        if await InboundEvent.filter(provider=env.provider, event_id=f"deleted:{ref}"[:128]).exists():
            return True
        now = self.clock.now()
        first = await InboundEvent.get_or_none(provider=env.provider, event_id=f"gone:{ref}"[:128])
        if first is None:
            with contextlib.suppress(IntegrityError):  # another worker saw it first
                await InboundEvent.create(provider=env.provider, event_id=f"gone:{ref}"[:128], event_type="gone",
                                          envelope_ref=ref[:128], received_at=now)
            log.warning("provider_envelope_missing", envelope_id=env.id, provider=env.provider)
            return False
        return now - first.received_at >= GONE_CONFIRMATION

    async def sync(self, envelope_id: str) -> Envelope | None:
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id)
        if env is None or env.provider_ref is None or env.is_terminal:
            return env
        remote = self._remote(env.provider)
        state = await remote.fetch(env.provider_ref)
        status, reason = state.status, state.reason
        if status == "gone":
            if not await self._gone(env, env.provider_ref):
                return env
            status, reason = "cancelled", DELETED_REASON
        elif status not in ("sent", "completed", "declined", "expired", "cancelled"):
            log.error("provider_state_unknown", envelope_id=envelope_id, provider=env.provider, status=status)
        by_ref = {s.provider_ref: s.id for s in env.signers if s.provider_ref}
        facts = {
            by_ref[r.ref]: RemoteSignerFacts(SignerStatus(r.status), r.at, r.decline_reason, r.viewed_at,
                                             r.delivery_error)
            for r in state.signers if r.ref in by_ref
        }
        signed: dict[str, str] | None = None
        archived: dict[str, Any] = {}
        if status == "completed":
            result = await remote.download(env.provider_ref, [d.id for d in env.documents])
            signed = {d.id: await self.store.put(result.documents[d.id]) for d in env.documents}
            archived = {"documents": signed, "audit_log": await self.store.put(result.audit_log)}
        now = self.clock.now()
        async with UnitOfWork() as uow:
            current = await uow.envelopes.get(envelope_id, for_update=True)
            assert current is not None
            if archived and not current.is_terminal:
                current.note("envelope.provider_result_archived", now, actor="provider", data=archived)
            current.apply_remote(status, state.at, facts, now, signed, reason)
            if current.is_terminal:
                await uow.signers.forget_sealed(current.id)
            await uow.envelopes.save(current, bump=False)
        log.info("provider_synced", envelope_id=envelope_id, status=current.status.value)
        return current

    async def _refused(self, env: Envelope, action: str, exc: InvalidStateError) -> NoReturn:
        """The provider refused ``action`` in its envelope's current state: said in the audit trail,
        the job ends (its state is followed by the next sync)."""
        await self._note(env.id, [RemoteNote("envelope.provider_refused", {"action": action, "detail": exc.detail})])
        raise Dropped(f"{env.provider} refused {action}: {exc.detail}") from None

    async def cancel_job(self, payload: dict[str, Any]) -> None:
        """``provider_cancel``: our cancel already happened; tell the provider (idempotent)."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is not None and env.provider_ref is not None:
            try:
                await self._remote(env.provider).cancel(env.provider_ref, env.cancel_reason)
            except InvalidStateError as exc:
                await self._refused(env, "cancel", exc)

    async def extend_job(self, payload: dict[str, Any]) -> None:
        """``provider_extend``: move the provider's expiry to ours (the latest one wins)."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is None or env.provider_ref is None or env.status != EnvelopeStatus.SENT or env.expires_at is None:
            return
        if env.expires_at.isoformat() != payload["expires_at"]:
            return  # extended again since: that job carries the newer date
        try:
            notes = await self._remote(env.provider).extend(env.provider_ref, env.expires_at)
        except InvalidStateError as exc:
            await self._refused(env, "extend", exc)
        await self._note(env.id, notes)

    async def remind(self, env: Envelope, signer_id: str) -> None:
        """A reminder through the provider (it e-mails its own link). A reminder the provider refuses
        in the signer's state ends the reminder job (``Dropped``) with the provider's text."""
        signer = env.signer(signer_id)
        if env.provider_ref is None or signer.provider_ref is None:
            raise LookupError("the envelope is not at the provider yet")
        try:
            await self._remote(env.provider).remind(env.provider_ref, signer.provider_ref)
        except InvalidStateError as exc:
            await self._refused(env, "remind", exc)

    # ------------------------------------------------------------------ inbound webhooks
    async def accept_webhook(self, provider_name: str, headers: dict[str, str], body: bytes) -> str:
        """Authenticate, deduplicate and queue a sync. Returns ``accepted``, ``duplicate`` or
        ``unknown`` (not one of our envelopes: ignored). Raises ``InvalidWebhook``."""
        remote = self._remote(provider_name)
        secrets = await self.webhook_secrets.get(provider_name)
        try:
            event = remote.parse_webhook(headers, body, self.clock.now(), secrets)
        except InvalidWebhook:
            fresh = await self.webhook_secrets.after_miss(provider_name)  # a secret stored a moment ago
            if fresh is None:
                raise
            event = remote.parse_webhook(headers, body, self.clock.now(), fresh)
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
        if event.gone:  # its deletion, said by the provider itself: the sync may end the envelope at once
            with contextlib.suppress(IntegrityError):
                await InboundEvent.create(provider=provider_name, event_id=f"deleted:{event.envelope_ref}"[:128],
                                          event_type=event.type[:64], envelope_ref=event.envelope_ref[:128],
                                          received_at=now)
        # (a crash right here loses only the doorbell: the timed sync of the envelope still comes)
        async with UnitOfWork() as uow:
            await uow.jobs.enqueue("provider_sync", {"envelope_id": row.id}, now)
        return "accepted"
