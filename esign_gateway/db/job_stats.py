"""The job table as a monitor sees it: how much is due, held, failed, and how old the oldest due job is.

Three grouped counts, each a range of the ``(status, due_at)`` index (``db/jobs.py``): cheap enough
for every scrape, whatever the number of done jobs in the table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tortoise.functions import Count, Min

from .models import Job

__all__ = ["JobTableSnapshot", "read_job_table"]


@dataclass(frozen=True, slots=True)
class JobTableSnapshot:
    at: datetime
    due: dict[str, int] = field(default_factory=dict)
    """Pending jobs due by ``at``, and running ones whose lease ran out (due again), by kind."""
    running: dict[str, int] = field(default_factory=dict)
    """Running jobs under a live lease, by kind."""
    failed: dict[str, int] = field(default_factory=dict)
    oldest_due: dict[str, datetime] = field(default_factory=dict)
    """When the oldest due job of each kind became due."""
    seconds: float = 0.0
    """How long the read took."""

    def kinds(self) -> set[str]:
        return {*self.due, *self.running, *self.failed}


def _as_datetime(value: object) -> datetime | None:
    """SQLite hands an aggregate of a datetime column back as text."""
    if value is None:
        return None
    found = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return found if found.tzinfo else found.replace(tzinfo=UTC)


async def read_job_table(now: datetime) -> JobTableSnapshot:
    started = time.perf_counter()
    due_rows = await (
        Job.filter(status__in=("pending", "running"), due_at__lte=now)
        .annotate(n=Count("id"), oldest=Min("due_at")).group_by("kind").values_list("kind", "n", "oldest")
    )
    running_rows = await (
        Job.filter(status="running", due_at__gt=now).annotate(n=Count("id")).group_by("kind").values_list("kind", "n")
    )
    failed_rows = await Job.filter(status="failed").annotate(n=Count("id")).group_by("kind").values_list("kind", "n")
    oldest = {kind: when for kind, _, raw in due_rows if (when := _as_datetime(raw)) is not None}
    return JobTableSnapshot(
        at=now,
        due={kind: int(n) for kind, n, _ in due_rows},
        running={kind: int(n) for kind, n in running_rows},
        failed={kind: int(n) for kind, n in failed_rows},
        oldest_due=oldest,
        seconds=time.perf_counter() - started,
    )
