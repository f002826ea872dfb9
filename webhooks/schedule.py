"""Retry schedule for CRM webhooks (the Standard Webhooks example, about 3 days), with jitter."""

from __future__ import annotations

import random
from datetime import timedelta

__all__ = ["RETRY_DELAYS", "next_delay"]

RETRY_DELAYS = (
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=5),
    timedelta(hours=10), timedelta(hours=14), timedelta(hours=20), timedelta(hours=24),
)
MAX_RETRY_AFTER = timedelta(hours=24)


def next_delay(failed_attempts: int, retry_after: float | None = None, *, jitter: float = 0.1) -> timedelta | None:
    """Delay before the next try after ``failed_attempts`` failures; None when it is time to give up.

    ``Retry-After`` (seconds, from a 429/503) is honoured when it asks for more than the schedule.
    """
    if failed_attempts > len(RETRY_DELAYS):
        return None
    delay = RETRY_DELAYS[failed_attempts - 1]
    delay = delay * random.uniform(1 - jitter, 1 + jitter)
    if retry_after is not None:
        delay = max(delay, min(timedelta(seconds=retry_after), MAX_RETRY_AFTER))
    return delay
