"""The job worker: claims due jobs and runs their handlers.

``handlers`` (built by bootstrap) maps a job kind to an async handler taking the payload. Handlers are idempotent
(jobs run at least once). A failing handler is retried with backoff until ``max_attempts``,
then the job is ``failed`` and stays visible. A handler that raises ``Postponed`` (its transport
is down, its work still matters) is tried again with backoff capped at 15 min and never fails for
it; one that raises ``Dropped`` (its work no longer matters) ends ``done`` with the reason.
``run_once`` drains what is due now (tests call it with a moved clock); ``run`` polls until
stopped: on stop (SIGTERM) it finishes the job in hand and gives the claimed-but-unstarted ones
back, due at once, for another worker.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from esign_gateway.clock import Clock
from esign_gateway.db import jobs as queue
from esign_gateway.db.outage import database_outage

__all__ = ["Handler", "Worker"]

Handler = Callable[[dict[str, Any]], Awaitable[None]]
log = structlog.get_logger(__name__)

OUTAGE_POLL_CAP_SECONDS = 5.0
"""The longest wait between two polls while the database cannot be reached."""


def _longer(wait: float, poll_seconds: float) -> float:
    """The next wait while the database is down: doubled, at least 0.5 s, at most the cap."""
    return min(max(wait * 2, 0.5), max(poll_seconds, OUTAGE_POLL_CAP_SECONDS))


class Worker:
    def __init__(
        self, handlers: Mapping[str, Handler], clock: Clock, *, poll_seconds: float = 1.0,
        lease: timedelta = timedelta(minutes=5), batch: int = 10, concurrency: int = 8,
    ) -> None:
        self.handlers = handlers
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.lease = lease
        self.batch = batch
        self.concurrency = max(1, concurrency)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Enqueued something in this process: look now rather than at the next poll."""
        self._wake.set()

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """Run every job that is due now, up to ``concurrency`` at a time; return how many ran.

        A slow job (a hanging webhook endpoint, a long report) holds one slot, not the queue: while
        it runs, a wake-up (a job enqueued in this process) claims again at once into the free
        slots. On ``stop``, claimed-but-unstarted jobs are given back and the running ones are
        finished. If this coroutine is cancelled (the worker dies), its running jobs die with it
        and their leases bring them back later.
        """
        ran = 0
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while stop is None or not stop.is_set():
                # Cleared before the claim, so a wake-up during the claim's query (a commit the
                # query did not see) is kept and leads to another claim, never to a lost poll.
                self._wake.clear()
                free = self.concurrency - len(in_flight)
                jobs = (
                    await queue.claim(self.id, self.clock.now(), limit=min(free, self.batch), lease=self.lease)
                    if free > 0 else []
                )
                if not jobs and not in_flight:
                    break
                for job in jobs:
                    if stop is not None and stop.is_set():
                        await queue.release(job, self.id, self.clock.now())
                    else:
                        in_flight.add(asyncio.create_task(self._run_through_outage(job, stop)))
                if in_flight and (not jobs or len(in_flight) >= self.concurrency):
                    ran += await self._wait_for_slot(in_flight)
            if in_flight:
                done, _ = await asyncio.wait(in_flight)
                ran += len(done)
        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise
        return ran

    async def _wait_for_slot(self, in_flight: set[asyncio.Task[None]]) -> int:
        """Wait until a running job ends or, with a slot free, until something is enqueued; drop
        the finished jobs from ``in_flight`` and return how many finished."""
        woken = asyncio.ensure_future(self._wake.wait()) if len(in_flight) < self.concurrency else None
        try:
            done, _ = await asyncio.wait(
                in_flight if woken is None else {*in_flight, woken}, return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if woken is not None:
                woken.cancel()
        finished = {task for task in done if task is not woken}
        in_flight -= finished
        return len(finished)

    async def _run_through_outage(self, job: queue.ClaimedJob, stop: asyncio.Event | None) -> None:
        """Run ``job``; if the database went away under it (its handler's queries, or the recording
        of its outcome), the job was not at fault: give it back, due at once and the attempt not
        counted, as soon as the database answers again — not after its lease. Its handler then runs
        again (jobs are at least once). On ``stop`` meanwhile, the lease brings it back instead."""
        try:
            await self._run(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if database_outage(exc) is None:
                raise
            wait = self.poll_seconds
            while stop is None or not stop.is_set():
                try:
                    await queue.release(job, self.id, self.clock.now())
                    return
                except Exception as again:
                    if database_outage(again) is None:
                        raise
                await asyncio.sleep(wait)  # the database is down: nothing to wake up for
                wait = _longer(wait, self.poll_seconds)

    async def _run(self, job: queue.ClaimedJob) -> None:
        handler = self.handlers.get(job.kind)
        bound = log.bind(job_id=job.id, job_kind=job.kind, attempt=job.attempts)
        if handler is None:
            await queue.fail(job, self.id, self.clock.now(), f"no handler for {job.kind}")
            bound.error("job_unknown_kind")
            return
        try:
            await handler(job.payload)
        except asyncio.CancelledError:
            raise
        except queue.Postponed as exc:
            due = await queue.postpone(job, self.id, self.clock.now(), str(exc))
            bound.info("job_postponed", due_at=due.isoformat())
        except queue.Dropped as exc:
            await queue.complete(job.id, self.id, self.clock.now(), note=f"dropped: {exc}")
            bound.info("job_dropped", reason=str(exc))
        except Exception as exc:
            await queue.fail(job, self.id, self.clock.now(), f"{type(exc).__name__}: {exc}")
            bound.warning("job_failed", error=type(exc).__name__)
        else:
            await queue.complete(job.id, self.id, self.clock.now())

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``. While the database cannot be reached, the worker says so once
        (``worker_database_unreachable``), polls ever less often (doubling up to
        ``OUTAGE_POLL_CAP_SECONDS``) and says when it is back (``worker_database_back``, with how
        long it was gone); any other poll failure is logged with its traceback."""
        log.info("worker_started", worker=self.id)
        outage_since: datetime | None = None
        wait = self.poll_seconds
        while not stop.is_set():
            try:
                await self.run_once(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                cause = database_outage(exc)
                if cause is None:
                    log.exception("worker_poll_failed")
                    wait = self.poll_seconds
                else:
                    if outage_since is None:
                        outage_since = self.clock.now()
                        log.error("worker_database_unreachable", worker=self.id, error=type(cause).__name__)
                    wait = _longer(wait, self.poll_seconds)
            else:
                if outage_since is not None:
                    gone = (self.clock.now() - outage_since).total_seconds()
                    log.info("worker_database_back", worker=self.id, after_seconds=round(gone, 1))
                    outage_since = None
                wait = self.poll_seconds
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
        log.info("worker_stopped", worker=self.id)
