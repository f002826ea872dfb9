"""LocalProvider: the gateway runs the ceremony; pyHanko signs in a process pool.

With the ``local`` provider every signature is made with the gateway's key: technically an
electronic seal, backed by two-channel evidence (e-mail link + SMS code) and a trusted timestamp.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any, TypeVar

from adapters._pool import RebuildingPool
from esign_gateway.errors import ProviderError
from esign_gateway.ports import CeremonyHost, ComponentHealth, SignatureRequest, SignedPdf

from . import pades

__all__ = ["LocalProvider"]

T = TypeVar("T")


class LocalProvider:
    name = "local"
    ceremony = CeremonyHost.GATEWAY

    def __init__(self, material: pades.SigningMaterial, *, max_workers: int = 2) -> None:
        self.material = material
        self.max_workers = max_workers
        self.pool = RebuildingPool("signing_pool", process_name="esign-sign", max_workers=max_workers,
                                   initializer=pades.init_worker, initargs=(material,))

    async def start(self) -> None:
        """Start the workers now: the first signature does not wait for them, and ``/readyz``
        knows at once whether they can load the key."""
        await self.pool.start()
        await self.pool.probe()

    async def close(self) -> None:
        await self.pool.close()

    async def health(self) -> ComponentHealth:
        return await self.pool.health()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self.pool.run(fn, *args)
        except ProviderError:
            raise
        except BrokenProcessPool:
            raise ProviderError("The signing workers died twice in a row; the signature was not made.") from None
        except Exception as exc:  # a pickling problem, a fault of ours
            raise ProviderError(f"The signing worker failed: {type(exc).__name__}.") from None

    async def sign(self, request: SignatureRequest) -> SignedPdf:
        pdf, when = await self._run(pades.sign, request)
        return SignedPdf(pdf=pdf, timestamp=when)

    async def renew(self, pdf: bytes) -> SignedPdf:
        """A fresh document timestamp on a B-LTA file (before the newest one's TSA certificate expires)."""
        renewed, when = await self._run(pades.renew, pdf)
        return SignedPdf(pdf=renewed, timestamp=when)

    async def timestamp_expiry(self, pdf: bytes) -> datetime | None:
        return await self._run(pades.newest_timestamp_expiry, pdf)

    async def self_test(self) -> str | None:
        """Sign a probe PDF in a worker (the real signing path, B-T) and validate it with the
        configured trust roots: None when it passes, else why this configuration cannot sign."""
        try:
            return await self._run(pades.self_test)
        except ProviderError as exc:
            return f"the signing workers failed: {exc.detail}"
