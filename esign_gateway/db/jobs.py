"""The durable job table: enqueue inside a use case's transaction; claim with a lease.

Claiming uses ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers can
run; on SQLite the claim's transaction is ``BEGIN IMMEDIATE`` (the write lock up front), so two
claimers are serialised and never take the same job. Either way one UPDATE then takes the rows.

The lease is the due time itself: claiming sets ``status='running'`` and ``due_at = now + lease``;
finishing sets ``done``/``failed``. A job whose worker died is therefore simply *due again* when
its lease runs out, and one index on ``(status, due_at)`` answers "what is due now" for pending
and abandoned jobs alike — an idle poll costs two index probes, however many envelopes are open.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from esign_gateway.domain.masking import mask_addresses

from .models import Job

__all__ = [
    "POSTPONE_CAP", "Backlog", "ClaimedJob", "Dropped", "JobRepository", "Postponed", "backoff", "claim",
    "complete", "enqueued", "fail", "postpone", "postponed", "release",
]

enqueued: ContextVar[bool] = ContextVar("esign_jobs_enqueued", default=False)
"""Set when this task enqueued a job; a unit of work reads it to wake the worker after its commit."""


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


def backoff(attempt: int, cap: timedelta = timedelta(hours=1)) -> timedelta:
    """10 s, 20 s, 40 s … capped at ``cap`` (1 h), with ±20 % jitter."""
    base = min(10 * 2 ** (min(attempt, 32) - 1), cap.total_seconds())
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


POSTPONE_CAP = timedelta(minutes=15)
"""The longest wait between two tries of postponed work: a message goes out at most ~15 min after
its transport is back."""


class Postponed(Exception):
    """Raised by a handler whose work still matters but cannot be done now because something
    outside it is down (the mail server): the job is tried again after :func:`backoff` capped at
    :data:`POSTPONE_CAP`, and this never counts towards ``max_attempts`` — the handler itself ends
    the job (returns, or raises :class:`Dropped`) once the work no longer matters."""


class Dropped(Exception):
    """Raised by a handler whose work no longer matters (an invitation for an envelope cancelled in
    the meantime): the job ends ``done``, its ``last_error`` saying ``dropped: <why>``."""


class JobRepository:
    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.conn = conn

    async def enqueue(
        self, kind: str, payload: dict[str, Any], due_at: datetime, *, dedupe_key: str | None = None,
        max_attempts: int = 8,
    ) -> None:
        """Add a job. With ``dedupe_key`` a second enqueue of the same work is a no-op (``INSERT … ON
        CONFLICT DO NOTHING`` / ``INSERT OR IGNORE``: no read first, and no failed statement that would
        abort a PostgreSQL transaction)."""
        job = Job(kind=kind, payload=payload, due_at=due_at, dedupe_key=dedupe_key, created_at=due_at,
                  max_attempts=max_attempts)
        await Job.bulk_create([job], ignore_conflicts=dedupe_key is not None, using_db=self.conn)
        enqueued.set(True)


async def claim(worker_id: str, now: datetime, *, limit: int = 10, lease: timedelta) -> list[ClaimedJob]:
    """Take up to ``limit`` due jobs (pending, or running with an expired lease)."""
    async with in_transaction("default") as conn:
        qs = Job.filter(status__in=("pending", "running"), due_at__lte=now).order_by("due_at").limit(limit)
        qs = qs.using_db(conn)
        if conn.capabilities.dialect == "postgres":
            qs = qs.select_for_update(skip_locked=True)
        rows = await qs
        if not rows:
            return []
        # The rows are ours until commit (row locks on PostgreSQL, the write lock of BEGIN IMMEDIATE
        # on SQLite), so one UPDATE takes them all.
        await Job.filter(id__in=[row.id for row in rows]).using_db(conn).update(
            status="running", due_at=now + lease, locked_until=now + lease, locked_by=worker_id,
            attempts=F("attempts") + 1,
        )
        return [ClaimedJob(row.id, row.kind, row.payload, row.attempts + 1, row.max_attempts) for row in rows]


async def release(job: ClaimedJob, worker_id: str, now: datetime) -> None:
    """Give back a claimed job that was never started (shutdown): due now, attempt not counted."""
    await Job.filter(id=job.id, locked_by=worker_id, status="running").update(
        status="pending", due_at=now, locked_until=None, locked_by=None, attempts=job.attempts - 1
    )


async def complete(job_id: int, worker_id: str, now: datetime, *, note: str | None = None) -> None:
    """Finish a job; ``note`` (why it ended without doing its work) replaces ``last_error``."""
    done: dict[str, object] = {"status": "done", "finished_at": now, "locked_until": None}
    if note is not None:
        done["last_error"] = mask_addresses(note)[:2000]
    await Job.filter(id=job_id, locked_by=worker_id).update(**done)


async def postpone(job: ClaimedJob, worker_id: str, now: datetime, reason: str) -> datetime:
    """Try a :class:`Postponed` job again later, whatever its attempts; returns when it is due."""
    due = now + backoff(job.attempts, POSTPONE_CAP)
    await Job.filter(id=job.id, locked_by=worker_id).update(
        status="pending", due_at=due, last_error=f"postponed: {mask_addresses(reason)}"[:2000], locked_until=None
    )
    return due


@dataclass(frozen=True, slots=True)
class Backlog:
    """Work a transport outage holds back (see :func:`postponed`)."""

    jobs: int
    oldest: datetime | None
    """When the oldest of them was enqueued."""
    last_error: str | None
    """The most recent postponement's reason (addresses masked)."""


async def postponed(kinds: Collection[str], *, min_attempts: int = 3) -> Backlog:
    """Pending jobs of ``kinds`` postponed ``min_attempts`` times or more: what every process sees of
    an outage the workers meet (the web process sends no e-mail itself)."""
    held = Job.filter(status="pending", kind__in=list(kinds), attempts__gte=min_attempts,
                      last_error__startswith="postponed:")
    count = await held.count()
    if not count:
        return Backlog(0, None, None)
    oldest = await held.order_by("created_at").first()
    newest = await held.order_by("-id").first()
    return Backlog(count, oldest.created_at if oldest else None,
                   newest.last_error.removeprefix("postponed: ") if newest and newest.last_error else None)


async def fail(job: ClaimedJob, worker_id: str, now: datetime, error: str) -> None:
    """Record a failed attempt: retried after :func:`backoff`, or ``failed`` after the last one. The
    error is kept with every e-mail address masked (a mail server's answer quotes the recipient)."""
    error = mask_addresses(error)
    if job.attempts >= job.max_attempts:
        await Job.filter(id=job.id, locked_by=worker_id).update(
            status="failed", finished_at=now, last_error=error[:2000], locked_until=None
        )
    else:
        await Job.filter(id=job.id, locked_by=worker_id).update(
            status="pending", due_at=now + backoff(job.attempts), last_error=error[:2000], locked_until=None
        )
