"""The Prague calendar, the month's rule and the plans file (pure domain)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from esign_gateway.domain.quota import (
    Catalogue,
    PlanTerms,
    crossed_thresholds,
    held_in,
    highest,
    month_bounds,
    month_of,
    next_midnight,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_half_past_eleven_utc_on_the_last_day_is_already_next_month_in_prague_winter() -> None:
    # 30 Nov 2026 23:30 UTC = 1 Dec 00:30 in Prague (UTC+1)
    assert month_of(utc(2026, 11, 30, 23, 30)) == "2026-12"
    assert month_of(utc(2026, 11, 30, 22, 59)) == "2026-11"


def test_month_boundary_in_summer_time_is_twenty_two_hundred_utc() -> None:
    assert month_of(utc(2026, 7, 31, 22, 0)) == "2026-08"
    assert month_of(utc(2026, 7, 31, 21, 59, 59)) == "2026-07"


def test_month_bounds_are_prague_midnights() -> None:
    assert month_bounds("2026-11") == (utc(2026, 10, 31, 23), utc(2026, 11, 30, 23))
    assert month_bounds("2026-12") == (utc(2026, 11, 30, 23), utc(2026, 12, 31, 23))
    with pytest.raises(ValueError):
        month_bounds("2026-13")
    with pytest.raises(ValueError):
        month_bounds("26-11")


def test_next_midnight_follows_prague_across_the_dst_change() -> None:
    assert next_midnight(utc(2026, 11, 23, 9)) == utc(2026, 11, 23, 23)
    # 24 Oct 2026 12:00 UTC (CEST) → midnight of the 25th is still CEST (the switch is at 03:00)
    assert next_midnight(utc(2026, 10, 24, 12)) == utc(2026, 10, 24, 22)
    # 25 Oct (the long day) → midnight of the 26th is CET
    assert next_midnight(utc(2026, 10, 25, 12)) == utc(2026, 10, 25, 23)


def test_thresholds_fire_once_when_crossed_from_below() -> None:
    assert crossed_thresholds(2, 3, 4) == [75]  # ceil(3.0) = 3
    assert crossed_thresholds(3, 4, 4) == [100]
    assert crossed_thresholds(0, 4, 4) == [75, 100]
    assert crossed_thresholds(3, 3, 4) == []
    assert crossed_thresholds(14, 15, 20) == [75]
    assert crossed_thresholds(0, 0, 0) == []


def _t(code: str, docs: int, fee: int, at: datetime, enabled: bool = True) -> PlanTerms:
    return PlanTerms(code, docs, Decimal(fee), 1000, enabled, at)


def test_the_highest_plan_held_in_the_month_counts_even_after_termination() -> None:
    history = [
        _t("free", 4, 0, utc(2026, 1, 1)),
        _t("m", 50, 390, utc(2026, 11, 10)),
        _t("m", 50, 390, utc(2026, 11, 12), enabled=False),
        _t("s", 20, 190, utc(2026, 11, 20)),
    ]
    start, end = month_bounds("2026-11")
    held = held_in(history, start, end)
    assert [t.code for t in held] == ["free", "m", "m", "s"]
    assert highest(held) == history[1]
    # October: only the plan in force at its start
    oct_start, oct_end = month_bounds("2026-10")
    assert highest(held_in(history, oct_start, oct_end)) == history[0]
    # a whole month terminated: nothing held
    assert highest([_t("m", 50, 390, utc(2026, 1, 1), enabled=False)]) is None


def test_shipped_catalogue_has_the_terms_plans() -> None:
    cat = Catalogue.load()
    numbers = {p.code: (p.monthly_documents, p.monthly_fee) for p in cat.plans}
    assert numbers == {
        "free": (4, Decimal(0)), "s": (20, Decimal(190)), "m": (50, Decimal(390)), "l": (150, Decimal(890)),
        "custom": (None, None),
    }
    assert cat.currency == "CZK"
    assert all(p.daily_requests > 0 for p in cat.plans)


def test_upgrade_hint_lists_only_higher_plans_that_fit() -> None:
    cat = Catalogue.load()
    free = cat.terms("free")
    assert [p.code for p in cat.upgrades(free, 5)] == ["s", "m", "l"]
    assert [p.code for p in cat.upgrades(free, 30)] == ["m", "l"]
    assert [p.code for p in cat.upgrades(cat.terms("l"), 151)] == []


def test_custom_needs_the_operators_numbers_and_a_broken_file_is_refused(tmp_path: Path) -> None:
    cat = Catalogue.load()
    with pytest.raises(ValueError):
        cat.terms("custom")
    assert cat.terms("custom", documents=500, fee=Decimal("2500.50")).rank == (Decimal("2500.50"), 500)
    bad = tmp_path / "plans.toml"
    bad.write_text('[plans.free]\nmonthly_documents = 4\ndaily_requests = 10\n')
    with pytest.raises(ValueError, match="both"):
        Catalogue.load(bad)
    bad.write_text('[plans.s]\nmonthly_documents = 4\nmonthly_fee = "1"\ndaily_requests = 10\n')
    with pytest.raises(ValueError, match="free"):
        Catalogue.load(bad)
