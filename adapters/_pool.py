"""A process pool that outlives its workers: the signing and report pools.

``concurrent.futures.ProcessPoolExecutor`` is broken for good once one worker dies (``kill -9``,
the OOM killer, a segfault in a C library): every later call raises ``BrokenProcessPool``.
:class:`RebuildingPool` replaces a broken executor with a fresh one and runs the call that was in
flight once more (signing and rendering are pure functions of their input: a second run is safe).
If the fresh pool breaks too (its initializer cannot load the key, processes cannot start), the
call fails and :meth:`health` says so until a call succeeds again.

Workers are started with ``spawn`` (the gateway holds an event loop and database connections:
never fork those) and watch their parent (:func:`adapters._process.worker_init`), so a ``kill -9``
of the gateway does not leave them behind.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import structlog

from esign_gateway.logging import worker_logging
from esign_gateway.ports import ComponentHealth

from ._process import worker_init

__all__ = ["RebuildingPool"]

T = TypeVar("T")
log = structlog.get_logger(__name__)


class RebuildingPool:
    def __init__(
        self, name: str, *, process_name: str, max_workers: int,
        initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (),
    ) -> None:
        self.name = name
        self.process_name = process_name
        self.max_workers = max_workers
        self.initializer = initializer
        self.initargs = initargs
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.rebuilt = 0
        """Executors replaced after a worker died."""
        self.broken: str | None = None
        """Why the last call failed on a fresh pool too (None once a call succeeds again)."""
        self._probing: asyncio.Future[None] | None = None

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.max_workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=worker_init,
                    initargs=(self.process_name, os.getpid(), self.initializer, self.initargs, worker_logging()),
                )
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Drop ``broken`` (once, however many calls saw it break)."""
        with self._lock:
            if self._pool is not broken:
                return
            self._pool = None
            self.rebuilt += 1
        broken.shutdown(wait=False, cancel_futures=True)
        log.warning("worker_pool_rebuilt", pool=self.name, rebuilt=self.rebuilt)

    async def probe(self) -> None:
        """Start the workers now and learn whether they can start at all (after a rebuild, so
        ``/readyz`` tells the truth before the next real call)."""
        pool = self._executor()
        try:
            await asyncio.get_running_loop().run_in_executor(pool, _alive)
        except BrokenProcessPool:
            self._replace(pool)
            self.broken = f"the {self.name} workers cannot start"
            log.error("worker_pool_broken", pool=self.name)
        else:
            self.broken = None

    @property
    def pids(self) -> list[int]:
        """The live worker processes (for tests and benches)."""
        with self._lock:
            pool = self._pool
        processes = getattr(pool, "_processes", None) or {}
        return [pid for pid, p in dict(processes).items() if p.is_alive()]

    async def start(self) -> None:
        self._executor()

    async def close(self) -> None:
        if self._probing is not None:
            await asyncio.gather(self._probing, return_exceptions=True)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker; once more on a fresh pool when the worker died meanwhile."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._executor()
            try:
                result = await loop.run_in_executor(pool, fn, *args)
            except BrokenProcessPool:
                self._replace(pool)
                if attempt == 2:
                    self.broken = f"the {self.name} workers died twice in a row (rebuilt {self.rebuilt} times)"
                    log.error("worker_pool_broken", pool=self.name)
                    raise
                log.warning("worker_died_retrying", pool=self.name)
            else:
                self.broken = None
                return result
        raise AssertionError("unreachable")

    async def health(self) -> ComponentHealth:
        if self.broken is not None:
            if self._probing is None or self._probing.done():  # find out, in the background, whether it heals
                self._probing = asyncio.ensure_future(self.probe())
            return ComponentHealth(self.name, False, self.broken)
        return ComponentHealth(self.name, True, f"{len(self.pids)} of {self.max_workers} workers running, "
                                                f"pool rebuilt {self.rebuilt} times since start")


def _alive() -> bool:
    return True
