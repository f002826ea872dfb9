"""Plans, allowances and the Prague calendar (SPEC §2 rules 5 and 7, §8). Pure: no I/O.

A *plan* is a catalogue entry (``free``, ``s``, ``m``, ``l``, ``custom``). What a tenant holds is
a sequence of :class:`PlanTerms` snapshots, each effective from an instant: the numbers are copied
when the plan is chosen, so a later edit of the plans file never rewrites a past month's bill.

The month's rule, used for both the allowance and the bill: **the highest plan held during the
month counts**. Raising takes effect at once; lowering only from the first day of the next month,
so within a month the plan in force only goes up — except a termination, which stops new sends
but does not lower what that month already granted.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = [
    "PRAGUE",
    "THRESHOLDS",
    "Catalogue",
    "Plan",
    "PlanTerms",
    "crossed_thresholds",
    "held_in",
    "highest",
    "month_bounds",
    "month_of",
    "next_midnight",
    "parse_month",
    "prague_day",
]

PRAGUE = ZoneInfo("Europe/Prague")
THRESHOLDS = (75, 100)
"""Per cent of the month's allowance at which ``usage.threshold`` fires."""

DEFAULT_PLANS_FILE = Path(__file__).resolve().parent.parent / "plans.toml"


@dataclass(frozen=True, slots=True)
class Plan:
    """One catalogue entry. ``custom`` has no numbers of its own: the operator sets them per tenant."""

    code: str
    name: str
    monthly_documents: int | None
    monthly_fee: Decimal | None
    daily_requests: int

    @property
    def is_custom(self) -> bool:
        return self.monthly_documents is None


@dataclass(frozen=True, slots=True)
class PlanTerms:
    """A plan as a tenant holds it, from ``effective_at`` on. ``enabled=False`` is a termination."""

    code: str
    documents: int
    fee: Decimal
    daily_requests: int
    enabled: bool = True
    effective_at: datetime | None = None

    @property
    def rank(self) -> tuple[Decimal, int]:
        """Plans compare by monthly fee, then by documents: that is what "raise" and "lower" mean."""
        return (self.fee, self.documents)

    def terminated(self, at: datetime) -> PlanTerms:
        return replace(self, enabled=False, effective_at=at)


class Catalogue:
    """The plans file: ``[plans.<code>]`` tables with ``name``, ``monthly_documents``,
    ``monthly_fee`` and ``daily_requests``; ``currency`` at the top. Order of the file = display order."""

    def __init__(self, plans: Sequence[Plan], currency: str = "CZK") -> None:
        self.plans = list(plans)
        self.currency = currency
        self._by_code = {p.code: p for p in self.plans}
        if "free" not in self._by_code:
            raise ValueError("the plans file must define a 'free' plan (the default of new tenants)")

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        raw = tomllib.loads((path or DEFAULT_PLANS_FILE).read_text(encoding="utf-8"))
        plans = []
        for code, entry in raw.get("plans", {}).items():
            docs = entry.get("monthly_documents")
            fee = entry.get("monthly_fee")
            if (docs is None) != (fee is None):
                raise ValueError(f"plan {code!r}: give both monthly_documents and monthly_fee, or neither (custom)")
            if docs is not None and (not isinstance(docs, int) or docs < 0):
                raise ValueError(f"plan {code!r}: monthly_documents must be a whole number ≥ 0")
            plans.append(
                Plan(
                    code=code, name=str(entry.get("name", code)), monthly_documents=docs,
                    monthly_fee=Decimal(str(fee)) if fee is not None else None,
                    daily_requests=int(entry["daily_requests"]),
                )
            )
        return cls(plans, currency=str(raw.get("currency", "CZK")))

    def get(self, code: str) -> Plan | None:
        return self._by_code.get(code)

    def terms(self, code: str, *, documents: int | None = None, fee: Decimal | None = None) -> PlanTerms:
        """The terms of ``code``; a ``custom`` plan needs ``documents`` and ``fee`` (the operator's)."""
        plan = self._by_code[code]
        if plan.is_custom:
            if documents is None or fee is None:
                raise ValueError("a custom plan needs documents and fee")
            return PlanTerms(code, documents, fee, plan.daily_requests)
        assert plan.monthly_documents is not None and plan.monthly_fee is not None
        return PlanTerms(code, plan.monthly_documents, plan.monthly_fee, plan.daily_requests)

    def upgrades(self, current: PlanTerms | None, needed_documents: int) -> list[Plan]:
        """Catalogue plans above ``current`` that would allow ``needed_documents`` this month."""
        out = []
        for p in self.plans:
            if p.is_custom or p.monthly_documents is None or p.monthly_fee is None:
                continue
            if current is not None and (p.monthly_fee, p.monthly_documents) <= current.rank:
                continue
            if p.monthly_documents >= needed_documents:
                out.append(p)
        return out


# --------------------------------------------------------------------------- the Prague calendar


def month_of(moment: datetime) -> str:
    """``YYYY-MM`` of the calendar month in Prague that contains ``moment``."""
    local = moment.astimezone(PRAGUE)
    return f"{local.year:04d}-{local.month:02d}"


def parse_month(text: str) -> tuple[int, int]:
    """``YYYY-MM`` → (year, month); ValueError otherwise."""
    if len(text) != 7 or text[4] != "-":
        raise ValueError("use YYYY-MM")
    year, month = int(text[:4]), int(text[5:])
    if not (1 <= month <= 12 and 2000 <= year <= 9999):
        raise ValueError("use YYYY-MM")
    return year, month


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a Prague calendar month, as UTC instants."""
    year, mon = parse_month(month)
    start = datetime(year, mon, 1, tzinfo=PRAGUE)
    nxt = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=PRAGUE)
    return start.astimezone(UTC), nxt.astimezone(UTC)


def prague_day(moment: datetime) -> date:
    return moment.astimezone(PRAGUE).date()


def next_midnight(moment: datetime) -> datetime:
    """The next midnight in Prague after ``moment`` (UTC): when a daily limit starts again."""
    tomorrow = prague_day(moment) + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=PRAGUE).astimezone(UTC)


# --------------------------------------------------------------------------- the month's rule


def highest(terms: Iterable[PlanTerms]) -> PlanTerms | None:
    """The highest enabled plan among ``terms`` (None when none was enabled)."""
    enabled = [t for t in terms if t.enabled]
    return max(enabled, key=lambda t: t.rank) if enabled else None


def held_in(history: Sequence[PlanTerms], start: datetime, until: datetime) -> list[PlanTerms]:
    """The terms in force at some instant of [start, until]: the one in force at ``start`` and every
    later one that took effect by ``until``. ``history`` is ordered by ``effective_at``."""
    at_start: PlanTerms | None = None
    later = []
    for t in history:
        assert t.effective_at is not None
        if t.effective_at <= start:
            at_start = t
        elif t.effective_at <= until:
            later.append(t)
    return ([at_start] if at_start is not None else []) + later


def crossed_thresholds(before: int, after: int, allowance: int) -> list[int]:
    """Thresholds (per cent) that ``before → after`` documents crossed from below."""
    if allowance <= 0:
        return []
    return [p for p in THRESHOLDS if before < math.ceil(allowance * p / 100) <= after]
