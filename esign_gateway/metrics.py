"""Prometheus metrics of one gateway process: every definition, and the registry they live in.

``Metrics()`` makes a registry of its own (never prometheus_client's global one): the composition
root makes one per Container and hands it to the services, the webhook dispatcher and the app
(``http.keys.METRICS``), so tests that build many containers never share a counter.
``GET /metrics`` (``http/routes/metrics.py``) renders it; a ``worker`` process serves the same on
``ESIGN_WORKER_METRICS_PORT``.

Label values are a closed vocabulary chosen by code — route templates (never the raw path), status
codes, methods, job kinds, provider names, outcomes (``ok`` or an error's stable ``code``) — never
a tenant id, an envelope id, an address, a phone number or a token.

The job table's gauges (due, running, failed by kind; the age of the oldest due job) are read at
scrape time by :meth:`Metrics.refresh_jobs`: three grouped counts on the ``(status, due_at)``
index, bounded by :data:`JOB_QUERY_TIMEOUT_SECONDS`, then :class:`JobTableCollector` yields that
snapshot (a kind that left the table leaves the scrape too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .db.job_stats import JobTableSnapshot, read_job_table
from .db.jobs import Dropped, Postponed
from .errors import DeliveryError, GatewayError

__all__ = ["JOB_QUERY_TIMEOUT_SECONDS", "JobTableCollector", "Metrics", "outcome_of"]

log = structlog.get_logger(__name__)

JOB_QUERY_TIMEOUT_SECONDS = 2.0
"""The longest a scrape waits for the job table; past it the job gauges are left out of that scrape."""

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
_LAG = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def outcome_of(exc: BaseException | None) -> str:
    """``ok``, or the stable code of a gateway error (``pdf_invalid``, ``provider_error`` …), or ``error``."""
    if exc is None:
        return "ok"
    if isinstance(exc, GatewayError):
        return exc.code
    return "error"


def _message_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "sent"
    if isinstance(exc, DeliveryError):
        return "refused" if exc.permanent else "failed"
    return "error"


def _job_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, Postponed):
        return "postponed"
    if isinstance(exc, Dropped):
        return "dropped"
    return "error"


class JobTableCollector(Collector):
    """Yields the last :class:`JobTableSnapshot` read for this scrape (nothing before the first)."""

    def __init__(self) -> None:
        self.snapshot: JobTableSnapshot | None = None
        self.kinds: frozenset[str] = frozenset()
        """Kinds always reported (0 when absent), so a dashboard has a series before the first job."""

    def describe(self) -> Iterable[Metric]:
        return ()  # families vary with the snapshot: nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        ok = GaugeMetricFamily("esign_jobs_query_ok", "1 when this scrape could read the job table, else 0.")
        ok.add_metric([], 0.0 if snap is None else 1.0)
        yield ok
        if snap is None:
            return
        took = GaugeMetricFamily("esign_jobs_query_seconds", "How long this scrape's job-table read took.")
        took.add_metric([], snap.seconds)
        yield took
        kinds = sorted(self.kinds | snap.kinds())
        for name, text, values in (
            ("esign_jobs_due", "Jobs due now (pending, or running past their lease), by kind.", snap.due),
            ("esign_jobs_running", "Jobs a worker holds under a live lease, by kind.", snap.running),
            ("esign_jobs_failed", "Jobs that ended failed (stay in the table until handled), by kind.", snap.failed),
        ):
            family = GaugeMetricFamily(name, text, labels=["kind"])
            for kind in kinds:
                family.add_metric([kind], float(values.get(kind, 0)))
            yield family
        age = GaugeMetricFamily("esign_jobs_oldest_due_age_seconds",
                                "Seconds since the oldest due job of a kind became due (0: none due).", labels=["kind"])
        for kind in kinds:
            oldest = snap.oldest_due.get(kind)
            age.add_metric([kind], max(0.0, (snap.at - oldest).total_seconds()) if oldest else 0.0)
        yield age


class Metrics:
    """The metric families of one process (see the module docs for names and labels)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.http_requests = Counter(
            "esign_http_requests", "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"), registry=r)
        self.http_duration = Histogram(
            "esign_http_request_duration_seconds", "Time to answer an HTTP request, by method and route template.",
            ("method", "route"), buckets=_FAST, registry=r)
        self.signatures = Counter(
            "esign_signatures", "Signatures made (one per document and signer), by provider and outcome.",
            ("provider", "outcome"), registry=r)
        self.signature_duration = Histogram(
            "esign_signature_duration_seconds", "Time to sign one document, by provider.",
            ("provider",), buckets=_SLOW, registry=r)
        self.inspections = Counter(
            "esign_pdf_inspections", "Uploaded PDFs inspected, by outcome (ok or the refusal's code).",
            ("outcome",), registry=r)
        self.inspection_duration = Histogram(
            "esign_pdf_inspection_duration_seconds", "Time to inspect one uploaded PDF.", buckets=_SLOW, registry=r)
        self.webhook_deliveries = Counter(
            "esign_webhook_deliveries", "Webhook delivery attempts, by outcome (succeeded, retrying, failed, held).",
            ("outcome",), registry=r)
        self.webhook_duration = Histogram(
            "esign_webhook_delivery_duration_seconds", "Time of one webhook delivery attempt.",
            buckets=_FAST, registry=r)
        self.messages = Counter(
            "esign_messages", "E-mails and SMS handed to their transport, by channel and outcome "
            "(sent, failed: try again, refused: for good, error).", ("channel", "outcome"), registry=r)
        self.message_duration = Histogram(
            "esign_message_send_duration_seconds", "Time to hand one message to its transport, by channel.",
            ("channel",), buckets=_FAST, registry=r)
        self.quota_refusals = Counter(
            "esign_quota_refusals", "Requests refused by a plan limit (monthly_documents: 402, daily_requests: 429).",
            ("limit",), registry=r)
        self.jobs_run = Counter(
            "esign_jobs_run", "Job handler runs, by kind and outcome (ok, postponed, dropped, error).",
            ("kind", "outcome"), registry=r)
        self.job_duration = Histogram(
            "esign_job_duration_seconds", "Time of one job handler run, by kind.", ("kind",), buckets=_SLOW,
            registry=r)
        self.loop_lag = Histogram(
            "esign_event_loop_lag_seconds", "How late the event loop ran a 20 ms timer.", buckets=_LAG, registry=r)
        self.job_table = JobTableCollector()
        r.register(self.job_table)
        for limit in ("monthly_documents", "daily_requests"):  # series exist at 0 before the first refusal
            self.quota_refusals.labels(limit)
        for channel in ("email", "sms"):
            for outcome in ("sent", "failed", "refused", "error"):
                self.messages.labels(channel, outcome)
        for outcome in ("succeeded", "retrying", "failed", "held"):
            self.webhook_deliveries.labels(outcome)

    # ------------------------------------------------------------------ recording

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"  # the method is the client's word: bound it
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    @contextmanager
    def signing(self, provider: str) -> Iterator[None]:
        """Around one ``SignatureProvider.sign`` call."""
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self.signatures.labels(provider, outcome_of(exc)).inc()
            raise
        finally:
            self.signature_duration.labels(provider).observe(time.perf_counter() - started)
        self.signatures.labels(provider, "ok").inc()

    @contextmanager
    def inspecting(self) -> Iterator[None]:
        """Around one ``PdfInspector.inspect`` call."""
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self.inspections.labels(outcome_of(exc)).inc()
            raise
        finally:
            self.inspection_duration.observe(time.perf_counter() - started)
        self.inspections.labels("ok").inc()

    @contextmanager
    def sending(self, channel: str) -> Iterator[None]:
        """Around one ``EmailSender.send`` (``email``) or ``SmsSender.send`` (``sms``) call."""
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self.messages.labels(channel, _message_outcome(exc)).inc()
            raise
        finally:
            self.message_duration.labels(channel).observe(time.perf_counter() - started)
        self.messages.labels(channel, "sent").inc()

    def timed_jobs(
        self, handlers: Mapping[str, Callable[[dict[str, Any]], Awaitable[None]]]
    ) -> dict[str, Callable[[dict[str, Any]], Awaitable[None]]]:
        """The worker's handler table, each handler counted and timed under its kind."""
        self.job_table.kinds = frozenset(handlers)
        return {kind: self._timed(kind, handler) for kind, handler in handlers.items()}

    def _timed(
        self, kind: str, handler: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def run(payload: dict[str, Any]) -> None:
            started = time.perf_counter()
            try:
                await handler(payload)
            except Exception as exc:
                self.jobs_run.labels(kind, _job_outcome(exc)).inc()
                raise
            finally:
                self.job_duration.labels(kind).observe(time.perf_counter() - started)
            self.jobs_run.labels(kind, "ok").inc()

        run.__name__ = getattr(handler, "__name__", kind)
        return run

    # ------------------------------------------------------------------ scrape time

    async def refresh_jobs(self, now: datetime) -> None:
        """Read the job table for this scrape; on failure (the database is away, slow) the job
        gauges are left out and ``esign_jobs_query_ok`` is 0."""
        try:
            self.job_table.snapshot = await asyncio.wait_for(read_job_table(now), JOB_QUERY_TIMEOUT_SECONDS)
        except Exception as exc:  # any driver's error: a scrape never fails for the job table
            self.job_table.snapshot = None
            log.warning("metrics_job_table_unreadable", error=type(exc).__name__)
