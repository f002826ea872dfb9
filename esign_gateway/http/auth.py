"""API-key authentication and the daily request limit (SPEC §2 rule 7), for every /v1 handler.

``tenant_of(request)`` authenticates an integration key and counts the request against the
tenant's day (midnight to midnight in Prague, counted in the database so every web process
shares it). Over the plan's limit it answers ``429 rate_limited`` with ``Retry-After`` = seconds
to the next Prague midnight. The middleware puts ``RateLimit-Limit``/``-Remaining``/``-Reset``
on every response of a counted request, errors included. Once a key is resolved its tenant is
bound to the request's log context (``tenant_id`` on the request line and every line it leaves).
"""

from __future__ import annotations

import math
from datetime import datetime

import structlog
from aiohttp import web

from esign_gateway.errors import ForbiddenError, TooManyRequestsError, UnauthorizedError
from esign_gateway.services.plans import RateState
from esign_gateway.services.tenants import Principal, TenantInfo

from .keys import CONTAINER

__all__ = ["RATE", "authenticate", "rate_headers", "tenant_of"]

RATE = web.RequestKey("esign.rate", RateState)


async def authenticate(request: web.Request, *roles: str) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise UnauthorizedError("Send 'Authorization: Bearer <api key>'.")
    principal = await request.app[CONTAINER].tenants.authenticate(secret.strip())
    if principal.tenant is not None:
        structlog.contextvars.bind_contextvars(tenant_id=principal.tenant.id)
    if principal.role not in roles:
        raise ForbiddenError(f"This needs a key with role {' or '.join(roles)}.")
    return principal


async def tenant_of(request: web.Request) -> TenantInfo:
    """The calling tenant (integration key), after counting this request against its day."""
    principal = await authenticate(request, "integration")
    assert principal.tenant is not None
    container = request.app[CONTAINER]
    rate = await container.plans.count_request(principal.tenant.id)
    request[RATE] = rate
    if rate.exceeded:
        wait = _seconds_until(rate, container.clock.now())
        raise TooManyRequestsError(
            f"The daily limit of {rate.limit} API requests is used up; it starts again at midnight "
            f"(Europe/Prague), in {wait} s.",
            headers={"Retry-After": str(wait)}, extra={"retry_after": wait, "limit": rate.limit},
        )
    return principal.tenant


def _seconds_until(rate: RateState, now: datetime) -> int:
    return max(1, math.ceil((rate.reset_at - now).total_seconds()))


def rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    rate = request.get(RATE)
    if rate is None:
        return
    response.headers["RateLimit-Limit"] = str(rate.limit)
    response.headers["RateLimit-Remaining"] = str(rate.remaining)
    response.headers["RateLimit-Reset"] = str(_seconds_until(rate, request.app[CONTAINER].clock.now()))
