"""Delivering CRM webhooks from the outbox, by the job workers.

    outbox_event (same transaction as the state change)
      └─ job "dispatch_event" (one per transaction) ─► WebhookDelivery row (one per endpoint and event)
                                                       ─► job "deliver_webhook"
                                                       └─ POST; 2xx done · 410 disables the endpoint ·
                                                          else retry after 5 s, 5 min, 30 min, 2 h … 24 h, then failed

At-least-once: a crash anywhere re-runs a job, and the delivery row (unique per endpoint+event)
keeps the same ``webhook-id`` on every try, so a CRM can deduplicate. Nothing here runs in an
API request: a slow or dead endpoint only occupies a worker slot, bounded per endpoint.
"""

from __future__ import annotations

import asyncio
import json
import time
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
from esign_gateway.secretbox import SecretBox

from .guard import UnsafeUrl, check_url
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .schedule import next_delay
from .signing import signature_header

__all__ = ["WebhookDispatcher", "active_secrets", "retry_now"]

log = structlog.get_logger(__name__)
TIMEOUT_SECONDS = 15
PER_ENDPOINT = 4


def active_secrets(endpoint: WebhookEndpoint, box: SecretBox, now: datetime) -> list[str]:
    """The current secret, plus the previous one for 24 h after a rotation."""
    out = [box.open(endpoint.secret_sealed)]
    if endpoint.previous_secret_sealed and endpoint.previous_valid_until and endpoint.previous_valid_until > now:
        out.append(box.open(endpoint.previous_secret_sealed))
    return out


class WebhookDispatcher:
    def __init__(
        self, *, clock: Clock, box: SecretBox, allow_internal: bool, user_agent: str = "esign-gateway"
    ) -> None:
        self.clock = clock
        self.box = box
        self.allow_internal = allow_internal
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._limits: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(PER_ENDPOINT))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))
        return self._session

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
        endpoints = {ep.tenant_id: ep for ep in await WebhookEndpoint.filter(tenant_id__in=tenants, enabled=True)}
        async with UnitOfWork() as uow:
            conn, jobs = uow.conn, uow.jobs
            for event in events:
                endpoint = endpoints.get(event.tenant_id)
                if endpoint is None or (endpoint.events is not None and event.type not in endpoint.events):
                    continue
                delivery_id = str(uuid7())
                try:
                    await WebhookDelivery.create(
                        using_db=conn, id=delivery_id, tenant_id=event.tenant_id, endpoint_id=endpoint.id,
                        event_id=event.id, event_type=event.type, envelope_id=event.envelope_id,
                        body=json.dumps(event.payload, ensure_ascii=False, separators=(",", ":")),
                        status="pending", next_attempt_at=now, created_at=now,
                    )
                except IntegrityError:  # dispatched before a crash: keep the first delivery
                    existing = await WebhookDelivery.get(endpoint_id=endpoint.id, event_id=event.id)
                    delivery_id = existing.id
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
        if endpoint is None or not endpoint.enabled:
            await WebhookDelivery.filter(id=delivery.id).update(status="failed", last_error="endpoint disabled")
            return
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
            await check_url(endpoint.url, allow_internal=self.allow_internal)
            async with self._http().post(endpoint.url, data=body, headers=headers, allow_redirects=False) as resp:
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
                changes.update(status="failed", next_attempt_at=None)
                await WebhookEndpoint.filter(id=endpoint.id).using_db(conn).update(
                    enabled=False, disabled_reason="the endpoint answered 410 Gone", updated_at=now)
            else:
                delay = next_delay(attempts, retry_after)
                if delay is None:
                    changes.update(status="failed", next_attempt_at=None)
                else:
                    due = now + delay
                    changes.update(next_attempt_at=due)
                    await uow.jobs.enqueue(
                        "deliver_webhook", {"delivery_id": delivery.id}, due,
                        dedupe_key=f"deliver:{delivery.id}:{attempts}",
                    )
            await WebhookDelivery.filter(id=delivery.id, attempts=delivery.attempts).using_db(conn).update(**changes)
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

