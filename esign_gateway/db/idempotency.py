"""Idempotency keys: claim before the work, complete inside the work's own transaction.

The claim is a plain INSERT on the unique ``(tenant_id, key)``: of two concurrent requests with
one key, exactly one inserts. Completion is a conditional UPDATE (``owner`` and ``in_progress``)
in the same transaction as the envelope it created, so "the envelope exists" and "the key is
done" commit together — a crash in between leaves neither.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from .models import IdempotencyKey

__all__ = ["IdempotencyRepository", "abandon", "find", "forget_expired", "insert", "store_body", "take_over"]

async def insert(
    *, id: str, tenant_id: str, key: str, fingerprint: str, owner: str, now: datetime, lease_until: datetime,
    expires_at: datetime,
) -> bool:
    """Claim ``key`` for this request; False when the tenant already has a row for it."""
    try:
        await IdempotencyKey.create(
            id=id, tenant_id=tenant_id, key=key, fingerprint=fingerprint, status="in_progress", owner=owner,
            lease_until=lease_until, created_at=now, expires_at=expires_at,
        )
    except IntegrityError:
        return False
    return True


async def find(tenant_id: str, key: str) -> IdempotencyKey | None:
    return await IdempotencyKey.filter(tenant_id=tenant_id, key=key).first()


async def forget_expired(tenant_id: str, now: datetime, *, key: str | None = None) -> int:
    qs = IdempotencyKey.filter(tenant_id=tenant_id, expires_at__lte=now)
    if key is not None:
        qs = qs.filter(key=key)
    return await qs.delete()


async def take_over(row: IdempotencyKey, owner: str, lease_until: datetime) -> bool:
    """Take an abandoned claim (its lease ran out) — only if nobody else did first."""
    return bool(
        await IdempotencyKey.filter(id=row.id, owner=row.owner, status="in_progress").update(
            owner=owner, lease_until=lease_until
        )
    )


async def abandon(claim_id: str, owner: str) -> None:
    """The work failed: free the key, so a retry (after fixing the cause) runs again."""
    await IdempotencyKey.filter(id=claim_id, owner=owner, status="in_progress").delete()


async def store_body(claim_id: str, body: str) -> None:
    await IdempotencyKey.filter(id=claim_id, status="done").update(response_body=body)


class IdempotencyRepository:
    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.conn = conn

    async def complete(self, claim_id: str, owner: str, *, envelope_id: str, status: int) -> bool:
        """Mark the claim done in the caller's transaction; False if it is no longer ours."""
        return bool(
            await IdempotencyKey.filter(id=claim_id, owner=owner, status="in_progress")
            .using_db(self.conn)
            .update(status="done", envelope_id=envelope_id, response_status=status)
        )
