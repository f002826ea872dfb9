"""Signer e-mails, sent by job handlers (at-least-once, idempotent by state checks).

A handler re-reads the envelope: an invitation is only sent while the signer still has to act,
a cancellation notice only for a cancelled envelope. The e-mail goes out, then its audit event
is recorded; a crash in between re-sends the same link (never a second, different one).

Outages: a send that fails on the transport's side (connection refused, a 4xx answer) raises
``Postponed`` — the job is tried again every ≤15 min for as long as the message matters: an
invitation or reminder while its envelope is open, a closing notice for :data:`NOTICE_PATIENCE`
after the envelope ended. A message that no longer matters ends its job with ``Dropped`` and the
reason. A permanent refusal (5xx for the recipient) is never retried.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from tortoise.exceptions import IntegrityError

from esign_gateway.clock import Clock
from esign_gateway.db import jobs as queue
from esign_gateway.db.jobs import Dropped, Postponed
from esign_gateway.db.models import AuditEvent, EnvelopeRow, ReminderLog, Tenant
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.envelope import Envelope, Signer
from esign_gateway.domain.masking import mask_addresses, mask_email
from esign_gateway.domain.states import EnvelopeStatus, SignerStatus
from esign_gateway.errors import DeliveryError
from esign_gateway.messages import (
    MessageContext,
    Operator,
    render_cancelled,
    render_completed,
    render_ended,
    render_invitation,
    render_reminder,
)
from esign_gateway.metrics import Metrics
from esign_gateway.ports import ComponentHealth, EmailSender, OutgoingEmail
from esign_gateway.secretbox import SecretBox

from .branding import branding_of
from .download_links import DOWNLOAD_LINK_TTL, issue_download_link
from .remote import RemoteCeremonyService

__all__ = ["NotificationService"]

log = structlog.get_logger(__name__)

MAIL_JOB_KINDS = ("send_invitation", "send_reminder", "send_completion", "send_cancel_notice", "send_end_notice")
"""The jobs that send e-mail (their handlers are this service's methods of the same names)."""
QUEUE_HEALTH_TTL = timedelta(seconds=10)
NOTICE_PATIENCE = timedelta(days=7)
"""How long after an envelope ended its closing notices (completed, cancelled, declined, expired)
are still worth waiting for a mail server: after that a failed send is an ordinary failure."""


class NotificationService:
    def __init__(
        self, *, clock: Clock, email: EmailSender, box: SecretBox, public_url: str,
        remote: RemoteCeremonyService | None = None, remote_providers: frozenset[str] = frozenset(),
        metrics: Metrics | None = None, operator: Operator | None = None, service_name: str = "esign-gateway",
    ) -> None:
        self.operator = operator or Operator()
        """Named in every e-mail's footer (``ESIGN_OPERATOR_NAME`` …)."""
        self.service_name = service_name
        """The gateway's name in the From display name: "Demo s.r.o. přes <service_name>"."""
        self.clock = clock
        self.email = email
        self.metrics = metrics or Metrics()
        self.box = box
        self.public_url = public_url
        self.remote = remote
        self.remote_providers = remote_providers
        """Providers that run their own ceremony: they send invitations, codes and planned reminders."""
        self._queue_health: tuple[datetime, ComponentHealth] | None = None

    async def queue_health(self) -> ComponentHealth:
        """``mail_queue`` in ``/readyz``: e-mails a transport outage holds back, as every process
        sees them in the job table (the web process of a split deployment sends no e-mail, so its
        own ``email`` component cannot see an outage the workers meet). Read at most every 10 s."""
        now = self.clock.now()
        if self._queue_health is not None and now - self._queue_health[0] < QUEUE_HEALTH_TTL:
            return self._queue_health[1]
        backlog = await queue.postponed(MAIL_JOB_KINDS)
        if not backlog.jobs:
            health = ComponentHealth("mail_queue", True, "no e-mail is held back by an outage")
        else:
            since = f", the oldest since {backlog.oldest:%Y-%m-%d %H:%M} UTC" if backlog.oldest else ""
            last = f" (last: {backlog.last_error[:160]})" if backlog.last_error else ""
            health = ComponentHealth("mail_queue", False,
                                     f"{backlog.jobs} e-mail(s) held back by a mail transport outage{since}{last}")
        self._queue_health = (now, health)
        return health

    async def _send(self, message: OutgoingEmail) -> None:
        with self.metrics.sending("email"):  # counted by outcome, whatever transport is set
            await self.email.send(message)

    async def _context(self, env: Envelope, signer: Signer, token: str | None) -> MessageContext:
        tenant = await Tenant.get(id=env.tenant_id)
        assert env.expires_at is not None
        return MessageContext(
            language=env.language, signer_name=signer.name, signer_email=signer.email, sender_name=tenant.name,
            envelope_name=env.name, envelope_id=env.id, message=env.message,
            document_names=[d.name for d in env.documents], expires_at=env.expires_at,
            link=f"{self.public_url}/sign/{token}" if token else f"{self.public_url}/",
            reply_to=tenant.contact_email,  # a signer's answer reaches the sender, not a no-reply box
            **await self._branding(tenant),
        )

    async def _branding(self, tenant: Tenant) -> dict[str, Any]:
        """The tenant's From display name, logo URL and accent, and the operator's footer."""
        brand = await branding_of(tenant.id)
        return {"from_name": brand.display_name, "service_name": self.service_name, "accent": brand.accent,
                "logo_url": f"{self.public_url}{brand.logo_path}" if brand.logo_path else None,
                "operator": self.operator}

    async def send_invitation(self, payload: dict[str, Any]) -> None:
        """Job ``send_invitation``: the signer's link, while the envelope is open and the signer
        still has to act (else ``Dropped``); postponed through a mail outage."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
            sealed = None
            if env is None:
                obsolete: str | None = "the envelope no longer exists"
            elif env.is_past_expiry(self.clock.now()):
                obsolete = "the envelope expired"
            elif env.status != EnvelopeStatus.SENT:
                obsolete = f"the envelope is {env.status.value}"
            else:
                signer = env.signer(payload["signer_id"])
                sealed = await uow.signers.sealed_token(signer.id)
                obsolete = (f"the signer is {signer.status.value}" if not signer.can_act
                            else "the signer's link was withdrawn" if sealed is None else None)
        if obsolete is not None or env is None or sealed is None:
            log.info("invitation_dropped", envelope_id=payload["envelope_id"], signer_id=payload["signer_id"],
                     reason=obsolete)
            raise Dropped(obsolete or "nothing to send")
        message = render_invitation(await self._context(env, signer, self.box.open(sealed)))
        if not await self._deliver(env.id, signer.id, message):
            return
        log.info("invitation_sent", envelope_id=env.id, signer_id=signer.id, to=mask_email(signer.email))
        await self._record(env.id, "signer.invitation_sent", signer.id)

    async def _deliver(self, envelope_id: str, signer_id: str, message: OutgoingEmail) -> bool:
        """Send; a permanent refusal (SMTP 5xx) makes the signer ``undeliverable`` (audit event and
        ``signer.undeliverable`` to the CRM) and is not retried; a transient failure raises
        ``Postponed`` (the job is tried again while the envelope is open)."""
        try:
            await self._send(message)
        except DeliveryError as exc:
            if not exc.permanent:
                raise Postponed(exc.detail or "the mail server is unavailable") from exc
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
        A failed send gives the claim back and the job retries (through a mail outage: postponed,
        as long as the slot is still ahead of the envelope's expiry). A reminder that cannot be sent
        leaves ``signer.reminder_failed`` in the audit trail: refused for good (``undeliverable``),
        or claimed by a worker that died before recording it (``interrupted``; see
        :meth:`_trace_interrupted`).
        """
        slot = payload["slot"]
        provider = await EnvelopeRow.filter(id=payload["envelope_id"]).values_list("provider", flat=True)
        by_provider = bool(provider) and provider[0] in self.remote_providers
        if by_provider and not slot.startswith("manual:"):
            return  # the provider sends the planned reminders itself (its envelope notifications)
        sent: list[str] = []
        try:
            await self._trace_interrupted(payload["envelope_id"], slot)
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
                            await self._record(env.id, "signer.reminder_failed", signer.id,
                                               extra={"slot": slot, "reason": "undeliverable"})
                            continue
                except Exception:
                    # give the claim back: the retry sends this signer's reminder after all
                    await ReminderLog.filter(signer_id=signer.id, slot=slot).delete()
                    raise
                sent.append(signer.id)
                await self._record(env.id, "signer.reminder_sent", signer.id,
                                   extra={"slot": slot, "channel": env.provider if by_provider else "email"})
                log.info("reminder_sent", envelope_id=env.id, signer_id=signer.id, to=mask_email(signer.email))
        finally:
            if sent:  # also when a later signer's send failed: the CRM hears of the ones that went out
                async with UnitOfWork() as uow:
                    env_locked = await uow.envelopes.get(payload["envelope_id"], for_update=True)
                    if env_locked is not None:
                        env_locked.note("envelope.reminder_sent", self.clock.now(),
                                        data={"slot": slot, "signers": sent})
                        await uow.envelopes.save(env_locked, bump=False)

    async def _trace_interrupted(self, envelope_id: str, slot: str) -> None:
        """Record ``signer.reminder_failed`` (reason ``interrupted``) for each claim of this slot
        that has no ``signer.reminder_sent`` or ``signer.reminder_failed`` of its own.

        The claim is written before the e-mail and the record after it, and a failed send gives
        its claim back; so such a claim, found when the job runs again, was left by a worker that
        died in between. Whether its e-mail went out is unknown; it is not sent again (never
        twice), and the trail says so instead of staying silent."""
        claimed = set(await ReminderLog.filter(envelope_id=envelope_id, slot=slot).values_list("signer_id", flat=True))
        if not claimed:
            return
        events = await AuditEvent.filter(
            envelope_id=envelope_id, type__in=("signer.reminder_sent", "signer.reminder_failed")
        ).values_list("signer_id", "data")
        recorded = {signer_id for signer_id, data in events if isinstance(data, dict) and data.get("slot") == slot}
        for signer_id in sorted(claimed - recorded):
            await self._record(envelope_id, "signer.reminder_failed", signer_id,
                               extra={"slot": slot, "reason": "interrupted"})
            log.warning("reminder_interrupted", envelope_id=envelope_id, signer_id=signer_id)

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
        tokens: dict[str, str] = {}  # each recipient's one link of this completion (a revoked one answers 410)
        for rid in [*(s[0] for s in signers), *([env.id] if tenant.contact_email else [])]:
            issued = await issue_download_link(self.box, env.id, rid, self.clock.now())
            assert issued is not None  # completed and not purged: checked above
            tokens[rid] = issued.token
        assert env.completed_at is not None
        await self._notify_once(
            env, tenant, signers, "completed", render_completed, expires_at=env.completed_at + DOWNLOAD_LINK_TTL,
            link=lambda rid: f"{self.public_url}/download/{tokens[rid]}",
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
                language=env.language, signer_name=name if rid != env.id else "", signer_email=address,
                sender_name=tenant.name, envelope_name=env.name, envelope_id=env.id, message=None,
                document_names=[d.name for d in env.documents], expires_at=expires_at, link=link(rid),
                reply_to=tenant.contact_email if rid != env.id else None,  # not to the sender's own copy
                **await self._branding(tenant),
            )
            try:
                await self._send(render(ctx))
            except DeliveryError as exc:
                if exc.permanent:  # refused for good: kept as sent (not retried), said in the log
                    log.warning("notice_undeliverable", envelope_id=env.id, slot=slot,
                                reason=mask_addresses(exc.detail or ""))
                    continue
                await ReminderLog.filter(envelope_id=env.id, signer_id=rid, slot=slot).delete()
                self._postpone_notice(env, exc)
                raise
            except Exception:
                await ReminderLog.filter(envelope_id=env.id, signer_id=rid, slot=slot).delete()
                raise
            if rid != env.id:
                await self._record(env.id, event, rid)
            log.info("notice_sent", envelope_id=env.id, slot=slot, to=mask_email(address))

    def _postpone_notice(self, env: Envelope, exc: DeliveryError) -> None:
        """Raise ``Postponed`` for a closing notice that failed on the transport's side, while it
        is still worth sending (:data:`NOTICE_PATIENCE` after the envelope ended)."""
        if env.ended_at is None or self.clock.now() < env.ended_at + NOTICE_PATIENCE:
            raise Postponed(exc.detail or "the mail server is unavailable") from exc

    async def send_cancel_notice(self, payload: dict[str, Any]) -> None:
        """Job ``send_cancel_notice``: tell a signer who had been invited that the request is
        withdrawn. A signer whose invitation never went out (a mail outage) learns nothing of it."""
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(payload["envelope_id"])
        if env is None or env.status != EnvelopeStatus.CANCELLED:
            raise Dropped("the envelope is not cancelled" if env else "the envelope no longer exists")
        signer = env.signer(payload["signer_id"])
        invited = await AuditEvent.filter(envelope_id=env.id, signer_id=signer.id,
                                          type="signer.invitation_sent").exists()
        if not invited:
            raise Dropped("the signer's invitation was never sent")
        message = render_cancelled(await self._context(env, signer, None), env.cancel_reason)
        try:
            await self._send(message)
        except DeliveryError as exc:
            if exc.permanent:
                log.warning("notice_undeliverable", envelope_id=env.id, slot="cancelled",
                            reason=mask_addresses(exc.detail or ""))
                return
            self._postpone_notice(env, exc)
            raise
        await self._record(env.id, "signer.cancel_notice_sent", signer.id)

    async def _record(self, envelope_id: str, type_: str, signer_id: str, extra: dict[str, Any] | None = None) -> None:
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id, for_update=True)
            if env is None:
                return
            env.note(type_, self.clock.now(), env.signer(signer_id), data={"channel": "email", **(extra or {})})
            await uow.envelopes.save(env, bump=False)
