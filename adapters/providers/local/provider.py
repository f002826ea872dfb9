"""LocalProvider: the gateway runs the ceremony; pyHanko signs in a process pool.

With the ``local`` provider every signature is made with the gateway's key: technically an
electronic seal, backed by two-channel evidence (e-mail link + SMS code) and a trusted timestamp.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from esign_gateway.errors import ProviderError
from esign_gateway.ports import CeremonyHost, SignatureRequest, SignedPdf

from . import pades

__all__ = ["LocalProvider"]


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

    async def sign(self, request: SignatureRequest) -> SignedPdf:
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        try:
            pdf, when = await asyncio.get_running_loop().run_in_executor(self._pool, pades.sign, request)
        except ProviderError:
            raise
        except Exception as exc:  # a dead worker process, a pickling problem
            raise ProviderError(f"The signing worker failed: {type(exc).__name__}.") from None
        return SignedPdf(pdf=pdf, timestamp=when)
