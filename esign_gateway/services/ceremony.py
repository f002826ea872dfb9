"""The gateway-run signing ceremony (SPEC §5): open the link, get an SMS code, sign or decline.

Two channels: the e-mailed link proves control of the mailbox; the SMS code (the
authenticator) proves possession of the phone. Signing runs in three steps so the slow part
never holds a database transaction: (1) accept the code and mark the signer verified,
(2) sign every document through the provider (off the event loop), (3) record the signature
if every document is still the revision it was made on — if a parallel signer got there first,
sign again on top of their revision.
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from esign_gateway.clock import Clock
from esign_gateway.db.models import Tenant, VerificationCode
from esign_gateway.db.repositories import ConcurrentUpdate
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain import otp
from esign_gateway.domain.envelope import Document, Envelope, Signer
from esign_gateway.domain.ids import uuid7
from esign_gateway.domain.masking import mask_phone
from esign_gateway.domain.policy import token_hash
from esign_gateway.domain.states import EnvelopeStatus, InvalidTransition, SignerStatus
from esign_gateway.errors import (
    CodeRejectedError,
    DeliveryError,
    GoneError,
    InvalidStateError,
    NotFoundError,
    ProviderError,
    TooManyRequestsError,
    ValidationFailedError,
)
from esign_gateway.messages import render_code_sms
from esign_gateway.metrics import Metrics
from esign_gateway.ports import DocumentStore, PageRenderer, PageSize, SignatureProvider, SignatureRequest, SmsSender
from esign_gateway.secretbox import SecretBox

from .archive import refuse_if_purged
from .download_links import issue_download_link, mint_download_links, open_download_link, revoke_download_links
from .envelopes import issue_signer_links

__all__ = ["CeremonyService", "CodeSent", "SignerView"]

log = structlog.get_logger(__name__)
SIGN_RETRIES = 5


@dataclass(frozen=True, slots=True)
class SignerView:
    envelope: Envelope
    signer: Signer
    sender_name: str
    code_sent_at: datetime | None = None
    """When the signer's newest SMS code still usable was sent (None: no live code)."""
    next_code_at: datetime | None = None
    """When another code may be asked for (None: now)."""


@dataclass(frozen=True, slots=True)
class CodeSent:
    sent_to: str
    expires_in: int
    resend_after: int


@dataclass(frozen=True, slots=True)
class Client:
    """Where a signer's request came from (evidence)."""

    ip: str | None
    user_agent: str | None


def _recently_verified(signer: Signer, now: datetime) -> bool:
    return (
        signer.status == SignerStatus.VERIFIED
        and signer.verified_at is not None
        and now - signer.verified_at < otp.VERIFIED_GRACE
    )


def _gone(env: Envelope, signer: Signer | None = None) -> GoneError:
    """A dead link, saying why; for a completed envelope it names who asks (the page offers the result)."""
    reason = env.status.value
    texts = {
        "expired": "The signing link has expired.",
        "cancelled": "The sender cancelled this signing request.",
        "completed": "All parties have signed this envelope.",
        "declined": "This signing request was declined.",
    }
    extra: dict[str, str] = {"reason": reason, "language": env.language}
    if signer is not None and env.status == EnvelopeStatus.COMPLETED:
        extra.update(envelope_id=env.id, signer_id=signer.id)
    return GoneError(texts.get(reason, "This link is no longer valid."), extra=extra)


