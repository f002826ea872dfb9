"""When reminders are due (SPEC §3, §7): pure functions of the envelope's plan and times.

A *slot* names one planned reminder, e.g. ``before:1d@2026-11-30T09:00:00+00:00``. The expiry is
part of the name, so moving the expiry plans new slots and the old ones, still queued, are
recognised as stale and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .policy import MAX_EXPIRY_DAYS

__all__ = ["MANUAL_REMINDER_INTERVAL", "Slot", "reminder_slots"]

MANUAL_REMINDER_INTERVAL = timedelta(hours=1)
MAX_PERIODIC = MAX_EXPIRY_DAYS  # every_days >= 1, within the longest expiry


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    due: datetime


def reminder_slots(reminders: dict[str, Any], sent_at: datetime, expires_at: datetime, now: datetime) -> list[Slot]:
    """Every reminder still ahead of ``now`` and before expiry, earliest first, without duplicates."""
    stamp = expires_at.isoformat()
    slots: dict[datetime, Slot] = {}
    for days in sorted(set(reminders.get("before_expiry_days") or []), reverse=True):
        due = expires_at - timedelta(days=days)
        if now < due < expires_at and due > sent_at:
            slots.setdefault(due, Slot(f"before:{days}d@{stamp}", due))
    every = reminders.get("every_days")
    if every:
        for k in range(1, MAX_PERIODIC + 1):
            due = sent_at + timedelta(days=every * k)
            if due >= expires_at:
                break
            if due > now:
                slots.setdefault(due, Slot(f"every:{every}d#{k}@{stamp}", due))
    return sorted(slots.values(), key=lambda s: s.due)
