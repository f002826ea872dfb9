"""``Idempotency-Key`` for the two calls that spend money: create and send (SPEC §4).

Protocol, per (tenant, key), for 24 hours:

* first request: claims the key (a unique row), does the work, and marks the key *done in the
  same transaction* as the envelope it created or sent — exactly one envelope, one charge;
* the same key and the same request again: the first response is replayed, nothing is counted;
* the same key with a different request: ``422 idempotency_conflict``;
* while the first is still running: ``409 idempotency_in_progress`` (retry shortly);
* when the first failed (any error): the key is freed, so a retry after fixing the cause (e.g.
  raising the plan after ``402 quota_exceeded``) runs again. A request that died mid-way (a
  crashed process) frees its key when its 5-minute lease runs out.

"The same request" is compared by a fingerprint of its meaning (parsed fields and document
SHA-256), so a multipart retry with a new boundary is still the same request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from esign_gateway.clock import Clock
from esign_gateway.db import idempotency as store
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.ids import uuid7
from esign_gateway.errors import IdempotencyConflictError, IdempotencyInProgressError, ValidationFailedError

__all__ = ["Claim", "IdempotencyService", "Replay"]

TTL = timedelta(hours=24)
LEASE = timedelta(minutes=5)
MAX_KEY = 255


@dataclass(frozen=True, slots=True)
class Claim:
    id: str
    owner: str


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    envelope_id: str
    body: str | None
    """The first response's body; None when its process died after committing (re-render it)."""


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class IdempotencyService:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    @staticmethod
    def validate_key(raw: str) -> str:
        if not 1 <= len(raw) <= MAX_KEY or not raw.isascii() or not raw.isprintable():
            raise ValidationFailedError(
                errors=[{"field": "Idempotency-Key", "message": f"1 to {MAX_KEY} printable ASCII characters"}]
            )
        return raw

    @staticmethod
    async def fingerprint(operation: str, request: Any) -> str:
        """SHA-256 of the request's meaning: ``operation`` plus its parsed fields (a dataclass or
        JSON-like value; bytes count by their SHA-256). Hashing runs off the loop (documents are large)."""
        def digest() -> str:
            fields = dataclasses.asdict(request) if dataclasses.is_dataclass(request) else request
            canonical = json.dumps([operation, _plain(fields)], sort_keys=True, ensure_ascii=False, default=str)
            return hashlib.sha256(canonical.encode()).hexdigest()

        return await asyncio.to_thread(digest)

    async def begin(self, tenant_id: str, key: str, fingerprint: str) -> Claim | Replay:
        now = self.clock.now()
        owner = secrets.token_hex(16)
        await store.forget_expired(tenant_id, now)
        for _ in range(3):
            claim_id = str(uuid7())
            if await store.insert(
                id=claim_id, tenant_id=tenant_id, key=key, fingerprint=fingerprint, owner=owner, now=now,
                lease_until=now + LEASE, expires_at=now + TTL,
            ):
                return Claim(claim_id, owner)
            row = await store.find(tenant_id, key)
            if row is None:
                continue  # freed meanwhile: claim again
            if row.expires_at <= now:
                await store.forget_expired(tenant_id, now, key=key)
                continue
            if row.fingerprint != fingerprint:
                raise IdempotencyConflictError(
                    "This Idempotency-Key was used with a different request in the last 24 hours; "
                    "use a new key for a new request."
                )
            if row.status == "done":
                assert row.response_status is not None and row.envelope_id is not None
                return Replay(row.response_status, row.envelope_id, row.response_body)
            if row.lease_until <= now and await store.take_over(row, owner, now + LEASE):
                return Claim(row.id, owner)
            raise IdempotencyInProgressError(
                "A request with this Idempotency-Key is still being processed; retry in a moment.",
                headers={"Retry-After": "1"},
            )
        raise IdempotencyInProgressError("The Idempotency-Key is contended; retry in a moment.",
                                         headers={"Retry-After": "1"})

    @staticmethod
    async def complete(uow: UnitOfWork, claim: Claim | None, *, envelope_id: str, status: int) -> None:
        """Inside the work's transaction: the key is done exactly when the work commits."""
        if claim is None:
            return
        if not await uow.idempotency.complete(claim.id, claim.owner, envelope_id=envelope_id, status=status):
            raise IdempotencyInProgressError("Another request took over this Idempotency-Key.",
                                             headers={"Retry-After": "1"})

    @staticmethod
    async def remember(claim: Claim, body: str) -> None:
        """Keep the response to replay it byte for byte."""
        await store.store_body(claim.id, body)

    @staticmethod
    async def abandon(claim: Claim) -> None:
        await store.abandon(claim.id, claim.owner)
