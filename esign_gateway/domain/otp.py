"""SMS-code policy (SPEC §5) as pure functions of (state, now).

A code: 6 digits, valid 5 minutes, single use, bound to one signer; a new code replaces the
old; 3 wrong tries kill a code; 10 wrong tries in total put the signer in ``auth_failed``; at
most 5 codes an hour and 30 s between two codes (an SMS costs money: no pumping).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "CODE_LIFETIME",
    "MAX_CODES_PER_HOUR",
    "MAX_TRIES_PER_CODE",
    "MAX_TRIES_TOTAL",
    "RESEND_INTERVAL",
    "Tries",
    "code_digest",
    "new_code",
    "next_code_allowed_at",
]

CODE_LIFETIME = timedelta(minutes=5)
MAX_TRIES_PER_CODE = 3
MAX_TRIES_TOTAL = 10
MAX_CODES_PER_HOUR = 5
RESEND_INTERVAL = timedelta(seconds=30)
VERIFIED_GRACE = timedelta(minutes=10)
"""After a code is accepted, signing may be retried without a new code for this long."""


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def code_digest(pepper: bytes, signer_id: str, code: str) -> str:
    """HMAC-SHA256 with a server-side pepper: a bare hash of 6 digits is reversible."""
    return hmac.new(pepper, f"{signer_id}:{code}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Throttle:
    allowed: bool
    retry_at: datetime | None


def next_code_allowed_at(sent_times: Sequence[datetime], now: datetime) -> Throttle:
    """May another code be sent now, given when the earlier codes were sent?"""
    recent = sorted(t for t in sent_times if t > now - timedelta(hours=1))
    if recent and now < recent[-1] + RESEND_INTERVAL:
        return Throttle(False, recent[-1] + RESEND_INTERVAL)
    if len(recent) >= MAX_CODES_PER_HOUR:
        return Throttle(False, recent[-MAX_CODES_PER_HOUR] + timedelta(hours=1))
    return Throttle(True, None)


@dataclass(frozen=True, slots=True)
class Tries:
    """A signer's wrong tries: ``on_code`` on the live code, ``total`` over every code.

    A new code starts its own count at 0; the total carries over (it is what stops guessing
    across codes).
    """

    on_code: int = 0
    total: int = 0

    def wrong(self) -> Tries:
        """The tries after one more wrong code."""
        return Tries(self.on_code + 1, self.total + 1)

    def new_code(self) -> Tries:
        """The tries once a new code replaces the old one."""
        return Tries(0, self.total)

    @property
    def code_dead(self) -> bool:
        """The live code takes no more tries (a new one must be asked for)."""
        return self.on_code >= MAX_TRIES_PER_CODE

    @property
    def blocked(self) -> bool:
        """The signer may try no more codes at all (``auth_failed``)."""
        return self.total >= MAX_TRIES_TOTAL

    @property
    def left_total(self) -> int:
        return MAX_TRIES_TOTAL - self.total

    @property
    def left_on_code(self) -> int:
        return 0 if self.code_dead else MAX_TRIES_PER_CODE - self.on_code

    @property
    def attempts_left(self) -> int:
        """Tries the signer has before a new code is needed (or before being blocked)."""
        return 0 if self.blocked else min(self.left_total, self.left_on_code)
