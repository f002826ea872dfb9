"""Canonical JSON + SHA-256 hash chain for audit events (append-only evidence).

Each event's hash covers the previous hash and the event's non-personal fields. Personal data
(IP, user agent) is kept outside the chain and committed to with a salted hash, so erasing it
after retention leaves the chain verifiable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["GENESIS", "ChainLink", "canonical", "link_hash", "pii_commitment", "verify"]

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pii_commitment(salt: str, ip: str | None, user_agent: str | None) -> str | None:
    if ip is None and user_agent is None:
        return None
    return hashlib.sha256(canonical([salt, ip, user_agent])).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainLink:
    seq: int
    body: dict[str, Any]
    """The hashed fields: envelope id, seq, type, at, actor, signer id, data, pii commitment."""
    prev_hash: str
    hash: str


def link_hash(prev_hash: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(body)).hexdigest()


def verify(links: Sequence[ChainLink]) -> int | None:
    """Return the ``seq`` of the first broken link, or None when the chain is intact."""
    prev = GENESIS
    for expected_seq, link in enumerate(links, start=1):
        if link.seq != expected_seq or link.prev_hash != prev or link_hash(prev, link.body) != link.hash:
            return link.seq
        prev = link.hash
    return None
