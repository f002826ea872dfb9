"""Links to the signed result, ``/download/<token>``: one per completion and recipient, revocable.

A recipient is a signer (keyed by the signer id) or the sender's contact address (keyed by the
envelope id). The link is minted once — for the gateway's own signers in the transaction that
completes the envelope, otherwise when it is first needed (the completion e-mail, the page) — and
lives :data:`DOWNLOAD_LINK_TTL` from the completion, however often the page is opened. The token
(32 random bytes) is looked up by its SHA-256; a Fernet-sealed copy lets the completed page show
the same link again. Revoking marks every link of the envelope dead, and reserves a dead one for
each recipient who had none yet, so no later e-mail or visit brings a live link back.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from esign_gateway.db.models import DownloadLink, EnvelopeRow, SignerRow
from esign_gateway.domain.policy import token_hash
from esign_gateway.errors import GoneError, NotFoundError
from esign_gateway.secretbox import SecretBox

__all__ = ["DOWNLOAD_LINK_TTL", "IssuedLink", "issue_download_link", "mint_download_links", "open_download_link",
           "revoke_download_links"]

DOWNLOAD_LINK_TTL = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class IssuedLink:
    token: str
    expires_at: datetime
    live: bool
    """False once expired or revoked: the link answers ``410``."""


def _new_row(box: SecretBox, envelope_id: str, recipient_id: str, completed_at: datetime, now: datetime,
             *, revoked: bool = False) -> DownloadLink:
    token = secrets.token_urlsafe(32)
    return DownloadLink(envelope_id=envelope_id, recipient_id=recipient_id, token_hash=token_hash(token),
                        token_sealed=box.seal(token), created_at=now, expires_at=completed_at + DOWNLOAD_LINK_TTL,
                        revoked_at=now if revoked else None)


async def mint_download_links(
    conn: BaseDBAsyncClient | None, box: SecretBox, envelope_id: str, recipient_ids: Iterable[str],
    completed_at: datetime, now: datetime, *, revoked: bool = False,
) -> None:
    """A link for each recipient who has none (``INSERT … ON CONFLICT DO NOTHING``: a second call,
    or another process beside us, changes nothing)."""
    rows = [_new_row(box, envelope_id, rid, completed_at, now, revoked=revoked) for rid in recipient_ids]
    if rows:
        await DownloadLink.bulk_create(rows, ignore_conflicts=True, using_db=conn)


async def issue_download_link(box: SecretBox, envelope_id: str, recipient_id: str, now: datetime) -> IssuedLink | None:
    """This recipient's link of the envelope's completion (minted now if it has none yet); None
    while the envelope is not completed or after it was purged."""
    env = await EnvelopeRow.filter(id=envelope_id).only("id", "status", "completed_at", "purged_at").first()
    if env is None or env.status != "completed" or env.completed_at is None or env.purged_at is not None:
        return None
    row = await DownloadLink.filter(envelope_id=envelope_id, recipient_id=recipient_id).first()
    if row is None:
        await mint_download_links(None, box, envelope_id, [recipient_id], env.completed_at, now)
        row = await DownloadLink.get(envelope_id=envelope_id, recipient_id=recipient_id)
    live = row.revoked_at is None and now < row.expires_at
    return IssuedLink(box.open(row.token_sealed), row.expires_at, live)


async def open_download_link(box: SecretBox, token: str, now: datetime) -> tuple[str, str]:
    """(envelope id, recipient id) of a live link: ``NotFoundError`` for a token we never issued,
    ``GoneError`` for one that expired or was revoked.

    A token sealed by an earlier version (``envelope|recipient`` in Fernet, minted on every visit)
    stands for that recipient's stored link, so its lifetime and revocation are the same."""
    if not token or len(token) > 512:
        raise NotFoundError("Unknown download link.", extra={"reason": "download_expired"})
    row = await DownloadLink.filter(token_hash=token_hash(token)).first()
    if row is None:
        plain = box.open_fresh(token, max_age=DOWNLOAD_LINK_TTL, now=now)
        if plain is not None and "|" in plain:
            envelope_id, _, recipient_id = plain.partition("|")
            await issue_download_link(box, envelope_id, recipient_id, now)
            row = await DownloadLink.filter(envelope_id=envelope_id, recipient_id=recipient_id).first()
        elif plain is None and box.authentic(token):  # ours, older than the lifetime
            raise GoneError("This download link is no longer valid.", extra={"reason": "download_expired"})
    if row is None:
        raise NotFoundError("Unknown download link.", extra={"reason": "download_expired"})
    if row.revoked_at is not None:
        raise GoneError("The sender revoked this download link.", extra={"reason": "download_expired"})
    if now >= row.expires_at:
        raise GoneError("This download link is no longer valid.", extra={"reason": "download_expired"})
    return row.envelope_id, row.recipient_id


async def revoke_download_links(conn: BaseDBAsyncClient, box: SecretBox, envelope_id: str, now: datetime) -> int:
    """Kill every live link of the envelope and reserve a dead one for each recipient (the signers
    and the sender's contact) who had none yet. Returns how many live links died."""
    alive = DownloadLink.filter(envelope_id=envelope_id, revoked_at__isnull=True).using_db(conn)
    count = await alive.filter(expires_at__gt=now).count()
    await alive.update(revoked_at=now)
    env = await EnvelopeRow.get(id=envelope_id).using_db(conn)
    signers = await SignerRow.filter(envelope_id=envelope_id).using_db(conn).values_list("id", flat=True)
    assert env.completed_at is not None
    await mint_download_links(conn, box, envelope_id, [envelope_id, *map(str, signers)], env.completed_at, now,
                              revoked=True)
    return int(count)
