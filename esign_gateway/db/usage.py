"""Plans held, documents counted, API requests counted — every write race-free on both backends.

* The monthly allowance is taken by one conditional UPDATE (``used <= allowance - n``): on
  PostgreSQL the row lock makes a second sender re-check the condition on the committed value; on
  SQLite the transaction is ``BEGIN IMMEDIATE`` (see ``sqlite_backend``), so senders in several
  processes queue for the write lock. Never a read-then-write.
* The daily API counter is one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F

from esign_gateway.domain.quota import PlanTerms

from .models import PlanChange, Tenant, UsageCounter, UsageRecord

__all__ = ["UsageRepository", "count_api_request", "history_of", "terms_of"]


def terms_of(row: PlanChange) -> PlanTerms:
    return PlanTerms(row.code, row.documents, row.fee, row.daily_requests, row.enabled, row.effective_at)


async def history_of(tenant_id: str, conn: BaseDBAsyncClient | None = None) -> list[PlanTerms]:
    """Every plan the tenant held or will hold, oldest first."""
    qs = PlanChange.filter(tenant_id=tenant_id).order_by("effective_at", "id")
    if conn is not None:
        qs = qs.using_db(conn)
    return [terms_of(r) for r in await qs]


class UsageRepository:
    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.conn = conn

    async def lock_tenant(self, tenant_id: str) -> bool:
        """Serialise plan changes of one tenant (PostgreSQL row lock; SQLite's transaction is
        already exclusive). False when there is no such tenant."""
        qs = Tenant.filter(id=tenant_id).using_db(self.conn)
        if self.conn.capabilities.dialect == "postgres":
            qs = qs.select_for_update()
        return await qs.exists()

    async def history(self, tenant_id: str) -> list[PlanTerms]:
        return await history_of(tenant_id, self.conn)

    async def add_terms(self, tenant_id: str, terms: PlanTerms, *, now: datetime, actor: str) -> None:
        assert terms.effective_at is not None
        await PlanChange.create(
            using_db=self.conn, tenant_id=tenant_id, code=terms.code, documents=terms.documents, fee=terms.fee,
            daily_requests=terms.daily_requests, enabled=terms.enabled, effective_at=terms.effective_at,
            created_at=now, actor=actor,
        )

    async def drop_pending(self, tenant_id: str, now: datetime) -> int:
        """Forget changes written ahead (a pending lowering): a newer choice replaces them."""
        return await PlanChange.filter(tenant_id=tenant_id, effective_at__gt=now).using_db(self.conn).delete()

    async def take(self, tenant_id: str, month: str, documents: int, allowance: int) -> int | None:
        """Count ``documents`` against the month if they fit the allowance: the new total, or None."""
        await UsageCounter.bulk_create(
            [UsageCounter(tenant_id=tenant_id, month=month, used=0)], ignore_conflicts=True, using_db=self.conn
        )
        taken = (
            await UsageCounter.filter(tenant_id=tenant_id, month=month, used__lte=allowance - documents)
            .using_db(self.conn)
            .update(used=F("used") + documents)
        )
        if not taken:
            return None
        return await self.used(tenant_id, month)

    async def used(self, tenant_id: str, month: str) -> int:
        row = await UsageCounter.filter(tenant_id=tenant_id, month=month).using_db(self.conn).first()
        return row.used if row else 0

    async def record(
        self, tenant_id: str, envelope_id: str, document_ids: Sequence[str], month: str, at: datetime
    ) -> None:
        await UsageRecord.bulk_create(
            [UsageRecord(tenant_id=tenant_id, envelope_id=envelope_id, document_id=d, month=month, at=at)
             for d in document_ids],
            using_db=self.conn,
        )


async def count_api_request(conn: BaseDBAsyncClient, tenant_id: str, day: str) -> int:
    """Add one request to the tenant's day and return the day's total (one atomic statement)."""
    if conn.capabilities.dialect == "postgres":
        sql = (
            "INSERT INTO api_usage (tenant_id, day, count) VALUES ($1, $2, 1) ON CONFLICT (tenant_id, day) "
            "DO UPDATE SET count = api_usage.count + 1 RETURNING count"
        )
    else:
        sql = (
            "INSERT INTO api_usage (tenant_id, day, count) VALUES (?, ?, 1) ON CONFLICT (tenant_id, day) "
            "DO UPDATE SET count = api_usage.count + 1 RETURNING count"
        )
    rows: list[dict[str, Any]] = await conn.execute_query_dict(sql, [tenant_id, day])
    return int(rows[0]["count"])
