"""/v1/webhook and /v1/webhook/deliveries (mounted by bootstrap)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.events import WEBHOOK_TYPES
from esign_gateway.domain.ids import uuid7
from esign_gateway.errors import (
    MalformedRequestError,
    NotFoundError,
    ValidationFailedError,
)
from esign_gateway.http.auth import tenant_of
from esign_gateway.http.bodies import read_json
from esign_gateway.http.keys import CONTAINER
from esign_gateway.http.openapi import Param, doc
from esign_gateway.http.paths import ID_SCHEMA, path_id, query_cursor, query_id

from .delivery import HELD, RELEASE_JOB, retry_now
from .guard import Guard, UnsafeUrl, policy_for_env
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .signing import generate_secret

__all__ = ["GUARD", "routes"]

routes = web.RouteTableDef()
GUARD = web.AppKey("webhooks.guard", Guard)
"""The guard ``PUT /v1/webhook`` checks URLs with, when the app carries one (tests inject a resolver);
otherwise the policy of ``ESIGN_ENV`` with the system's resolver."""
STATUSES = ("pending", "held", "succeeded", "failed")
ROTATION_OVERLAP = timedelta(hours=24)


_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_URL_PATTERN = rf"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:{_PORT})?([/?#][^\s\x00-\x1f\x7f]*)?$"
"""The shape of a webhook URL, checked and documented alike: a scheme, a host name or IPv4
address (ASCII: punycode for an IDN), maybe a port, then no spaces or control characters.
``check_url`` then decides what may be called (https outside dev, a public address)."""
_URL = re.compile(_URL_PATTERN)


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    url: Annotated[str, Field(min_length=8, max_length=2000, json_schema_extra={"pattern": _URL_PATTERN})]
    """``https://`` (``http://`` in dev and test only), a public host, no credentials."""
    events: list[Annotated[str, Field(json_schema_extra={"enum": sorted(WEBHOOK_TYPES)})]] | None = None
    """The event types to deliver; all of them when absent or null."""

    @field_validator("url")
    @classmethod
    def _shape(cls, v: str) -> str:
        if not _URL.fullmatch(v):
            raise ValueError("the URL must be http(s)://host[:port]/…, without credentials or spaces")
        return v

    @field_validator("events")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            unknown = sorted(set(v) - WEBHOOK_TYPES)
            if unknown:
                raise ValueError(f"unknown event types: {', '.join(unknown)}")
            return sorted(set(v))
        return v


class EndpointOut(BaseModel):
    url: str
    events: list[str] | None
    enabled: bool
    disabled_reason: str | None
    secret: str | None = None
    """Shown when it is created or rotated, never again."""
    previous_secret_valid_until: datetime | None = None


class AttemptOut(BaseModel):
    at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int | None


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    type: str
    envelope_id: str | None
    status: str
    """``pending``, ``held`` (the endpoint is disabled; sent when it is enabled again), ``succeeded``
    or ``failed``."""
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut]


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


def _out(ep: WebhookEndpoint, secret: str | None = None) -> web.Response:
    until = ep.previous_valid_until
    body = EndpointOut(url=ep.url, events=ep.events, enabled=ep.enabled, disabled_reason=ep.disabled_reason,
                       secret=secret, previous_secret_valid_until=until)
    return web.Response(text=body.model_dump_json(), content_type="application/json")


