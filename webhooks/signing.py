"""Standard Webhooks signatures (https://www.standardwebhooks.com). Pure and copyable: a CRM
developer can paste ``verify`` into their receiver.

    webhook-id:        the event id (the same on every retry)
    webhook-timestamp: unix seconds
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")> [v1,<…> during a rotation]

The key is the base64-decoded part of the secret ``whsec_<base64>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

__all__ = ["SignatureError", "generate_secret", "sign", "signature_header", "verify"]

PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """The webhook is not authentic (or too old / too new)."""


def generate_secret(nbytes: int = 32) -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature_header(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature per active secret, space-separated (the new one first during a rotation)."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raise ``SignatureError`` unless ``body`` was signed with ``secret`` within ``tolerance`` s."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, sigs = lower.get("webhook-id"), lower.get("webhook-timestamp"), lower.get("webhook-signature")
    if not (msg_id and stamp and sigs):
        raise SignatureError("missing webhook headers")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("bad timestamp") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    expected = sign(secret, msg_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in sigs.split()):
        raise SignatureError("no matching signature")
