"""Unit of work: one database transaction around a use case.

``async with UnitOfWork() as uow:`` opens the transaction; leaving the block normally commits,
an exception rolls back. Repositories write the aggregate's events (audit + outbox) and jobs in
the same transaction, so no state change happens without its evidence and its follow-up work.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from tortoise.transactions import in_transaction

from .idempotency import IdempotencyRepository
from .jobs import JobRepository
from .repositories import EnvelopeRepository
from .signers import SignerSecrets
from .usage import UsageRepository

__all__ = ["UnitOfWork"]


class UnitOfWork:
    envelopes: EnvelopeRepository
    jobs: JobRepository
    signers: SignerSecrets
    usage: UsageRepository
    idempotency: IdempotencyRepository

    def __init__(self) -> None:
        self._ctx: Any = None

    async def __aenter__(self) -> UnitOfWork:
        self._ctx = in_transaction("default")
        self.conn = await self._ctx.__aenter__()
        self.envelopes = EnvelopeRepository(self.conn)
        self.jobs = JobRepository(self.conn)
        self.signers = SignerSecrets(self.conn)
        self.usage = UsageRepository(self.conn)
        self.idempotency = IdempotencyRepository(self.conn)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._ctx.__aexit__(exc_type, exc, tb)
