"""TransportMonitor: how a message transport (the SMTP server, the SMS gateway) is doing.

The sender reports every attempt: :meth:`TransportMonitor.failed` when the transport itself did
not work (connection refused, a timeout, a temporary 4xx answer, our login refused) and
:meth:`TransportMonitor.answered` when the server did its job — it took the message, or refused
it for reasons of that one message (a 5xx for one recipient is a server that works).

:meth:`TransportMonitor.health` is what ``/readyz`` shows: not ready after ``threshold`` failures
in a row, with the moment the streak began and how many distinct messages failed since; one
answered attempt makes it ready again. Each failed attempt is one warning in the log
(``<name>_send_failed``) with the reason in our words — never an address, a phone number or a
message's text. The state is this process's memory: reading it costs nothing and it recovers by
itself.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import structlog

from esign_gateway.clock import Clock, SystemClock
from esign_gateway.domain.masking import mask_addresses
from esign_gateway.ports import ComponentHealth

__all__ = ["TransportMonitor", "message_key"]

log = structlog.get_logger(__name__)

THRESHOLD = 3
"""Failures in a row after which the transport is reported not ready (one blip is not an outage)."""


def message_key(*parts: str) -> str:
    """A stable, non-reversible name for one message (the same e-mail retried has the same key)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _at(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


class TransportMonitor:
    def __init__(self, name: str, label: str, *, clock: Clock | None = None, threshold: int = THRESHOLD) -> None:
        self.name = name
        """The component's name in ``/readyz`` and the log: ``email``, ``sms``."""
        self.label = label
        """The transport in plain words: ``SMTP``, ``SMS gateway``."""
        self.clock = clock or SystemClock()
        self.threshold = max(1, threshold)
        self.failures = 0
        """Failed attempts in a row."""
        self.failing_since: datetime | None = None
        self.last_reason = ""
        self.waiting: set[str] = set()
        """Keys of the messages that failed during this streak."""
        self.recovered_at: datetime | None = None
        self.down_since: datetime | None = None
        """When the last outage that made it not ready began (kept after recovery, for the detail)."""

    def failed(self, reason: str, key: str | None = None) -> None:
        now = self.clock.now()
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = now
        self.last_reason = mask_addresses(reason)[:200]
        if key is not None:
            self.waiting.add(key)
        log.warning(f"{self.name}_send_failed", transport=self.label, reason=self.last_reason,
                    failures_in_row=self.failures)

    def answered(self) -> None:
        if self.failures >= self.threshold:
            self.down_since = self.failing_since
            self.recovered_at = self.clock.now()
            log.info(f"{self.name}_transport_recovered", transport=self.label,
                     down_since=self.failing_since.isoformat() if self.failing_since else None)
        self.failures = 0
        self.failing_since = None
        self.waiting.clear()

    def health(self) -> ComponentHealth:
        if self.failures >= self.threshold and self.failing_since is not None:
            detail = (f"{self.label} unreachable since {_at(self.failing_since)}: {self.failures} attempts in a "
                      f"row failed (last: {self.last_reason})")
            if self.waiting:
                count = len(self.waiting)
                detail += f"; {count} message{'s' if count != 1 else ''} waiting"
            return ComponentHealth(self.name, False, detail)
        if self.failures:
            return ComponentHealth(self.name, True, f"{self.failures} attempt{'s' if self.failures != 1 else ''} "
                                                    f"failed since {_at(self.failing_since or self.clock.now())} "
                                                    f"(last: {self.last_reason})")
        if self.recovered_at is not None and self.down_since is not None:
            return ComponentHealth(self.name, True, f"working again since {_at(self.recovered_at)} "
                                                    f"(unreachable from {_at(self.down_since)})")
        return ComponentHealth(self.name, True, "working")
