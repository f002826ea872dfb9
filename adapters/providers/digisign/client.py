"""A thin aiohttp client for DigiSign's REST API (``../shared/digisign-api.md``).

* Token from ``POST /api/auth-token``, cached until 5 minutes before ``exp`` (``expiresAt`` of the
  legacy shape is accepted), fetched again on a 401 — once per call.
* Retries with backoff on 429, 500, 502, 503, 504 and timeouts, honouring ``Retry-After``; the
  waiting goes through an injected ``sleep`` so tests do not wait.
* A 400/422 with ``violations`` raises :class:`DigiSignInvalid` carrying them (Czech texts).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from esign_gateway.errors import ProviderError

__all__ = ["DigiSignClient", "DigiSignInvalid"]

RETRYABLE = frozenset({429, 500, 502, 503, 504})
TOKEN_MARGIN = 300


class DigiSignInvalid(Exception):
    """DigiSign refused a request as invalid; ``violations`` are ``[(propertyPath, text)]``."""

    def __init__(self, violations: list[tuple[str, str]], detail: str) -> None:
        super().__init__(detail)
        self.violations = violations
        self.detail = detail


class DigiSignClient:
    def __init__(
        self, base_url: str, access_key: str, secret_key: str, *, clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, max_attempts: int = 5,
        timeout_seconds: float = 15.0, language: str = "cs",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._access_key, self._secret_key = access_key, secret_key
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.language = language
        self._session: aiohttp.ClientSession | None = None
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ token
    async def _bearer(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            now = self.clock().timestamp()
            if renew or self._token is None or self._token[1] - TOKEN_MARGIN <= now:
                self._token = await self._fetch_token()
            return self._token[0]

    async def _fetch_token(self) -> tuple[str, float]:
        status, body, _ = await self._send("POST", "/api/auth-token", json={
            "accessKey": self._access_key, "secretKey": self._secret_key,
        }, auth=None)
        if status != 200 or not isinstance(body, dict) or "token" not in body:
            raise ProviderError(f"DigiSign refused the API keys ({status}).")
        exp = body.get("exp")
        if exp is None and body.get("expiresAt"):
            exp = datetime.fromisoformat(str(body["expiresAt"])).timestamp()
        return str(body["token"]), float(exp or self.clock().timestamp() + 3600)

    # ------------------------------------------------------------------ requests
    async def _send(
        self, method: str, path: str, *, json: Any = None, data: Any = None, params: Any = None, auth: str | None,
    ) -> tuple[int, Any, dict[str, str]]:
        """One attempt, with retries of transient failures. Returns (status, JSON or bytes, headers)."""
        assert self._session is not None, "start() the client first"
        headers = {"Accept-Language": self.language}
        if auth is not None:
            headers["Authorization"] = f"Bearer {auth}"
        last: str = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                payload = data() if callable(data) else data  # a multipart form is built afresh per attempt
                async with self._session.request(method, self.base_url + path, json=json, data=payload, params=params,
                                                 headers=headers, allow_redirects=False) as resp:
                    raw = await resp.read()
                    if resp.status in RETRYABLE and attempt < self.max_attempts:
                        last = f"HTTP {resp.status}"
                        await self.sleep(_retry_delay(resp.headers.get("Retry-After"), attempt))
                        continue
                    ctype = resp.headers.get("Content-Type", "")
                    body: Any = raw
                    if "json" in ctype and raw:
                        body = jsonlib.loads(raw)
                    return resp.status, body, dict(resp.headers)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                last = type(exc).__name__
                if attempt == self.max_attempts:
                    break
                await self.sleep(_retry_delay(None, attempt))
        raise ProviderError(f"DigiSign did not answer {method} {path} after {self.max_attempts} attempts ({last}).")

    async def call(
        self, method: str, path: str, *, json: Any = None, data: Any = None, params: Any = None,
    ) -> Any:
        """An authenticated call: the JSON body (or bytes), or an error mapped to ours."""
        status, body, _ = await self._send(method, path, json=json, data=data, params=params,
                                           auth=await self._bearer())
        if status == 401:  # expired or revoked token: one fresh one
            status, body, _ = await self._send(method, path, json=json, data=data, params=params,
                                               auth=await self._bearer(renew=True))
        if 200 <= status < 300:
            return body
        if status in (400, 422) and isinstance(body, dict):
            violations = [
                (str(v.get("propertyPath", "")), str(v.get("title") or v.get("message") or ""))
                for v in body.get("violations", [])
            ]
            raise DigiSignInvalid(violations, str(body.get("detail") or body.get("title") or "invalid"))
        detail = body.get("detail") or body.get("message") if isinstance(body, dict) else None
        tries = f" after {self.max_attempts} attempts" if status in RETRYABLE else ""
        raise ProviderError(f"DigiSign answered {status} to {method} {path}{tries}: {detail or 'no detail'}")

    async def upload(self, name: str, content: bytes) -> dict[str, Any]:
        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("file", content, filename=name, content_type="application/pdf")
            return f

        return dict(await self.call("POST", "/api/files", data=form))


def _retry_delay(retry_after: str | None, attempt: int) -> float:
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), 120.0)
        except ValueError:
            pass
    return min(2 ** (attempt - 1), 30) * random.uniform(0.8, 1.2)
