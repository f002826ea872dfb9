"""Delivering CRM webhooks from the outbox, by the job workers.

    outbox_event (same transaction as the state change)
      └─ job "dispatch_event" (one per transaction) ─► WebhookDelivery row (one per endpoint and event)
                                                       ─► job "deliver_webhook"
                                                       └─ POST; 2xx done · 410 disables the endpoint ·
                                                          else retry after 5 s, 5 min, 30 min, 2 h … 24 h, then failed

An endpoint disabled by a 410 keeps its events: the delivery that got the 410 and every one made
while it is disabled are ``held``; enabling it again (``PUT /v1/webhook``) queues the job
``release_webhooks``, which sends them in the order of their events, then the usual schedule applies.

Each attempt resolves the endpoint's host once, checks every address (``guard.Guard``) and connects
only to those (a resolver pinned to them, one connection per attempt): a DNS answer that changes
between the check and the connection is never followed, and redirects are not followed either.

At-least-once: a crash anywhere re-runs a job, and the delivery row (unique per endpoint+event)
keeps the same ``webhook-id`` on every try, so a CRM can deduplicate. Nothing here runs in an
API request: a slow or dead endpoint only occupies a worker slot, bounded per endpoint.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections import defaultdict
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import structlog
from tortoise.exceptions import IntegrityError

from esign_gateway.clock import Clock
from esign_gateway.db.models import OutboxEvent
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.ids import uuid7
from esign_gateway.metrics import Metrics
from esign_gateway.secretbox import SecretBox

from .guard import Guard, UnsafeUrl, policy_for_env
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .schedule import next_delay
from .signing import signature_header

__all__ = ["HELD", "RELEASE_JOB", "WebhookDispatcher", "active_secrets", "hold_reason", "retry_now"]

log = structlog.get_logger(__name__)
TIMEOUT_SECONDS = 15
PER_ENDPOINT = 4
HELD = "held"
GONE = "the endpoint answered 410 Gone"
RELEASE_JOB = "release_webhooks"
RELEASE_BATCH = 10


def hold_reason(endpoint: WebhookEndpoint) -> str:
    return f"held: the endpoint is disabled ({endpoint.disabled_reason or 'disabled'}); sent when it is enabled again"


def active_secrets(endpoint: WebhookEndpoint, box: SecretBox, now: datetime) -> list[str]:
    """The current secret, plus the previous one for 24 h after a rotation."""
    out = [box.open(endpoint.secret_sealed)]
    if endpoint.previous_secret_sealed and endpoint.previous_valid_until and endpoint.previous_valid_until > now:
        out.append(box.open(endpoint.previous_secret_sealed))
    return out


class WebhookDispatcher:
    """Turns outbox events into deliveries and makes the attempts.

    ``guard`` decides which URLs and addresses may be called (by default the policy of the
    environment: ``allow_internal`` for dev and test); ``ssl_context`` is the TLS trust used for
    https endpoints (the system's by default)."""

    def __init__(
        self, *, clock: Clock, box: SecretBox, allow_internal: bool, user_agent: str = "esign-gateway",
        guard: Guard | None = None, ssl_context: ssl.SSLContext | None = None, metrics: Metrics | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.box = box
        self.guard = guard or Guard(policy_for_env("dev" if allow_internal else "prod"))
        self.ssl_context = ssl_context
        self.user_agent = user_agent
        self._limits: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(PER_ENDPOINT))
        self._last_id: uuid.UUID | None = None

    async def close(self) -> None:
        await self.guard.close()

    def _ordered_id(self) -> str:
        """A UUIDv7 greater than the last one this process made: deliveries sort in the order they
        were made, also within one millisecond (held ones are released in that order)."""
        value = uuid7()
        if self._last_id is not None and value.int <= self._last_id.int:
            value = uuid.UUID(int=self._last_id.int + 1)
        self._last_id = value
        return str(value)

    # ------------------------------------------------------------------ dispatch
    async def dispatch(self, payload: dict[str, Any]) -> None:
        """Job ``dispatch_event``: turn the outbox events of one transaction (``event_ids``; older
        jobs carry one ``event_id``) into deliveries for their tenants' endpoints, in order."""
        now = self.clock.now()
        ids = payload.get("event_ids") or [payload["event_id"]]
        events = sorted(await OutboxEvent.filter(id__in=ids, dispatched_at=None), key=lambda e: ids.index(e.id))
        if not events:
            return
        tenants = {e.tenant_id for e in events}
        endpoints = {ep.tenant_id: ep for ep in await WebhookEndpoint.filter(tenant_id__in=tenants)}
        async with UnitOfWork() as uow:
            conn, jobs = uow.conn, uow.jobs
            for event in events:
                endpoint = endpoints.get(event.tenant_id)
                if endpoint is None or (endpoint.events is not None and event.type not in endpoint.events):
                    continue
                delivery_id = self._ordered_id()
                held = not endpoint.enabled  # kept until the endpoint is enabled again
                try:
                    await WebhookDelivery.create(
                        using_db=conn, id=delivery_id, tenant_id=event.tenant_id, endpoint_id=endpoint.id,
                        event_id=event.id, event_type=event.type, envelope_id=event.envelope_id,
                        body=json.dumps(event.payload, ensure_ascii=False, separators=(",", ":")),
                        status=HELD if held else "pending", next_attempt_at=None if held else now,
                        last_error=hold_reason(endpoint) if held else None, created_at=now,
                    )
                except IntegrityError:  # dispatched before a crash: keep the first delivery
                    existing = await WebhookDelivery.get(endpoint_id=endpoint.id, event_id=event.id)
                    delivery_id = existing.id
                if held:
                    continue
                await jobs.enqueue(
                    "deliver_webhook", {"delivery_id": delivery_id}, now, dedupe_key=f"deliver:{delivery_id}:0"
                )
            await OutboxEvent.filter(id__in=[e.id for e in events]).using_db(conn).update(dispatched_at=now)

    # ------------------------------------------------------------------ deliver
    async def deliver(self, payload: dict[str, Any]) -> None:
        """Job ``deliver_webhook``: one POST attempt; schedules the next one itself."""
        delivery = await WebhookDelivery.get_or_none(id=payload["delivery_id"])
        if delivery is None or delivery.status != "pending":
            return
        endpoint = await WebhookEndpoint.get_or_none(id=delivery.endpoint_id)
        if endpoint is None:
            await WebhookDelivery.filter(id=delivery.id).update(status="failed", last_error="endpoint removed")
            return
        if not endpoint.enabled:  # queued before a 410 disabled it: kept for later
            await WebhookDelivery.filter(id=delivery.id, status="pending").update(
                status=HELD, next_attempt_at=None, last_error=hold_reason(endpoint))
            log.info("webhook_held", delivery_id=delivery.id, event_type=delivery.event_type)
            return
        await self._attempt(delivery, endpoint)

    async def release(self, payload: dict[str, Any]) -> None:
        """Job ``release_webhooks``: the endpoint was enabled again; send what it held, one after
        another in the order of the events. A failed attempt goes on by the usual schedule; a new
        410 holds the rest again. A re-run after a crash continues with what is still held.

        One run sends at most ``RELEASE_BATCH`` (well inside a job's lease at 15 s each), then
        queues the next run for the rest."""
        endpoint_id = payload["endpoint_id"]
        held = await WebhookDelivery.filter(endpoint_id=endpoint_id, status=HELD).order_by("id").limit(RELEASE_BATCH)
        log.info("webhook_release", endpoint_id=endpoint_id, held=len(held))
        for delivery in held:
            endpoint = await WebhookEndpoint.get_or_none(id=endpoint_id)
            if endpoint is None or not endpoint.enabled:
                return
            if endpoint.events is not None and delivery.event_type not in endpoint.events:
                await WebhookDelivery.filter(id=delivery.id, status=HELD).update(
                    status="failed", last_error=f"dropped: the endpoint no longer subscribes to {delivery.event_type}")
                continue
            await self._attempt(delivery, endpoint)
        if len(held) == RELEASE_BATCH:
            async with UnitOfWork() as uow:
                await uow.jobs.enqueue(RELEASE_JOB, {"endpoint_id": endpoint_id}, self.clock.now(),
                                       dedupe_key=f"release:{endpoint_id}:after:{held[-1].id}")

    async def _attempt(self, delivery: WebhookDelivery, endpoint: WebhookEndpoint) -> None:
        async with self._limits[endpoint.id]:
            status, error, retry_after, latency = await self._post(endpoint, delivery)
        await self._record(delivery, endpoint, status, error, retry_after, latency)

    async def _post(
        self, endpoint: WebhookEndpoint, delivery: WebhookDelivery
    ) -> tuple[int | None, str | None, float | None, int]:
        now = self.clock.now()
        body = delivery.body.encode()
        timestamp = int(now.timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(active_secrets(endpoint, self.box, now), delivery.event_id,
                                                  timestamp, body),
        }
        started = time.perf_counter()
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                target = await self.guard.target(endpoint.url)  # checked now, before every attempt
                connector = aiohttp.TCPConnector(
                    resolver=target.resolver(), use_dns_cache=False, force_close=True,
                    ssl=self.ssl_context if self.ssl_context is not None else True,
                )
                async with aiohttp.ClientSession(connector=connector) as session, session.post(
                    target.url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    await resp.read()
                    retry_after = _retry_after(resp.headers.get("Retry-After")) if resp.status in (429, 503) else None
                    return resp.status, None, retry_after, _ms(started)
        except UnsafeUrl as exc:
            return None, f"refused: {exc}", None, _ms(started)
        except TimeoutError:
            return None, f"timeout after {TIMEOUT_SECONDS} s", None, _ms(started)
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}", None, _ms(started)

    async def _record(
        self, delivery: WebhookDelivery, endpoint: WebhookEndpoint, status: int | None, error: str | None,
        retry_after: float | None, latency: int,
    ) -> None:
        now = self.clock.now()
        attempts = delivery.attempts + 1
        ok = status is not None and 200 <= status < 300
        async with UnitOfWork() as uow:
            conn = uow.conn
            await WebhookAttempt.create(using_db=conn, delivery_id=delivery.id, at=now, status_code=status,
                                        error=error, latency_ms=latency)
            changes: dict[str, Any] = {"attempts": attempts, "last_status_code": status,
                                       "last_error": error or (None if ok else f"HTTP {status}")}
            if ok:
                changes.update(status="succeeded", delivered_at=now, next_attempt_at=None)
            elif status == 410:
                endpoint.disabled_reason = GONE
                changes.update(status=HELD, next_attempt_at=None, last_error=hold_reason(endpoint))
                await WebhookEndpoint.filter(id=endpoint.id).using_db(conn).update(
                    enabled=False, disabled_reason=GONE, updated_at=now)
            else:
                delay = next_delay(attempts, retry_after)
                if delay is None:
                    changes.update(status="failed", next_attempt_at=None)
                else:
                    due = now + delay
                    changes.update(status="pending", next_attempt_at=due)
                    await uow.jobs.enqueue(
                        "deliver_webhook", {"delivery_id": delivery.id}, due,
                        dedupe_key=f"deliver:{delivery.id}:{attempts}",
                    )
            await WebhookDelivery.filter(id=delivery.id, attempts=delivery.attempts).using_db(conn).update(**changes)
        outcome = {"succeeded": "succeeded", HELD: "held", "failed": "failed"}.get(changes.get("status"), "retrying")
        self.metrics.webhook_deliveries.labels(outcome).inc()
        self.metrics.webhook_duration.observe(latency / 1000)
        log.info("webhook_attempt", delivery_id=delivery.id, event_type=delivery.event_type, status_code=status,
                 ok=ok, attempt=attempts, latency_ms=latency)


async def retry_now(tenant_id: str, delivery_id: str, now: datetime) -> WebhookDelivery | None:
    """Manual retry (also of a failed delivery): one more attempt, due now."""
    async with UnitOfWork() as uow:
        delivery = await WebhookDelivery.filter(id=delivery_id, tenant_id=tenant_id).using_db(uow.conn).first()
        if delivery is None:
            return None
        await WebhookDelivery.filter(id=delivery.id).using_db(uow.conn).update(status="pending", next_attempt_at=now)
        await uow.jobs.enqueue(
            "deliver_webhook", {"delivery_id": delivery.id}, now,
            dedupe_key=f"deliver:{delivery.id}:manual:{now.isoformat()}",
        )
    return await WebhookDelivery.get(id=delivery_id)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())

