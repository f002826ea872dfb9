"""How late the web process's event loop runs a timer: its own measure of how busy the loop is.

With SQLite the statements run on the loop (``db/sqlite_backend.py``), so a slow query, or simply
a loaded process, shows here first. ``/readyz`` reports the last window's percentiles, ``/metrics``
the histogram of every sample; the signing bench reads them while ceremonies run.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections import deque
from collections.abc import Callable

from pydantic import BaseModel

__all__ = ["LoopLag", "LoopLagMonitor"]


class LoopLag(BaseModel):
    """Milliseconds a timer fired late, over the last ``window_s`` seconds."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    samples: int
    window_s: float


class LoopLagMonitor:
    """Sleeps ``interval`` seconds again and again and records how much later than asked it woke."""

    def __init__(
        self, *, interval: float = 0.02, window: float = 10.0, observe: Callable[[float], None] | None = None
    ) -> None:
        self.interval = interval
        self.window = window
        self.observe = observe
        """Also told every sample's lag in seconds (the ``esign_event_loop_lag_seconds`` histogram)."""
        self._samples: deque[tuple[float, float]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.ticked = asyncio.Event()
        """Set after each sample (tests wait for it instead of for time)."""

    def record(self, at: float, lag: float) -> None:
        """One sample: at loop time ``at`` a timer fired ``lag`` seconds late."""
        self._samples.append((at, max(0.0, lag)))
        if self.observe is not None:
            self.observe(max(0.0, lag))
        while self._samples and self._samples[0][0] < at - self.window:
            self._samples.popleft()
        self.ticked.set()

    def summary(self) -> LoopLag | None:
        lags = [lag * 1000 for _, lag in self._samples]
        if len(lags) < 2:
            return None
        q = statistics.quantiles(lags, n=100, method="inclusive")
        return LoopLag(p50_ms=round(q[49], 2), p99_ms=round(q[98], 2), max_ms=round(max(lags), 2),
                       samples=len(lags), window_s=self.window)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            self.record(now, now - asked)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
