"""structlog configuration with a redaction processor.

Tokens, codes, API keys, passwords and document bytes never reach a log: any key that names
one is replaced, bytes values are replaced by their length, and anything that looks like a
signer link or an API key inside a string is cut out.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["configure_logging", "redact"]

_SECRET_KEYS = re.compile(r"(token|code|secret|password|api_key|authorization|pepper|content|pdf|otp)", re.I)
_SECRET_VALUES = re.compile(r"(esk_[A-Za-z0-9_\-]{8,}|/sign/[A-Za-z0-9_\-]{16,}|whsec_[A-Za-z0-9+/=]{8,})")
_ALLOWED = {"status_code", "code_kind", "error_code"}


def _clean(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return _SECRET_VALUES.sub("[redacted]", value)
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key != "event" and key not in _ALLOWED and _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
        else:
            event[key] = _clean(event[key])
    return event


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse with a traceback that quotes the raw bytes, headers
    and credentials included. Such a record becomes one line naming the error and the peer."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
            structlog.get_logger("aiohttp.server").warning(
                "http_request_malformed", error=type(exc).__name__, status=exc.code, peer=str(peer) if peer else None,
            )
            return False
        return True


class _RedactingFormatter(logging.Formatter):
    """Library records (tracebacks included) pass the same value redaction as our own lines."""

    def format(self, record: logging.LogRecord) -> str:
        return _SECRET_VALUES.sub("[redacted]", super().format(record))


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper())
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_RedactingFormatter("%(message)s"))
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequests) for f in server_log.filters):
        server_log.addFilter(_MalformedRequests())
    for noisy in ("pyhanko", "pyhanko_certvalidator", "tortoise", "aiosqlite", "asyncpg", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
