"""Logging: structlog and the standard library's ``logging`` through one formatter, with redaction.

structlog's "rendering using structlog-based formatters within logging" pattern: structlog's
loggers hand their event dicts to the standard library (``structlog.stdlib.LoggerFactory`` +
``ProcessorFormatter.wrap_for_formatter``), and the root logger's one handler formats every record —
ours and those of aiohttp, asyncio, pyHanko, tortoise, asyncpg, pikepdf and ``warnings``
(``logging.captureWarnings``) — with the same processors: request context, level, logger name,
UTC timestamp, the traceback as an ``exception`` field, redaction, then JSON (``json=True``) or the
console renderer. With ``ESIGN_LOG_JSON=true`` every line a process writes is therefore one JSON
object; worker processes configure themselves the same way (:func:`worker_logging`, passed to
their initializer).

Tokens, codes, API keys, passwords and document bytes never reach a log: any key that names one
is replaced, bytes values are replaced by their length, and in every string (messages and
tracebacks of libraries included) a signer or download link's token, an API key or a webhook
secret is cut out and an e-mail address or a phone number masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, TextIO

import structlog
from structlog.stdlib import ProcessorFormatter

from esign_gateway.domain.masking import mask_email, mask_phone

__all__ = ["WorkerLogging", "configure_logging", "redact", "worker_logging"]

_SECRET_KEYS = re.compile(r"(token|code|secret|password|api_key|authorization|pepper|content|pdf|otp)", re.I)
_SECRET_VALUES = re.compile(
    r"(esk_[A-Za-z0-9_\-]{8,}|/(?:sign|download)/[A-Za-z0-9_\-]{16,}|whsec_[A-Za-z0-9+/=]{8,})"
)
_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w+])\+\d{8,15}(?!\d)")
_ALLOWED = {"status_code", "code_kind", "error_code"}
_QUIET = ("pyhanko", "pyhanko_certvalidator", "tortoise", "aiosqlite", "asyncpg", "aiohttp.access", "fontTools",
          "pikepdf")
"""Libraries whose INFO lines say nothing an operator needs: WARNING and up only."""


def _clean_text(text: str) -> str:
    text = _SECRET_VALUES.sub("[redacted]", text)
    text = _ADDRESS.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def _clean(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return _clean_text(value)
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.startswith("_"):  # the formatter's own (_record, _from_structlog)
            continue
        if key != "event" and key not in _ALLOWED and _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
        else:
            event[key] = _clean(event[key])
    return event


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse with a traceback that quotes the raw bytes, headers
    and credentials included. Such a record becomes one line naming the error and the peer."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError  # not at import: the CLI's commands never load aiohttp

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
            structlog.get_logger("esign_gateway.http.server").warning(
                "http_request_malformed", error=type(exc).__name__, status=exc.code, peer=str(peer) if peer else None,
            )
            return False
        return True


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler: writes to the ``sys.stdout`` of the moment (a test's capture replaces it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


_PROCESS: dict[str, str] = {}


def _process(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A worker process's name (``esign-sign``…) on each of its lines."""
    event.update(_PROCESS)
    return event


def _shared() -> list[Any]:
    """What every line gets, ours and the libraries' alike."""
    return [
        structlog.contextvars.merge_contextvars,
        _process,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


@dataclass(frozen=True, slots=True)
class WorkerLogging:
    """How a process configured its logging, for the worker processes it starts (picklable)."""

    level: str
    json: bool

    def apply(self, process: str | None = None) -> None:
        configure_logging(self.level, json=self.json, process=process)


_current: WorkerLogging | None = None


def worker_logging() -> WorkerLogging | None:
    """This process's logging settings (None before :func:`configure_logging`): a pool passes them
    to its workers' initializer, so their lines look like the parent's."""
    return _current


def configure_logging(level: str = "INFO", *, json: bool = True, process: str | None = None) -> None:
    """Route structlog and the standard library through one redacting formatter on stdout.

    Safe to call again (tests do): the previous handler of ours is replaced, other handlers kept."""
    global _current
    _current = WorkerLogging(level, json)
    if process is not None:
        _PROCESS["process"] = process
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    handler = _Stdout()
    handler.setFormatter(ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[
            ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # a library's traceback: the ``exception`` field
            redact,
            renderer,
        ],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stdout)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(False)  # undo a capture a test's warning filter may have swept away
    logging.captureWarnings(True)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequests) for f in server_log.filters):
        server_log.addFilter(_MalformedRequests())
    for quiet in _QUIET:
        logging.getLogger(quiet).setLevel(max(logging.WARNING, numeric))
    processors = structlog.get_config()["processors"]  # the same list: loggers already cached keep it
    processors[:] = [
        *_shared(),
        structlog.processors.format_exc_info,
        redact,  # before the record exists: no other handler (a test's capture) sees a secret
        ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
