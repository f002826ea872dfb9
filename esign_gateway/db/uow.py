"""Unit of work: one database transaction around a use case.

``async with UnitOfWork() as uow:`` opens the transaction; leaving the block normally commits,
an exception rolls back. Repositories write the aggregate's events (audit + outbox) and jobs in
the same transaction, so no state change happens without its evidence and its follow-up work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

from tortoise.transactions import in_transaction

from esign_gateway.domain.envelope import RETENTION_YEARS
from esign_gateway.domain.policy import UNSIGNED_RETENTION_DAYS

from .idempotency import IdempotencyRepository
from .jobs import JobRepository, enqueued
from .repositories import EnvelopeRepository
from .signers import SignerSecrets
from .usage import UsageRepository

__all__ = ["RetentionPolicy", "UnitOfWork"]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long evidence is kept (SPEC §2 rule 6, §10); bootstrap sets it from the settings."""

    completed_years: int = RETENTION_YEARS
    unsigned_days: int = UNSIGNED_RETENTION_DAYS


class UnitOfWork:
    retention: ClassVar[RetentionPolicy] = RetentionPolicy()
    on_jobs_committed: ClassVar[Callable[[], None] | None] = None
    """Called after a commit that enqueued jobs (bootstrap: wake this process's worker, so the
    follow-up work — e-mails, the sealed report — starts now rather than at the next poll)."""
    envelopes: EnvelopeRepository
    jobs: JobRepository
    signers: SignerSecrets
    usage: UsageRepository
    idempotency: IdempotencyRepository

    def __init__(self) -> None:
        self._ctx: Any = None

    async def __aenter__(self) -> UnitOfWork:
        self._enqueued = enqueued.set(False)
        self._ctx = in_transaction("default")
        self.conn = await self._ctx.__aenter__()
        self.envelopes = EnvelopeRepository(self.conn, self.retention.completed_years, self.retention.unsigned_days)
        self.jobs = JobRepository(self.conn)
        self.signers = SignerSecrets(self.conn)
        self.usage = UsageRepository(self.conn)
        self.idempotency = IdempotencyRepository(self.conn)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._ctx.__aexit__(exc_type, exc, tb)
            if exc_type is None and enqueued.get() and self.on_jobs_committed is not None:
                self.on_jobs_committed()
        finally:
            enqueued.reset(self._enqueued)
