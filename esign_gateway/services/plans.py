"""Plans, the monthly document allowance, the daily API limit and the billing export (SPEC §8).

The month's rule (see ``domain.quota``): the highest plan held during a Prague calendar month
sets both that month's allowance and its fee. Raising a plan takes effect at once; lowering is
written ahead, effective on the 1st of next month (``pending``); terminating stops new sends at
once. The plan history (``plan_change``) is the only source of truth; nothing is recomputed by a
job at month end, so a month is never "not yet rolled over".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tortoise import connections
from tortoise.functions import Count

from esign_gateway.clock import Clock
from esign_gateway.db.models import PlanChange, Tenant, UsageRecord
from esign_gateway.db.repositories import outbox_event, write_outbox
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.db.usage import count_api_request, history_of, terms_of
from esign_gateway.domain import quota
from esign_gateway.domain.quota import Catalogue, Plan, PlanTerms
from esign_gateway.errors import (
    InstanceNotPaidError,
    NotFoundError,
    QuotaExceededError,
    SigningDisabledError,
    ValidationFailedError,
)
from esign_gateway.metrics import Metrics
from esign_gateway.webhook_payloads import UsageEventData, WebhookUsage

from .tenants import TenantInfo

__all__ = ["BILLING_COLUMNS", "BillingLine", "MonthUsage", "PlanService", "PlanState", "RateState"]

_TICK = timedelta(microseconds=1)
BILLING_COLUMNS = [
    "tenant_id", "tenant_name", "month", "plan", "plan_name", "monthly_fee", "currency", "documents_sent", "allowance",
]


@dataclass(frozen=True, slots=True)
class PlanState:
    current: PlanTerms | None
    """In force now (``enabled=False``: the signing module is terminated)."""
    pending: PlanTerms | None
    """A lowering that takes effect on ``pending.effective_at`` (the 1st of next month)."""

    @property
    def enabled(self) -> bool:
        return self.current is not None and self.current.enabled


@dataclass(frozen=True, slots=True)
class MonthUsage:
    month: str
    documents_sent: int
    plan: PlanTerms | None
    """The highest plan held in the month (so far): it sets the allowance and the fee."""
    state: PlanState

    @property
    def allowance(self) -> int:
        return self.plan.documents if self.plan else 0

    @property
    def remaining(self) -> int:
        return max(0, self.allowance - self.documents_sent)

    @property
    def overage(self) -> int:
        """Documents over the allowance; 0 by construction (sends over it are refused), shown for audit."""
        return max(0, self.documents_sent - self.allowance)

    @property
    def fee(self) -> Decimal:
        return self.plan.fee if self.plan else Decimal(0)


@dataclass(frozen=True, slots=True)
class RateState:
    limit: int
    count: int
    reset_at: datetime

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit


@dataclass(frozen=True, slots=True)
class BillingLine:
    tenant_id: str
    tenant_name: str
    month: str
    plan: str | None
    plan_name: str | None
    monthly_fee: Decimal
    currency: str
    documents_sent: int
    allowance: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id, "tenant_name": self.tenant_name, "month": self.month, "plan": self.plan,
            "plan_name": self.plan_name, "monthly_fee": f"{self.monthly_fee:.2f}", "currency": self.currency,
            "documents_sent": self.documents_sent, "allowance": self.allowance,
        }


def _current(history: list[PlanTerms], now: datetime) -> PlanTerms | None:
    in_force = [t for t in history if t.effective_at is not None and t.effective_at <= now]
    return in_force[-1] if in_force else None


def _pending(history: list[PlanTerms], now: datetime) -> PlanTerms | None:
    return next((t for t in history if t.effective_at is not None and t.effective_at > now), None)


def _month_plan(history: list[PlanTerms], month: str, now: datetime) -> PlanTerms | None:
    """The highest plan held in ``month`` up to ``now`` (or to its end, for a past month)."""
    start, end = quota.month_bounds(month)
    return quota.highest(quota.held_in(history, start, min(now, end - _TICK)))


def _same(a: PlanTerms, b: PlanTerms) -> bool:
    return (a.code, a.documents, a.fee, a.daily_requests) == (b.code, b.documents, b.fee, b.daily_requests)


class PlanService:
    def __init__(self, *, clock: Clock, catalogue: Catalogue, metrics: Metrics | None = None) -> None:
        self.clock = clock
        self.catalogue = catalogue
        self.metrics = metrics or Metrics()

    # ------------------------------------------------------------------ reading

    async def state(self, tenant_id: str) -> PlanState:
        history = await history_of(tenant_id)
        now = self.clock.now()
        return PlanState(_current(history, now), _pending(history, now))

    async def usage(self, tenant_id: str, month: str | None = None) -> MonthUsage:
        now = self.clock.now()
        month = month or quota.month_of(now)
        try:
            start, _ = quota.month_bounds(month)
        except ValueError:
            raise ValidationFailedError(errors=[{"field": "month", "message": "use YYYY-MM"}]) from None
        if start > now:
            raise ValidationFailedError(errors=[{"field": "month", "message": "a month that has begun"}])
        history = await history_of(tenant_id)
        sent = await UsageRecord.filter(tenant_id=tenant_id, month=month).count()
        return MonthUsage(
            month, sent, _month_plan(history, month, now), PlanState(_current(history, now), _pending(history, now))
        )

    # ------------------------------------------------------------------ sending

    async def ensure_may_send(self, tenant: TenantInfo, documents: int = 0) -> None:
        """Rules 1 and 5: a paid instance with the signing module on — and, for ``documents`` about to
        be sent, room in this month's allowance. A read-only early refusal, before any upload is parsed
        or stored; not the guard: ``take`` is (another request may take the last document meanwhile)."""
        if tenant.mode != "paid":
            raise InstanceNotPaidError("Online signing is available to paid instances only.")
        now = self.clock.now()
        history = await history_of(tenant.id)
        current = _current(history, now)
        if current is None or not current.enabled:
            raise SigningDisabledError("The signing module is terminated; choose a plan to enable it again.")
        if documents:
            month = quota.month_of(now)
            plan = _month_plan(history, month, now)
            allowance = plan.documents if plan else 0
            used = await UsageRecord.filter(tenant_id=tenant.id, month=month).count()
            if used + documents > allowance:
                raise self._quota_error(month, plan, allowance, used, documents)

    async def take(self, uow: UnitOfWork, tenant_id: str, envelope_id: str, document_ids: list[str],
                   now: datetime) -> None:
        """Count an envelope's documents against this month, in the send's transaction: refuse
        (``402 quota_exceeded``) unless all fit; record each document; note thresholds crossed."""
        history = await uow.usage.history(tenant_id)
        current = _current(history, now)
        if current is None or not current.enabled:
            raise SigningDisabledError("The signing module is terminated; choose a plan to enable it again.")
        month = quota.month_of(now)
        plan = _month_plan(history, month, now)
        allowance = plan.documents if plan else 0
        n = len(document_ids)
        total = await uow.usage.take(tenant_id, month, n, allowance)
        if total is None:
            raise self._quota_error(month, plan, allowance, await uow.usage.used(tenant_id, month), n)
        await uow.usage.record(tenant_id, envelope_id, document_ids, month, now)
        events = [
            outbox_event(tenant_id, None, "usage.threshold", now, UsageEventData(usage=WebhookUsage(
                month=month, threshold_percent=pct, documents_sent=total, allowance=allowance,
                remaining=max(0, allowance - total), plan=plan.code if plan else None,
            )).model_dump(mode="json"))
            for pct in quota.crossed_thresholds(total - n, total, allowance)
        ]
        await write_outbox(uow.conn, events)

    def _quota_error(
        self, month: str, plan: PlanTerms | None, allowance: int, used: int, wanted: int
    ) -> QuotaExceededError:
        remaining = max(0, allowance - used)
        self.metrics.quota_refusals.labels("monthly_documents").inc()
        return QuotaExceededError(
            f"This envelope needs {wanted} document(s) but {remaining} of {allowance} remain in {month}. "
            "Raise the plan (PUT /v1/plan) — it takes effect at once.",
            extra={
                "month": month, "allowance": allowance, "used": used, "remaining": remaining,
                "plan": plan.code if plan else None,
                "upgrade": [_plan_dict(p) for p in self.catalogue.upgrades(plan, used + wanted)],
            },
        )

    # ------------------------------------------------------------------ changing

    async def change(
        self, tenant_id: str, code: str, *, documents: int | None = None, fee: Decimal | None = None,
        actor: str = "api",
    ) -> PlanState:
        """Choose a plan: higher (or re-enabling) at once, lower from the 1st of next month."""
        plan = self.catalogue.get(code)
        if plan is None:
            codes = ", ".join(p.code for p in self.catalogue.plans)
            raise ValidationFailedError(errors=[{"field": "code", "message": f"one of {codes}"}])
        if plan.is_custom and actor != "operator":
            raise ValidationFailedError(errors=[{"field": "code", "message": "a custom plan is set by the operator"}])
        if plan.is_custom and (documents is None or fee is None or documents < 0 or fee < 0):
            raise ValidationFailedError(
                errors=[{"field": "documents", "message": "a custom plan needs --documents N and --fee F (≥ 0)"}]
            )
        terms = self.catalogue.terms(code, documents=documents, fee=fee)
        now = self.clock.now()
        async with UnitOfWork() as uow:
            if not await uow.usage.lock_tenant(tenant_id):
                raise NotFoundError(f"No tenant {tenant_id}.")
            await uow.usage.drop_pending(tenant_id, now)  # a newer choice replaces a pending one
            current = _current(await uow.usage.history(tenant_id), now)
            if current is None or not current.enabled or terms.rank > current.rank:
                effective = now
            elif _same(terms, current):
                effective = None  # already held: nothing to add (a pending lowering was cancelled)
            elif terms.rank == current.rank:
                effective = now
            else:
                effective = quota.month_bounds(quota.month_of(now))[1]
            if effective is not None:
                await uow.usage.add_terms(
                    tenant_id, PlanTerms(terms.code, terms.documents, terms.fee, terms.daily_requests, True, effective),
                    now=now, actor=actor,
                )
        return await self.state(tenant_id)

    async def terminate(self, tenant_id: str, *, actor: str = "api") -> PlanState:
        """Stop new sends at once; in-flight envelopes finish, downloads and the archive stay."""
        now = self.clock.now()
        async with UnitOfWork() as uow:
            if not await uow.usage.lock_tenant(tenant_id):
                raise NotFoundError(f"No tenant {tenant_id}.")
            await uow.usage.drop_pending(tenant_id, now)
            current = _current(await uow.usage.history(tenant_id), now)
            if current is not None and current.enabled:
                await uow.usage.add_terms(tenant_id, current.terminated(now), now=now, actor=actor)
        return await self.state(tenant_id)

    # ------------------------------------------------------------------ the daily API limit

    async def count_request(self, tenant_id: str) -> RateState:
        """Count one API request on the tenant's Prague day (shared by every process: the database)."""
        now = self.clock.now()
        current = _current(await history_of(tenant_id), now)
        limit = current.daily_requests if current else self.catalogue.terms("free").daily_requests
        count = await count_api_request(connections.get("default"), tenant_id, quota.prague_day(now).isoformat())
        state = RateState(limit, count, quota.next_midnight(now))
        if state.exceeded:
            self.metrics.quota_refusals.labels("daily_requests").inc()
        return state

    # ------------------------------------------------------------------ billing

    async def billing(self, month: str) -> list[BillingLine]:
        """One invoice line per tenant for ``month``: the highest plan held in it, its fee, documents sent.

        A tenant gets a line when it held an enabled plan at some moment of the month or sent
        documents in it; trial instances with nothing sent are left out."""
        try:
            _, end = quota.month_bounds(month)
        except ValueError:
            raise ValidationFailedError(errors=[{"field": "month", "message": "use YYYY-MM"}]) from None
        now = self.clock.now()
        sent = {
            r["tenant_id"]: r["n"]
            for r in await UsageRecord.filter(month=month).annotate(n=Count("id")).group_by("tenant_id")
            .values("tenant_id", "n")
        }
        histories: dict[str, list[PlanTerms]] = defaultdict(list)
        for row in await PlanChange.filter(effective_at__lt=end).order_by("tenant_id", "effective_at", "id"):
            histories[row.tenant_id].append(terms_of(row))
        lines = []
        for tenant in await Tenant.filter(created_at__lt=end).order_by("name", "id"):
            plan = _month_plan(histories[tenant.id], month, now)
            documents = sent.get(tenant.id, 0)
            if documents == 0 and (plan is None or tenant.mode != "paid"):
                continue
            catalogue_plan = self.catalogue.get(plan.code) if plan else None
            lines.append(
                BillingLine(
                    tenant_id=tenant.id, tenant_name=tenant.name, month=month, plan=plan.code if plan else None,
                    plan_name=catalogue_plan.name if catalogue_plan else (plan.code if plan else None),
                    monthly_fee=plan.fee if plan else Decimal(0), currency=self.catalogue.currency,
                    documents_sent=documents, allowance=plan.documents if plan else 0,
                )
            )
        return lines


def _plan_dict(p: Plan) -> dict[str, Any]:
    return {
        "code": p.code, "name": p.name, "monthly_documents": p.monthly_documents,
        "monthly_fee": f"{p.monthly_fee:.2f}" if p.monthly_fee is not None else None,
        "daily_requests": p.daily_requests,
    }
