"""Verification of provider webhooks (DigiSign style): header ``Signature: t=<unix>,s=<hex>``,
``s = hex(HMAC-SHA256(secret, "{t}.{raw body}"))``, 300 s tolerance, constant-time comparison.
Pure and copyable; the DigiSign adapter uses it for ``POST /webhooks/digisign``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable

__all__ = ["InboundSignatureError", "sign_inbound", "verify_inbound"]

TOLERANCE_SECONDS = 300
_HEADER = re.compile(r"^t=(?P<t>\d+),s=(?P<s>[0-9a-fA-F]+)$")


class InboundSignatureError(Exception):
    pass


def sign_inbound(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},s={digest}"


def verify_inbound(
    secrets: Iterable[str], header: str | None, body: bytes, *, now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raise unless ``header`` signs the raw ``body`` with one of ``secrets`` (each webhook has its own)."""
    match = _HEADER.match((header or "").strip())
    if match is None:
        raise InboundSignatureError("missing or malformed Signature header")
    timestamp = int(match["t"])
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InboundSignatureError("timestamp outside the tolerance")
    given = match["s"].lower().encode()
    for secret in secrets:
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, given):
            return
    raise InboundSignatureError("no matching signature")
