"""File helpers shared by the file-backed adapters (outboxes, document store). Not an adapter."""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path

__all__ = ["sortable_name", "write_atomic"]


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, rename it, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sortable_name(now: datetime, suffix: str) -> str:
    """Names that sort by time: ``20261123T090000123456Z-<hex>.<suffix>``."""
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}.{suffix}"
