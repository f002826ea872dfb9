"""LocalProvider: the gateway runs the ceremony; pyHanko signs in a process pool.

With the ``local`` provider every signature is made with the gateway's key: technically an
electronic seal, backed by two-channel evidence (e-mail link + SMS code) and a trusted timestamp.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from esign_gateway.errors import ProviderError
from esign_gateway.ports import CeremonyHost, SignatureRequest, SignedPdf

from . import pades

__all__ = ["LocalProvider"]

T = TypeVar("T")


class LocalProvider:
    name = "local"
    ceremony = CeremonyHost.GATEWAY

    def __init__(self, material: pades.SigningMaterial, *, max_workers: int = 2) -> None:
        self.material = material
        self.max_workers = max_workers
        self._pool: ProcessPoolExecutor | None = None

    async def start(self) -> None:
        if self._pool is None:
            # spawn: the parent runs an event loop and holds database connections; never fork those.
            self._pool = ProcessPoolExecutor(
                max_workers=self.max_workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=pades.init_worker, initargs=(self.material,),
            )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except ProviderError:
            raise
        except Exception as exc:  # a dead worker process, a pickling problem
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
