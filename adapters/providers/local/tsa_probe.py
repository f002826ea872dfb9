"""TsaProbe: does the configured RFC 3161 timestamp authority answer? Asked in the background.

Every signature the local provider makes carries a timestamp from ``ESIGN_TSA_URL``: while the
TSA is away no ceremony can complete. The probe asks it for a token of a random SHA-256 digest
(with a nonce) once at start and then every ``interval`` (5 minutes), sooner (``retry``, 30 s)
while it fails, and keeps the verdict. :meth:`health` returns that verdict: ``/readyz`` costs no
round trip to the TSA. One failed probe makes ``tsa`` not ready; one answered probe heals it.

An answer counts when it is HTTP 200 with a ``TimeStampResp`` that grants a token for *our*
digest and nonce. Whether the token's certificate chains to a trusted root is the start-up
signing self-test's question (a TSA does not change its certificate between two probes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog
from asn1crypto import algos, cms, core, tsp

from esign_gateway.clock import Clock, SystemClock
from esign_gateway.ports import ComponentHealth

__all__ = ["DEV_TSA_DETAIL", "TsaProbe", "dev_tsa_health"]

log = structlog.get_logger(__name__)

DEV_TSA_DETAIL = "built-in development TSA (ESIGN_TSA_URL is not set): timestamps are made in the signing workers"


async def dev_tsa_health() -> ComponentHealth:
    """Without ``ESIGN_TSA_URL`` the signing workers timestamp with the development TSA's key
    themselves (no network): ready whenever signing is (production refuses this configuration)."""
    return ComponentHealth("tsa", True, DEV_TSA_DETAIL)


def _shown(url: str) -> str:
    """The TSA's address as it may be shown: no credentials, no query (it may carry a token)."""
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _at(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


class _Reply(core.Sequence):
    """RFC 3161 ``TimeStampResp``, whose token is OPTIONAL (absent from a rejection; asn1crypto's
    own class requires it and cannot read a refusal)."""

    _fields: ClassVar[list[Any]] = [
        ("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class _Refused(Exception):
    """The TSA answered, but not with a token for our request."""


def _cause(exc: BaseException) -> str:
    """The root of an aiohttp error in plain words: ``ConnectionRefusedError``, ``no answer within 10 s``."""
    if isinstance(exc, _Refused):
        return str(exc)
    root: BaseException = exc
    while True:
        inner = getattr(root, "os_error", None) or root.__cause__
        if not isinstance(inner, BaseException) or inner is root:
            break
        root = inner
    return type(root).__name__


def _request() -> tuple[bytes, bytes, int]:
    digest = os.urandom(32)
    nonce = int.from_bytes(os.urandom(8), "big")
    req = tsp.TimeStampReq({
        "version": 1,
        "message_imprint": tsp.MessageImprint({
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}), "hashed_message": digest,
        }),
        "nonce": nonce,
        "cert_req": True,
    })
    return req.dump(), digest, nonce


def _check_reply(body: bytes, digest: bytes, nonce: int) -> None:
    try:
        reply = _Reply.load(body)
        status = reply["status"]["status"].native
        if status not in ("granted", "granted_with_mods"):
            raise _Refused(f"answered '{status}' instead of a timestamp token")
        token = reply["time_stamp_token"]
        info = token["content"]["encap_content_info"]["content"].parsed
        if info["message_imprint"]["hashed_message"].native != digest or info["nonce"].native != nonce:
            raise _Refused("answered with a token for another request")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _Refused(f"answered with no readable timestamp token ({type(exc).__name__})") from None


class TsaProbe:
    """The ``tsa`` component of ``/readyz`` for a TSA reached over HTTP."""

    name = "tsa"

    def __init__(
        self, url: str, *, clock: Clock | None = None, interval: timedelta = timedelta(minutes=5),
        retry: timedelta = timedelta(seconds=30), timeout_seconds: float = 10.0,
    ) -> None:
        self.url = url
        self.clock = clock or SystemClock()
        self.interval = interval
        self.retry = min(retry, interval)
        self.timeout_seconds = timeout_seconds
        self.failing_since: datetime | None = None
        self._verdict = ComponentHealth(self.name, False, f"TSA {_shown(url)} has not been asked yet")
        self._task: asyncio.Task[None] | None = None

    async def health(self) -> ComponentHealth:
        return self._verdict

    async def probe(self) -> ComponentHealth:
        """Ask the TSA now (one request, bounded by ``timeout_seconds``) and keep the verdict."""
        body, digest, nonce = _request()
        started = time.monotonic()
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                self.url, data=body, headers={"Content-Type": "application/timestamp-query"}, allow_redirects=False,
            ) as resp:
                if resp.status != 200:
                    raise _Refused(f"answered HTTP {resp.status}")
                _check_reply(await resp.content.read(1024 * 1024), digest, nonce)
        except TimeoutError:
            self._failed(f"no answer within {self.timeout_seconds:g} s")
        except (aiohttp.ClientError, OSError, _Refused) as exc:
            self._failed(_cause(exc))
        else:
            ms = round((time.monotonic() - started) * 1000)
            now = self.clock.now()
            if self.failing_since is not None:
                log.info("tsa_recovered", tsa=_shown(self.url), down_since=self.failing_since.isoformat())
            self.failing_since = None
            self._verdict = ComponentHealth(
                self.name, True, f"TSA {_shown(self.url)} answered in {ms} ms at {_at(now)}")
        return self._verdict

    def _failed(self, cause: str) -> None:
        now = self.clock.now()
        if self.failing_since is None:
            self.failing_since = now
        log.warning("tsa_probe_failed", tsa=_shown(self.url), cause=cause)
        self._verdict = ComponentHealth(
            self.name, False, f"TSA {_shown(self.url)} unreachable since {_at(self.failing_since)}: {cause}")

    async def start(self) -> None:
        """Probe once now (``/readyz`` knows at once), then keep probing in the background."""
        await self.probe()
        self._task = asyncio.create_task(self._run(), name="tsa-probe")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep((self.interval if self.failing_since is None else self.retry).total_seconds())
            try:
                await self.probe()
            except Exception:  # a fault of ours must not end the probing
                log.exception("tsa_probe_crashed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
