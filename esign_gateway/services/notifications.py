"""Signer e-mails, sent by job handlers (at-least-once, idempotent by state checks).

A handler re-reads the envelope: an invitation is only sent while the signer still has to act,
a cancellation notice only for a cancelled envelope. The e-mail goes out, then its audit event
is recorded; a crash in between re-sends the same link (never a second, different one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from tortoise.exceptions import IntegrityError

from esign_gateway.clock import Clock
from esign_gateway.db.models import EnvelopeRow, ReminderLog, Tenant
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.envelope import Envelope, Signer
from esign_gateway.domain.masking import mask_addresses, mask_email
from esign_gateway.domain.states import EnvelopeStatus, SignerStatus
from esign_gateway.errors import DeliveryError, GoneError, NotFoundError
from esign_gateway.messages import (
    MessageContext,
    render_cancelled,
    render_completed,
    render_ended,
    render_invitation,
    render_reminder,
)
from esign_gateway.ports import EmailSender, OutgoingEmail
from esign_gateway.secretbox import SecretBox

from .remote import RemoteCeremonyService

__all__ = ["NotificationService"]

log = structlog.get_logger(__name__)

DOWNLOAD_LINK_TTL = timedelta(days=30)


class NotificationService:
    def __init__(
        self, *, clock: Clock, email: EmailSender, box: SecretBox, public_url: str,
        remote: RemoteCeremonyService | None = None, remote_providers: frozenset[str] = frozenset(),
    ) -> None:
        self.clock = clock
        self.email = email
        self.box = box
        self.public_url = public_url
        self.remote = remote
        self.remote_providers = remote_providers
        """Providers that run their own ceremony: they send invitations, codes and planned reminders."""

    async def _context(self, env: Envelope, signer: Signer, token: str | None) -> MessageContext:
        tenant = await Tenant.get(id=env.tenant_id)
        assert env.expires_at is not None
        return MessageContext(
            language=env.language, signer_name=signer.name, signer_email=signer.email, sender_name=tenant.name,
            envelope_name=env.name, envelope_id=env.id, message=env.message,
            document_names=[d.name for d in env.documents], expires_at=env.expires_at,
            link=f"{self.public_url}/sign/{token}" if token else f"{self.public_url}/",
            reply_to=tenant.contact_email,  # a signer's answer reaches the sender, not a no-reply box
        )

    async def send_invitation(self, payload: dict[str, Any]) -> None:
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
            if env is None or env.is_past_expiry(self.clock.now()) or env.status != EnvelopeStatus.SENT:
                return
            signer = env.signer(payload["signer_id"])
            sealed = await uow.signers.sealed_token(signer.id)
        if not signer.can_act or sealed is None:
            return
        message = render_invitation(await self._context(env, signer, self.box.open(sealed)))
        if not await self._deliver(env.id, signer.id, message):
            return
        log.info("invitation_sent", envelope_id=env.id, signer_id=signer.id, to=mask_email(signer.email))
        await self._record(env.id, "signer.invitation_sent", signer.id)

    async def _deliver(self, envelope_id: str, signer_id: str, message: OutgoingEmail) -> bool:
        """Send; a permanent refusal (SMTP 5xx) makes the signer ``undeliverable`` (audit event and
        ``signer.undeliverable`` to the CRM) and is not retried; a transient failure raises (the job retries)."""
        try:
            await self.email.send(message)
        except DeliveryError as exc:
            if not exc.permanent:
                raise
            async with UnitOfWork() as uow:
                env = await uow.envelopes.get(envelope_id, for_update=True)
                if env is not None:
                    env.mark_undeliverable(env.signer(signer_id), exc.detail, self.clock.now())
                    await uow.envelopes.save(env)
            log.warning("email_undeliverable", envelope_id=envelope_id, signer_id=signer_id,
                        reason=mask_addresses(exc.detail))
            return False
        return True

    async def send_reminder(self, payload: dict[str, Any]) -> None:
        """Job handler ``send_reminder``: e-mail the signers who still have to act now.

        Each (signer, slot) is claimed in ``reminder_log`` under the envelope's row lock before its
        e-mail goes out, so a slot is never sent twice — not by two workers, not after a crash. The
        same lock orders it against cancel/decline/sign: an envelope that ended first gets nothing.
        A failed send gives the claim back and the job retries.
        """
        slot = payload["slot"]
        provider = await EnvelopeRow.filter(id=payload["envelope_id"]).values_list("provider", flat=True)
        by_provider = bool(provider) and provider[0] in self.remote_providers
        if by_provider and not slot.startswith("manual:"):
            return  # the provider sends the planned reminders itself (its envelope notifications)
        sent: list[str] = []
        while True:
            claimed = await self._claim_reminder(payload["envelope_id"], slot, payload["expires_at"],
                                                 need_link=not by_provider)
            if claimed is None:
                break
            env, signer, token = claimed
            try:
                if by_provider:
                    assert self.remote is not None
                    await self.remote.remind(env, signer.id)
                else:
                    assert token is not None
                    if not await self._deliver(env.id, signer.id,
                                               render_reminder(await self._context(env, signer, token))):
                        continue
            except Exception:
                await ReminderLog.filter(signer_id=signer.id, slot=slot).delete()
                raise
            sent.append(signer.id)
            await self._record(env.id, "signer.reminder_sent", signer.id,
                               extra={"slot": slot, "channel": env.provider if by_provider else "email"})
            log.info("reminder_sent", envelope_id=env.id, signer_id=signer.id, to=mask_email(signer.email))
        if sent:
            async with UnitOfWork() as uow:
                env_locked = await uow.envelopes.get(payload["envelope_id"], for_update=True)
                if env_locked is not None:
                    env_locked.note("envelope.reminder_sent", self.clock.now(), data={"slot": slot, "signers": sent})
                    await uow.envelopes.save(env_locked, bump=False)

    async def _claim_reminder(
        self, envelope_id: str, slot: str, planned_for: str, *, need_link: bool = True
    ) -> tuple[Envelope, Signer, str | None] | None:
        """The next signer of this slot not yet reminded, claimed; None when nothing is left."""
        now = self.clock.now()
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id, for_update=True)
            if env is None or env.status != EnvelopeStatus.SENT or env.expires_at is None:
                return None
            if env.is_past_expiry(now) or env.expires_at.isoformat() != planned_for:
                return None  # expired (the expiry job records it) or re-planned by an extension
            done = set(await ReminderLog.filter(envelope_id=env.id, slot=slot).using_db(uow.conn)
                       .values_list("signer_id", flat=True))
            for signer in env.pending_signers():
                if signer.id in done:
                    continue
                sealed = await uow.signers.sealed_token(signer.id)
                if sealed is None and need_link:
                    continue
                await ReminderLog.create(using_db=uow.conn, envelope_id=env.id, signer_id=signer.id, slot=slot,
                                         created_at=now)
                return env, signer, self.box.open(sealed) if sealed else None
        return None

    def download_token(self, envelope_id: str, recipient_id: str) -> str:
        """A time-limited link to the signed result (sealed: it cannot be forged or extended)."""
        return self.box.seal(f"{envelope_id}|{recipient_id}", at=self.clock.now())

    def open_download_token(self, token: str) -> tuple[str, str]:
        """(envelope id, recipient id) of a download link: ``NotFoundError`` for a token we never
        issued, ``GoneError`` for one of ours older than :data:`DOWNLOAD_LINK_TTL`."""
        plain = self.box.open_fresh(token, max_age=DOWNLOAD_LINK_TTL, now=self.clock.now())
        if plain is None or "|" not in plain:
            if plain is None and self.box.authentic(token):
                raise GoneError("This download link is no longer valid.", extra={"reason": "download_expired"})
            raise NotFoundError("Unknown download link.", extra={"reason": "download_expired"})
        envelope_id, _, recipient = plain.partition("|")
        return envelope_id, recipient

    async def send_completion(self, payload: dict[str, Any]) -> None:
        """Job ``send_completion``: the envelope ID and a download link of the signed result to each
        signer (of our own ceremony: a provider e-mails its signers itself) and to the sender's contact.
        One e-mail per recipient, even after a retry (claimed in ``reminder_log``, slot ``completed``)."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is None or env.status != EnvelopeStatus.COMPLETED or env.purged_at is not None:
            return
        tenant = await Tenant.get(id=env.tenant_id)
        signers = [] if env.provider in self.remote_providers else [(s.id, s.name, s.email) for s in env.signers]
        await self._notify_once(
            env, tenant, signers, "completed", render_completed, expires_at=self.clock.now() + DOWNLOAD_LINK_TTL,
            link=lambda rid: f"{self.public_url}/download/{self.download_token(env.id, rid)}",
            event="signer.completion_sent",
        )

    async def send_end_notice(self, payload: dict[str, Any]) -> None:
        """Job ``send_end_notice``: a declined or expired request — the signers who had been invited
        (not the one who declined) and the sender's contact learn that it is closed. Once each."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is None or env.status not in (EnvelopeStatus.DECLINED, EnvelopeStatus.EXPIRED):
            return
        kind = env.status.value
        tenant = await Tenant.get(id=env.tenant_id)
        signers = [] if env.provider in self.remote_providers else [
            (s.id, s.name, s.email) for s in env.signers
            if s.notified_at is not None and s.status not in (SignerStatus.DECLINED, SignerStatus.UNDELIVERABLE)
        ]
        assert env.expires_at is not None
        await self._notify_once(
            env, tenant, signers, kind, lambda ctx: render_ended(ctx, kind), expires_at=env.expires_at,
            link=lambda _: self.public_url, event=f"signer.{kind}_notice_sent",
        )

    async def _notify_once(
        self, env: Envelope, tenant: Tenant, signers: list[tuple[str, str, str]], slot: str,
        render: Callable[[MessageContext], OutgoingEmail], *, expires_at: datetime, link: Callable[[str], str],
        event: str,
    ) -> None:
        """One e-mail per recipient — the ``signers`` (id, name, address) and the sender's contact
        address (keyed by the envelope id) — and ``slot``, even after a retry or beside another
        worker: claimed in ``reminder_log`` first, released again if sending fails. Signers' e-mails
        are audited as ``event``."""
        contact = [(env.id, tenant.name, tenant.contact_email)] if tenant.contact_email else []
        for rid, name, address in [*signers, *contact]:
            try:
                await ReminderLog.create(envelope_id=env.id, signer_id=rid, slot=slot, created_at=self.clock.now())
            except IntegrityError:
                continue  # sent before a crash or by another worker
            ctx = MessageContext(
                language=env.language, signer_name=name, signer_email=address, sender_name=tenant.name,
                envelope_name=env.name, envelope_id=env.id, message=None,
                document_names=[d.name for d in env.documents], expires_at=expires_at, link=link(rid),
                reply_to=tenant.contact_email if rid != env.id else None,  # not to the sender's own copy
            )
            try:
                await self.email.send(render(ctx))
            except Exception:
                await ReminderLog.filter(envelope_id=env.id, signer_id=rid, slot=slot).delete()
                raise
            if rid != env.id:
                await self._record(env.id, event, rid)
            log.info("notice_sent", envelope_id=env.id, slot=slot, to=mask_email(address))

    async def send_cancel_notice(self, payload: dict[str, Any]) -> None:
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is None or env.status != EnvelopeStatus.CANCELLED:
            return
        signer = env.signer(payload["signer_id"])
        message = render_cancelled(await self._context(env, signer, None), env.cancel_reason)
        await self.email.send(message)
        await self._record(env.id, "signer.cancel_notice_sent", signer.id)

    async def _record(self, envelope_id: str, type_: str, signer_id: str, extra: dict[str, Any] | None = None) -> None:
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id, for_update=True)
            if env is None:
                return
            env.note(type_, self.clock.now(), env.signer(signer_id), data={"channel": "email", **(extra or {})})
            await uow.envelopes.save(env, bump=False)
