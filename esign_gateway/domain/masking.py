"""Masking of personal data for pages, logs and reports."""

from __future__ import annotations

import re

__all__ = ["mask_email", "mask_phone"]


def mask_phone(e164: str) -> str:
    """``+420601123456`` → ``+420 *** *** 456``: enough for a signer to recognise their phone."""
    if len(e164) < 7:
        return "***"
    country = e164[:4] if e164.startswith("+4") else e164[:3]
    rest = e164[len(country):]
    masked = "*" * (len(rest) - 3) + rest[-3:]
    groups = [masked[max(0, i - 3):i] for i in range(len(masked), 0, -3)][::-1]
    return f"{country} {' '.join(groups)}"


_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def mask_addresses(text: str) -> str:
    """Every e-mail address in a free text (a mail server's refusal quotes it) masked."""
    return _ADDRESS.sub(lambda m: mask_email(m.group(0)), text)


def mask_email(email: str) -> str:
    """``jana.novakova@example.cz`` → ``j***a@e***.cz``."""
    local, _, domain = email.partition("@")
    host, _, tld = domain.rpartition(".")
    masked_local = local[0] + "***" + (local[-1] if len(local) > 1 else "")
    masked_host = (host[0] + "***") if host else "***"
    return f"{masked_local}@{masked_host}.{tld}" if tld else f"{masked_local}@***"