@routes.get("/v1/webhook")
@doc("The webhook endpoint", "Webhooks", response=EndpointOut, errors=(NotFoundError,))
async def get_endpoint(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    ep = await WebhookEndpoint.get_or_none(tenant_id=tenant.id)
    if ep is None:
        raise NotFoundError("No webhook endpoint is configured; PUT /v1/webhook {url} sets one.")
    return _out(ep)


@routes.put("/v1/webhook")
@doc("Set the webhook endpoint", "Webhooks", body=EndpointIn, response=EndpointOut,
     description="The signing secret is in the answer when the endpoint is created, and never again. "
                 "Setting a disabled endpoint enables it and sends the events it held, in order.")
async def put_endpoint(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    body = EndpointIn.model_validate(await read_json(request))
    container = request.app[CONTAINER]
    guard = request.app.get(GUARD)
    if guard is None:
        guard = Guard(policy_for_env(container.settings.env))
    try:
        await guard.vet(body.url)
    except UnsafeUrl as exc:
        raise ValidationFailedError(errors=[{"field": "url", "message": str(exc)}]) from None
    finally:
        if GUARD not in request.app:
            await guard.close()
    now = container.clock.now()
    ep = await WebhookEndpoint.get_or_none(tenant_id=tenant.id)
    secret = None
    if ep is None:
        secret = generate_secret()
        ep = await WebhookEndpoint.create(
            id=str(uuid7()), tenant_id=tenant.id, url=body.url, events=body.events,
            secret_sealed=container.box.seal(secret), created_at=now, updated_at=now,
        )
    else:
        ep.url, ep.events, ep.enabled, ep.disabled_reason, ep.updated_at = body.url, body.events, True, None, now
        async with UnitOfWork() as uow:
            await ep.save(using_db=uow.conn)
            if await WebhookDelivery.filter(endpoint_id=ep.id, status=HELD).using_db(uow.conn).exists():
                # what it held while disabled goes out now, in order
                await uow.jobs.enqueue(RELEASE_JOB, {"endpoint_id": ep.id}, now,
                                       dedupe_key=f"release:{ep.id}:{now.isoformat()}")
    return _out(ep, secret)


@routes.post("/v1/webhook/rotate-secret")
@doc("Rotate the signing secret", "Webhooks", response=EndpointOut, errors=(NotFoundError,),
     description="The previous secret keeps signing (a second signature) for 24 hours.")
async def rotate(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    container = request.app[CONTAINER]
    ep = await WebhookEndpoint.get_or_none(tenant_id=tenant.id)
    if ep is None:
        raise NotFoundError("No webhook endpoint is configured.")
    now = container.clock.now()
    secret = generate_secret()
    ep.previous_secret_sealed, ep.previous_valid_until = ep.secret_sealed, now + ROTATION_OVERLAP
    ep.secret_sealed, ep.updated_at = container.box.seal(secret), now
    await ep.save()
    return _out(ep, secret)


def _delivery(d: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=d.id, event_id=d.event_id, type=d.event_type, envelope_id=d.envelope_id, status=d.status,
        attempts=d.attempts, last_status_code=d.last_status_code, last_error=d.last_error,
        next_attempt_at=d.next_attempt_at, created_at=d.created_at, delivered_at=d.delivered_at,
        attempt_log=[AttemptOut(at=a.at, status_code=a.status_code, error=a.error, latency_ms=a.latency_ms)
                     for a in attempts],
    )


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json", status=status)


@routes.get("/v1/webhook/deliveries")
@doc("The delivery log", "Webhooks", response=DeliveryPageOut, params=(
    Param("status", schema={"type": "string", "enum": list(STATUSES)}),
    Param("envelope_id", schema=ID_SCHEMA),
    Param("cursor", schema=ID_SCHEMA, description="`next_cursor` of the previous page.")),
    errors=(ValidationFailedError, MalformedRequestError))
async def list_deliveries(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    qs = WebhookDelivery.filter(tenant_id=tenant.id)
    status = request.query.get("status")
    if status is not None:
        if status not in STATUSES:
            raise ValidationFailedError(errors=[{"field": "status", "message": "|".join(STATUSES)}])
        qs = qs.filter(status=status)
    if (envelope_id := query_id(request, "envelope_id")) is not None:
        qs = qs.filter(envelope_id=envelope_id)
    if (cursor := query_cursor(request)) is not None:
        qs = qs.filter(id__lt=cursor)
    rows = await qs.order_by("-id").limit(51)
    more, rows = len(rows) > 50, rows[:50]
    attempts: dict[str, list[WebhookAttempt]] = {r.id: [] for r in rows}
    for a in await WebhookAttempt.filter(delivery_id__in=list(attempts)).order_by("id"):
        attempts[a.delivery_id].append(a)
    return _json(DeliveryPageOut(items=[_delivery(r, attempts[r.id]) for r in rows],
                                 next_cursor=rows[-1].id if more and rows else None))


@routes.post("/v1/webhook/deliveries/{id}/retry")
@doc("Deliver again now", "Webhooks", status=202, response=DeliveryOut, errors=(NotFoundError,))
async def retry(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    delivery = await retry_now(tenant.id, path_id(request), request.app[CONTAINER].clock.now())
    if delivery is None:
        raise NotFoundError("No such delivery.")
    return _json(_delivery(delivery, []), status=202)
