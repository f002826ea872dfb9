"""DigiSign's webhook signature (notes §5, C15): header ``Signature: t=<unix>,s=<hex>``,
``s = hex(HMAC-SHA256(secret, "{t}.{raw body}"))``, compared in constant time.

Tolerance: a timestamp more than 300 s in the past is refused (the SDK's ``signature_tolerance``),
and so is one more than 300 s in the future — the SDK lets any future timestamp pass; refusing far
ones is stricter, and 300 s leave room for any clock skew between DigiSign and us. Pure: no
project imports.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable

__all__ = ["TOLERANCE_SECONDS", "InboundSignatureError", "sign_inbound", "verify_inbound"]

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
