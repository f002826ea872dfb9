"""A thin aiohttp client for DigiSign's REST API (``../shared/digisign-api.md``).

* Token from ``POST /api/auth-token``, cached until 5 minutes before ``exp`` (the legacy shape's
  ``expiresAt`` is accepted, an int as in the SDK fixture or an ISO date, C13), fetched again on a
  401 — once per call. Only the status of a 401 is read (its body is ``{"error": …}``, C14).
* Retries only what is safe (C5; the SDK never retries and DigiSign documents no idempotency keys):
  a request that never reached DigiSign (no connection) and a 429 (refused unprocessed) are
  repeated for every method; a 5xx or a timeout is repeated for GET, PUT and DELETE (their effect
  does not add up) and for the POSTs named ``retry=True`` (the token); for any other POST it raises
  :class:`DigiSignUncertain` — the caller reads back what happened instead of posting twice. Backoff
  honours ``Retry-After``; the waiting goes through an injected ``sleep`` so tests do not wait.
* A 400/422 with ``violations`` raises :class:`DigiSignInvalid` carrying them (Czech texts); a
  violation without ``propertyPath`` is a refusal for the state of the envelope or recipient (C16).
* Any other refusal raises :class:`DigiSignError` with its ``status`` (403, 404, …).
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

__all__ = ["DigiSignClient", "DigiSignError", "DigiSignInvalid", "DigiSignUncertain"]

RETRYABLE = frozenset({429, 500, 502, 503, 504})
TOKEN_MARGIN = 300
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})


class DigiSignInvalid(Exception):
    """DigiSign refused a request as invalid; ``violations`` are ``[(propertyPath, text)]`` (an
    empty path: the envelope's or recipient's state does not allow it)."""

    def __init__(self, violations: list[tuple[str, str]], detail: str) -> None:
        super().__init__(detail)
        self.violations = violations
        self.detail = detail

    @property
    def is_state(self) -> bool:
        """No violation names a field: refused for a state, not for what was sent (C16)."""
        return not any(path for path, _ in self.violations)

    @property
    def text(self) -> str:
        return "; ".join(t for _, t in self.violations if t) or self.detail


class DigiSignError(ProviderError):
    """DigiSign answered with a refusal other than a validation error (``status``: 403, 404, …)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class DigiSignUncertain(ProviderError):
    """A POST whose outcome is unknown (a timeout, a lost connection or a 5xx after it was sent):
    it may or may not have taken effect at DigiSign, so it is not repeated blindly."""


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
        }, auth=None, retry=True)  # a second token does no harm
        if status != 200 or not isinstance(body, dict) or "token" not in body:
            raise ProviderError(f"DigiSign refused the API keys ({status}).")
        return str(body["token"]), _expiry(body) or self.clock().timestamp() + 3600

    # ------------------------------------------------------------------ requests
    async def _send(
        self, method: str, path: str, *, json: Any = None, data: Any = None, params: Any = None, auth: str | None,
        retry: bool | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """One call, with retries of what is safe to repeat (see the module docs). Returns (status,
        JSON or bytes, headers); raises :class:`DigiSignUncertain` for a POST that may have happened."""
        assert self._session is not None, "start() the client first"
        repeatable = method in SAFE_METHODS if retry is None else retry
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
                    if resp.status in RETRYABLE and resp.status != 429 and not repeatable:
                        raise DigiSignUncertain(f"DigiSign answered {resp.status} to {method} {path}; it may or "
                                                "may not have taken effect.")
                    if resp.status in RETRYABLE and attempt < self.max_attempts:
                        last = f"HTTP {resp.status}"
                        await self.sleep(_retry_delay(resp.headers.get("Retry-After"), attempt))
                        continue
                    ctype = resp.headers.get("Content-Type", "")
                    body: Any = raw
                    if "json" in ctype and raw:
                        body = jsonlib.loads(raw)
                    return resp.status, body, dict(resp.headers)
            except aiohttp.ClientConnectorError as exc:  # no connection: DigiSign never saw the request
                last = type(exc).__name__
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if not repeatable:
                    raise DigiSignUncertain(f"DigiSign did not answer {method} {path} ({type(exc).__name__}); "
                                            "it may or may not have taken effect.") from None
                last = type(exc).__name__
            if attempt == self.max_attempts:
                break
            await self.sleep(_retry_delay(None, attempt))
        raise ProviderError(f"DigiSign did not answer {method} {path} after {self.max_attempts} attempts ({last}).")

    async def call(
        self, method: str, path: str, *, json: Any = None, data: Any = None, params: Any = None,
        retry: bool | None = None,
    ) -> Any:
        """An authenticated call: the JSON body (or bytes), or an error mapped to ours. ``retry``
        overrides whether a 5xx or timeout may be repeated (by default: not for POST)."""
        status, body, _ = await self._send(method, path, json=json, data=data, params=params,
                                           auth=await self._bearer(), retry=retry)
        if status == 401:  # expired or revoked token (the body says nothing we use): one fresh one
            status, body, _ = await self._send(method, path, json=json, data=data, params=params,
                                               auth=await self._bearer(renew=True), retry=retry)
        if 200 <= status < 300:
            return body
        if status in (400, 422) and isinstance(body, dict):
            violations = [
                (str(v.get("propertyPath") or ""), str(v.get("title") or v.get("message") or ""))
                for v in body.get("violations", []) if isinstance(v, dict)
            ]
            raise DigiSignInvalid(violations, str(body.get("detail") or body.get("title") or "invalid"))
        detail = (body.get("detail") or body.get("message") or body.get("error")) if isinstance(body, dict) else None
        tries = f" after {self.max_attempts} attempts" if status in RETRYABLE else ""
        raise DigiSignError(status, f"DigiSign answered {status} to {method} {path}{tries}: {detail or 'no detail'}")

    async def upload(self, name: str, content: bytes) -> dict[str, Any]:
        """Upload a file. Repeated after a lost answer: a second copy is an unused file at DigiSign,
        attached to nothing (it changes no envelope)."""

        def form() -> aiohttp.FormData:
            f = aiohttp.FormData()
            f.add_field("file", content, filename=name, content_type="application/pdf")
            return f

        return dict(await self.call("POST", "/api/files", data=form, retry=True))


def _expiry(body: dict[str, Any]) -> float | None:
    """The token's expiry (Unix seconds): ``exp``, or the legacy ``expiresAt`` (an int, or ISO 8601)."""
    for key in ("exp", "expiresAt"):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value.strip():
            try:
                return float(value)
            except ValueError:
                pass
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return None


def _retry_delay(retry_after: str | None, attempt: int) -> float:
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), 120.0)
        except ValueError:
            pass
    return min(2 ** (attempt - 1), 30) * random.uniform(0.8, 1.2)
