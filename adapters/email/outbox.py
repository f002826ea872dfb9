"""OutboxEmailSender: development e-mail — each message an ``.eml`` file under the outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters._files import sortable_name, write_atomic
from esign_gateway.clock import Clock
from esign_gateway.ports import OutgoingEmail

from .mime import DkimKey, wire_message

__all__ = ["OutboxEmailSender"]


class OutboxEmailSender:
    def __init__(self, directory: Path, *, sender: str, clock: Clock, dkim: DkimKey | None = None) -> None:
        self.directory = directory
        self.sender = sender
        self.clock = clock
        self.dkim = dkim

    async def send(self, message: OutgoingEmail) -> None:
        now = self.clock.now()
        path = self.directory / sortable_name(now, "eml")
        await asyncio.to_thread(lambda: write_atomic(path, wire_message(message, self.sender, now, self.dkim)))
