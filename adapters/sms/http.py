"""HttpSmsSender: a generic HTTP SMS gateway — ``POST <url>`` with ``Authorization: Bearer <token>``
and ``{"to": "+420…", "text": "…", "sender": "eSign"}``; any 2xx is accepted.

A 4xx (other than 408/429) is permanent (the number or the text is refused); 408, 429, 5xx,
timeouts and connection errors are transient. The code SMS is sent while the signer waits, so
the timeout is short and there is one quick retry, not a queue.
"""

from __future__ import annotations

import asyncio

import aiohttp

from esign_gateway.errors import DeliveryError
from esign_gateway.ports import OutgoingSms

__all__ = ["HttpSmsSender"]


class HttpSmsSender:
    def __init__(self, url: str, token: str | None, *, sender: str = "eSign", timeout: float = 8.0,
                 attempts: int = 2) -> None:
        self.url = url
        self.token = token
        self.sender = sender
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.attempts = attempts

    async def send(self, message: OutgoingSms) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {"to": message.to, "text": message.text, "sender": self.sender}
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(0.5)
            try:
                async with aiohttp.ClientSession(timeout=self.timeout) as http, http.post(
                    self.url, json=body, headers=headers, allow_redirects=False
                ) as resp:
                    if 200 <= resp.status < 300:
                        return
                    last = f"SMS gateway answered {resp.status}"
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        raise DeliveryError(last, permanent=True)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"SMS gateway unavailable: {type(exc).__name__}"
        raise DeliveryError(last, permanent=False)
