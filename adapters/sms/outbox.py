"""OutboxSmsSender: development SMS — each message a JSON file ``{"to", "text", "sent_at"}``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from adapters._files import sortable_name, write_atomic
from esign_gateway.clock import Clock
from esign_gateway.ports import OutgoingSms

__all__ = ["OutboxSmsSender"]


class OutboxSmsSender:
    def __init__(self, directory: Path, *, clock: Clock) -> None:
        self.directory = directory
        self.clock = clock

    async def send(self, message: OutgoingSms) -> None:
        body = {"to": message.to, "text": message.text, "sent_at": self.clock.now().isoformat()}
        path = self.directory / sortable_name(self.clock.now(), "json")
        await asyncio.to_thread(write_atomic, path, json.dumps(body, ensure_ascii=False).encode())
