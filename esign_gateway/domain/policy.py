"""Policy constants and rules that several layers apply: defined here once.

The retention of completed envelopes is ``envelope.RETENTION_YEARS`` (the aggregate's default).
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_EXPIRY_DAYS", "UNSIGNED_RETENTION_DAYS", "token_hash"]

MAX_EXPIRY_DAYS = 90
"""The latest expiry an envelope may get, in days from now: on create, extend and as a tenant's default."""

UNSIGNED_RETENTION_DAYS = 90
"""Default of ``ESIGN_UNSIGNED_RETENTION_DAYS``: an envelope that ended unsigned is purged this long after."""


def token_hash(token: str) -> str:
    """What is stored of a signer or download link token (SHA-256, hex): the link is the token's one copy."""
    return hashlib.sha256(token.encode()).hexdigest()
