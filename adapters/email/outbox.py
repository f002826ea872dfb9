"""OutboxEmailSender: development e-mail — each message an ``.eml`` file under the outbox."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from esign_gateway.clock import Clock
from esign_gateway.ports import OutgoingEmail

from .mime import build_mime

__all__ = ["OutboxEmailSender", "write_atomic"]


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def outbox_name(clock: Clock, suffix: str) -> str:
    """Names sort by time: ``20261123T090000123456Z-<hex>.<suffix>``."""
    return f"{clock.now().strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}.{suffix}"


class OutboxEmailSender:
    def __init__(self, directory: Path, *, sender: str, clock: Clock) -> None:
        self.directory = directory
        self.sender = sender
        self.clock = clock

    async def send(self, message: OutgoingEmail) -> None:
        mime = build_mime(message, self.sender, self.clock.now())
        path = self.directory / outbox_name(self.clock, "eml")
        await asyncio.to_thread(write_atomic, path, mime.as_bytes())