class CeremonyService:
    def __init__(
        self, *, clock: Clock, providers: dict[str, SignatureProvider], store: DocumentStore, sms: SmsSender,
        box: SecretBox, pepper: bytes, pages: PageRenderer | None = None, metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.pages = pages
        """The documents' page images (None: the page offers the PDF download only)."""
        self.clock = clock
        self.providers = providers
        self.store = store
        self.sms = sms
        self.box = box
        self.pepper = pepper

    # ------------------------------------------------------------------ lookup
    async def _resolve(self, uow: UnitOfWork, token: str, *, for_update: bool) -> tuple[Envelope, Signer]:
        if not token or len(token) > 100:
            raise NotFoundError("Unknown signing link.")
        found = await uow.signers.find(token_hash(token))
        if found is None:
            raise NotFoundError("Unknown signing link.")
        structlog.contextvars.bind_contextvars(envelope_id=found[0])  # the request's log lines name it
        env = await uow.envelopes.get(found[0], for_update=for_update)
        if env is None:
            raise NotFoundError("Unknown signing link.")
        return env, env.signer(found[1])

    async def _open_for_action(self, uow: UnitOfWork, token: str) -> tuple[Envelope, Signer, GoneError | None]:
        """Load for a change. Expiry is enforced here, whatever the background sweep did."""
        env, signer = await self._resolve(uow, token, for_update=True)
        now = self.clock.now()
        try:
            env.ensure_signable(now)
        except InvalidTransition:
            if env.events:  # just expired: record it with the refusal
                await uow.signers.forget_sealed(env.id)
                await uow.envelopes.save(env)
            return env, signer, _gone(env, signer)
        return env, signer, None

    async def view(self, token: str, client: Client) -> SignerView:
        """The signer opened the link: record it (first time: ``signer.viewed``). The view says
        whether a code is out and when another may be asked for (the page's step 1)."""
        now = self.clock.now()
        async with UnitOfWork() as uow:
            env, signer, gone = await self._open_for_action(uow, token)
            if gone is None and signer.can_act:
                env.mark_viewed(signer, now, client.ip, client.user_agent)
                await uow.envelopes.save(env)
            codes = await VerificationCode.filter(
                signer_id=signer.id, created_at__gt=now - timedelta(hours=1)
            ).using_db(uow.conn).order_by("created_at").values("created_at", "expires_at", "dead", "used_at")
        if gone is not None:
            raise gone
        sender = await Tenant.get(id=env.tenant_id)
        live = [c["created_at"] for c in codes if not c["dead"] and c["used_at"] is None and c["expires_at"] > now]
        throttle = otp.next_code_allowed_at([c["created_at"] for c in codes], now)
        return SignerView(env, signer, sender.name, code_sent_at=live[-1] if live else None,
                          next_code_at=throttle.retry_at)

    async def summary(self, token: str) -> SignerView | None:
        """What a closed link's page names (envelope, sender, ID, this signer's part), read only;
        None for a link that was never ours."""
        try:
            async with UnitOfWork() as uow:
                env, signer = await self._resolve(uow, token, for_update=False)
        except NotFoundError:
            return None
        sender = await Tenant.get(id=env.tenant_id)
        return SignerView(env, signer, sender.name)

    async def _readable(self, token: str, document_id: str) -> Document:
        """A document the link may read: while the envelope is open, and its result once completed."""
        async with UnitOfWork() as uow:
            env, _signer, gone = await self._open_for_action(uow, token)
        if gone is not None and env.status != EnvelopeStatus.COMPLETED:
            raise gone
        try:
            return env.document(document_id)
        except KeyError:
            raise NotFoundError("No such document.") from None

    async def document(self, token: str, document_id: str) -> tuple[str, bytes]:
        doc = await self._readable(token, document_id)
        return doc.name, await self.store.get(doc.current_sha256)

    async def page_sizes(self, doc: Document) -> list[PageSize] | None:
        """The displayed size of each page of ``doc`` as it stands (None: no page images here)."""
        if self.pages is None:
            return None
        sha = doc.current_sha256
        return await self.pages.sizes(sha, lambda: self.store.get(sha))

    async def page_image(self, token: str, document_id: str, page: int, width: int) -> tuple[bytes, str]:
        """Page ``page`` (0-based) of a document the link may read, as PNG, and the version it shows."""
        doc = await self._readable(token, document_id)
        if self.pages is None:
            raise NotFoundError("Page images are not offered here.")
        sha = doc.current_sha256
        try:
            return await self.pages.render(sha, page, width, lambda: self.store.get(sha)), sha
        except IndexError:
            raise NotFoundError(f"The document has no page {page + 1}.") from None

    # ------------------------------------------------------------------ code
    async def request_code(self, token: str, client: Client) -> CodeSent:
        now = self.clock.now()
        code = otp.new_code()
        async with UnitOfWork() as uow:
            env, signer, gone = await self._open_for_action(uow, token)
            if gone is not None:
                raise_after: Exception | None = gone
            elif not signer.can_act:
                raise_after = InvalidStateError(f"No code is needed: the signer is {signer.status.value}.")
            else:
                raise_after = None
                recent = await VerificationCode.filter(
                    signer_id=signer.id, created_at__gt=now - timedelta(hours=1)
                ).using_db(uow.conn).values_list("created_at", flat=True)
                throttle = otp.next_code_allowed_at(list(recent), now)
                if not throttle.allowed:
                    assert throttle.retry_at is not None
                    wait = max(1, math.ceil((throttle.retry_at - now).total_seconds()))
                    raise_after = TooManyRequestsError(
                        f"A new code can be sent in {wait} s.", extra={"retry_after": wait},
                        headers={"Retry-After": str(wait)},
                    )
                else:
                    await VerificationCode.filter(signer_id=signer.id, dead=False).using_db(uow.conn).update(dead=True)
                    await VerificationCode.create(
                        using_db=uow.conn, id=str(uuid7()), signer_id=signer.id,
                        digest=otp.code_digest(self.pepper, signer.id, code), created_at=now,
                        expires_at=now + otp.CODE_LIFETIME,
                        attempts=otp.Tries(total=signer.failed_attempts).new_code().on_code,
                    )
                    if signer.viewed_at is None:
                        env.mark_viewed(signer, now, client.ip, client.user_agent)
                    env.note("signer.code_sent", now, signer, actor="signer",
                             data={"channel": "sms", "to": mask_phone(signer.phone)},
                             ip=client.ip, user_agent=client.user_agent)
                    await uow.envelopes.save(env)
        if raise_after is not None:
            raise raise_after
        sender = await Tenant.get(id=env.tenant_id)
        try:
            with self.metrics.sending("sms"):
                await self.sms.send(render_code_sms(env.language, signer.phone, code, env.name, sender.name))
        except DeliveryError:
            await VerificationCode.filter(signer_id=signer.id, dead=False).update(dead=True)
            log.warning("sms_failed", envelope_id=env.id, signer_id=signer.id)
            raise
        return CodeSent(mask_phone(signer.phone), int(otp.CODE_LIFETIME.total_seconds()),
                        int(otp.RESEND_INTERVAL.total_seconds()))

    async def _verify(self, token: str, code: str | None, client: Client) -> tuple[Envelope, str]:
        """Step 1: accept the code (or a recent verification). Returns the envelope as committed and
        the signer's id."""
        now = self.clock.now()
        async with UnitOfWork() as uow:
            env, signer, gone = await self._open_for_action(uow, token)
            if gone is not None:
                error: Exception | None = gone
            elif _recently_verified(signer, now):
                error = None  # a retry after a failed signing step: the code was already accepted
            elif not signer.can_act:
                error = InvalidStateError(f"The signer is {signer.status.value}.")
            else:
                error = await self._check_code(uow, env, signer, code or "", now, client)
                await uow.envelopes.save(env)
        if error is not None:
            raise error
        return env, signer.id

    async def _check_code(
        self, uow: UnitOfWork, env: Envelope, signer: Signer, code: str, now: datetime, client: Client
    ) -> Exception | None:
        live = await VerificationCode.filter(signer_id=signer.id, dead=False, used_at=None).using_db(
            uow.conn
        ).order_by("-created_at").first()
        if live is None or live.expires_at <= now:
            return CodeRejectedError(
                "There is no valid code: request a new one.",
                extra={"attempts_left": otp.Tries(total=signer.failed_attempts).left_total, "code_expired": True},
            )
        expected = otp.code_digest(self.pepper, signer.id, code)
        if hmac.compare_digest(expected, live.digest):
            live.used_at = now
            live.dead = True
            await live.save(using_db=uow.conn, update_fields=["used_at", "dead"])
            env.mark_verified(signer, now, client.ip, client.user_agent)
            return None
        tries = otp.Tries(on_code=live.attempts, total=signer.failed_attempts).wrong()
        live.attempts = tries.on_code
        live.dead = tries.code_dead
        await live.save(using_db=uow.conn, update_fields=["attempts", "dead"])
        if env.record_code_rejected(signer, now, tries=tries, ip=client.ip, user_agent=client.user_agent):
            return CodeRejectedError(
                "Too many wrong codes: signing is blocked. Contact the sender.",
                extra={"attempts_left": 0, "auth_failed": True},
            )
        return CodeRejectedError(
            "The code is not correct." + ("" if tries.left_on_code else " Request a new code."),
            extra={"attempts_left": tries.attempts_left,
                   "attempts_left_total": tries.left_total, "code_dead": tries.code_dead},
        )

    # ------------------------------------------------------------------ sign / decline
    async def sign(self, token: str, code: str | None, agree: bool, client: Client) -> Envelope:
        if agree is not True:
            raise ValidationFailedError(errors=[{"field": "agree", "message": "the signer must agree to sign"}])
        env, signer_id = await self._verify(token, code, client)
        envelope_id = env.id
        for attempt in range(SIGN_RETRIES):
            if attempt:  # the envelope changed under us: sign on top of what is there now
                async with UnitOfWork() as uow:
                    reloaded = await uow.envelopes.get(envelope_id)
                assert reloaded is not None
                env = reloaded
            signer = env.signer(signer_id)
            if env.status != EnvelopeStatus.SENT or signer.status != SignerStatus.VERIFIED:
                raise _gone(env) if env.status != EnvelopeStatus.SENT else InvalidStateError("Not verified.")
            signed: dict[str, str] = {}
            tsa_time = None
            provider = self.providers[env.provider]
            for doc in env.documents:
                pdf = await self.store.get(doc.current_sha256)
                with self.metrics.signing(provider.name):
                    result = await provider.sign(
                        SignatureRequest(
                            pdf=pdf, envelope_id=env.id, document_id=doc.id, signer_id=signer.id,
                            signer_name=signer.name, signer_email=signer.email, field_name=f"Signature-{signer.id}",
                            slot=signer.position, placement=doc.placements.get(signer.id),
                            verification=f"e-mail link + SMS code to {mask_phone(signer.phone)}",
                            language=env.language,
                            final=sum(1 for s in env.signers if s.status != SignerStatus.SIGNED) == 1,
                        )
                    )
                signed[doc.id] = await self.store.put(result.pdf)
                tsa_time = tsa_time or result.timestamp
            try:
                async with UnitOfWork() as uow:
                    current = await uow.envelopes.get(envelope_id, for_update=True)
                    assert current is not None
                    # Our signature is good if every document is still the revision we signed on top of;
                    # other changes meanwhile (a page view, a code sent to a parallel signer) do not matter.
                    if any(current.document(d.id).current_sha256 != d.current_sha256 for d in env.documents):
                        raise ConcurrentUpdate(envelope_id)
                    now = self.clock.now()
                    try:
                        nxt = current.record_signature(current.signer(signer_id), now, signed, tsa_time,
                                                       client.ip, client.user_agent)
                    except InvalidTransition:
                        refused: Exception | None = _gone(current)
                        await uow.envelopes.save(current)
                    else:
                        refused = None
                        await issue_signer_links(uow, self.box, current, nxt, now)
                        if current.status == EnvelopeStatus.COMPLETED:
                            await uow.signers.forget_sealed(current.id)
                            # each signer's one link to the result, minted with the completion
                            await mint_download_links(uow.conn, self.box, current.id,
                                                      [s.id for s in current.signers], now, now)
                        await uow.envelopes.save(current)
            except ConcurrentUpdate:
                log.info("signature_rebased", envelope_id=envelope_id, signer_id=signer_id)
                continue
            if refused is not None:
                raise refused
            return current
        raise ProviderError("The envelope kept changing while signing; try again.")

    async def decline(self, token: str, reason: str, client: Client) -> Envelope:
        reason = reason.strip()
        if not reason or len(reason) > 1000:
            raise ValidationFailedError(errors=[{"field": "reason", "message": "1 to 1000 characters"}])
        async with UnitOfWork() as uow:
            env, signer, gone = await self._open_for_action(uow, token)
            if gone is not None:
                error: Exception | None = gone
            elif not signer.can_act:
                error = InvalidStateError(f"The signer is {signer.status.value}.")
            else:
                error = None
                env.decline(signer, reason, self.clock.now(), client.ip, client.user_agent)
                await uow.signers.forget_sealed(env.id)
                await uow.envelopes.save(env)
        if error is not None:
            raise error
        return env

    # ------------------------------------------------------------------ the signed result's link
    async def download_link(self, envelope_id: str, signer_id: str) -> str | None:
        """The token of the signer's one download link of this completion, for the completed page;
        None once it expired or was revoked (the page then offers no download)."""
        issued = await issue_download_link(self.box, envelope_id, signer_id, self.clock.now())
        return issued.token if issued is not None and issued.live else None

    async def open_download(self, token: str) -> str:
        """The envelope id of a live download link (``404`` never ours, ``410`` expired or revoked)."""
        envelope_id, _ = await open_download_link(self.box, token, self.clock.now())
        structlog.contextvars.bind_contextvars(envelope_id=envelope_id)
        return envelope_id

    async def revoke_download_links(self, envelope_id: str, tenant_id: str | None, *, actor: str) -> int:
        """Kill the download links of a completed envelope (the sender via the API, ``actor="api"``;
        support via the command line, ``actor="support"``); recorded in the audit trail. Returns
        how many live links died (0 when called again)."""
        now = self.clock.now()
        async with UnitOfWork() as uow:
            env = await uow.envelopes.get(envelope_id, tenant_id=tenant_id, for_update=True)
            if env is None:
                raise NotFoundError(f"No envelope {envelope_id}.")
            refuse_if_purged(env)
            if env.status != EnvelopeStatus.COMPLETED:
                raise InvalidStateError(
                    f"Download links exist once the envelope is completed; it is {env.status.value}.")
            count = await revoke_download_links(uow.conn, self.box, env.id, now)
            env.note("envelope.download_links_revoked", now, actor=actor, data={"links": count})
            await uow.envelopes.save(env, bump=False)
        log.info("download_links_revoked", envelope_id=envelope_id, links=count, actor=actor)
        return count
