"""HttpSmsSender: a generic HTTP SMS gateway — ``POST <url>`` with ``Authorization: Bearer <token>``
and ``{"to": "+420…", "text": "…", "sender": "eSign"}``; any 2xx is accepted.

A 4xx (other than 408/429) is permanent (the number or the text is refused); 408, 429, 5xx,
timeouts and connection errors are transient. The code SMS is sent while the signer waits, so
the timeout is short and there is one quick retry, not a queue.

Every send is reported to ``monitor`` (a :class:`~adapters._transport.TransportMonitor`):
``health()`` is the ``sms`` component of ``/readyz``, not ready after three sends in a row failed
on the gateway's side, ready again after the next one it answers.
"""

from __future__ import annotations

import asyncio

import aiohttp

from adapters._transport import TransportMonitor
from esign_gateway.clock import Clock
from esign_gateway.errors import DeliveryError
from esign_gateway.ports import ComponentHealth, OutgoingSms

__all__ = ["HttpSmsSender"]


class HttpSmsSender:
    def __init__(self, url: str, token: str | None, *, sender: str = "eSign", timeout: float = 8.0,
                 attempts: int = 2, clock: Clock | None = None) -> None:
        self.url = url
        self.token = token
        self.sender = sender
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.attempts = attempts
        self.monitor = TransportMonitor("sms", "SMS gateway", clock=clock)

    async def health(self) -> ComponentHealth:
        return self.monitor.health()

    async def send(self, message: OutgoingSms) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {"to": message.to, "text": message.text, "sender": self.sender}
        last = reason = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(0.5)
            try:
                async with aiohttp.ClientSession(timeout=self.timeout) as http, http.post(
                    self.url, json=body, headers=headers, allow_redirects=False
                ) as resp:
                    if 200 <= resp.status < 300:
                        self.monitor.answered()
                        return
                    last = f"SMS gateway answered {resp.status}"
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        self.monitor.answered()  # the gateway works; it refuses this number or text
                        raise DeliveryError(last, permanent=True)
                    reason = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"SMS gateway unavailable: {type(exc).__name__}"
                reason = type(exc).__name__
        self.monitor.failed(reason)
        raise DeliveryError(last, permanent=False)
