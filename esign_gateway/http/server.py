"""The listening socket: aiohttp's request handling behind a header-read deadline.

aiohttp closes a connection that has not completed a request within ``keepalive_timeout`` of its
start or of the previous response, but that timeout is also how long an idle keep-alive
connection may wait, and it must outlast a reverse proxy's (75 s here). A client that sends its
headers a byte at a time (slowloris) would hold a connection that long. :class:`_HeaderDeadline`
wraps each connection's protocol: a request whose headers are not complete ``header_seconds``
after its first byte arrived loses the connection. It only watches for the end of the header
block (``\\r\\n\\r\\n`` or a bare ``\\n\\n``); once a request's headers are in, the deadline is off
until that request's response has been written, so bodies and slow handlers are not affected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

__all__ = ["HEADER_SECONDS", "KEEPALIVE_SECONDS", "listen"]

HEADER_SECONDS = 15.0
KEEPALIVE_SECONDS = 75.0
log = structlog.get_logger(__name__)


class _HeaderDeadline(asyncio.Protocol):
    def __init__(self, inner: Any, header_seconds: float) -> None:
        self._inner = inner
        self._seconds = header_seconds
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._in_headers = True
        """Reading a request's header block (the state a connection starts in)."""
        self._served = 0

    # ------------------------------------------------------------------ the deadline
    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._seconds, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            log.warning("http_header_timeout", seconds=self._seconds, requests_served=self._served)
            self._transport.abort()

    def _watch(self, data: bytes) -> None:
        if not self._in_headers:
            return
        self._arm()
        window = self._tail + data
        if b"\r\n\r\n" in window or b"\n\n" in window:
            self._in_headers, self._tail = False, b""
            self._disarm()
        else:
            self._tail = window[-3:]

    # ------------------------------------------------------------------ asyncio.Protocol, forwarded
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._inner.connection_made(_Watched(transport, self))

    def data_received(self, data: bytes) -> None:
        self._watch(data)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _response_written(self) -> None:
        """A response went out: the next bytes start a new request's headers."""
        self._served += 1
        self._in_headers, self._tail = True, b""


class _Watched:
    """The transport as aiohttp sees it: the same, but a write that ends a response (aiohttp writes a
    response's last chunk, then asks for ``is_closing``/pauses reading) re-opens header watching."""

    def __init__(self, transport: asyncio.Transport, owner: _HeaderDeadline) -> None:
        self._transport = transport
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._owner._response_written()
        self._transport.write(data)

    def writelines(self, data: Any) -> None:
        self._owner._response_written()
        self._transport.writelines(data)


async def listen(runner: web.AppRunner, host: str, port: int, *,
                 header_seconds: float = HEADER_SECONDS) -> asyncio.Server:
    """Serve ``runner``'s app on ``host:port``; the caller closes the returned server before
    ``runner.cleanup()``."""
    server = runner.server
    assert server is not None, "runner.setup() first"
    return await asyncio.get_running_loop().create_server(
        lambda: _HeaderDeadline(server(), header_seconds), host, port, reuse_address=True,
    )
