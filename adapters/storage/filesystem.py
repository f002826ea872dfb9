"""FileDocumentStore: content-addressed blobs (``root/ab/cd/<sha256>``), atomic and fsynced.

No path is ever built from user input: the key is the SHA-256 the store computed, checked
against a strict pattern on every call.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from datetime import datetime
from pathlib import Path

from adapters._files import write_atomic

__all__ = ["FileDocumentStore"]

_KEY = re.compile(r"^[0-9a-f]{64}$")


class FileDocumentStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError("not a document key")
        return self.root / key[:2] / key[2:4] / key

    def _put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if path.exists():
            os.utime(path)  # written again: not garbage, whatever the first writer's fate
            return key
        write_atomic(path, data)
        return key

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _written_before(self, moment: datetime) -> list[str]:
        cutoff = moment.timestamp()
        return [p.name for p in self.root.glob("??/??/*") if _KEY.fullmatch(p.name) and p.stat().st_mtime < cutoff]

    async def written_before(self, moment: datetime) -> list[str]:
        return await asyncio.to_thread(self._written_before, moment)

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self._put, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).exists)
