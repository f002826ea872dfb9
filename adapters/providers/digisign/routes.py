"""``POST /webhooks/digisign``: DigiSign's webhooks into the gateway (mounted by bootstrap through
``Container.extra_routes``).

The route only reads the body (bounded) and hands it on: ``accept`` (the core's
``RemoteCeremonyService.accept_webhook`` for ``digisign``, bound by bootstrap) authenticates it with
the webhook secrets it reads from the database, remembers the event id and queues a sync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel

from esign_gateway.errors import DocumentTooLargeError, NotFoundError, UnauthorizedError
from esign_gateway.http.openapi import PUBLIC, Problem, doc
from esign_gateway.ports import InvalidWebhook

__all__ = ["INBOUND_MAX_BYTES", "InboundOut", "inbound_routes"]

INBOUND_MAX_BYTES = 1024 * 1024
"""A provider's event is a few kB; more is refused before its signature is even checked."""

Accept = Callable[[dict[str, str], bytes], Awaitable[str]]


class InboundOut(BaseModel):
    status: str
    """What became of the event: e.g. ``accepted`` or ``duplicate``."""


def inbound_routes(accept: Accept) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/webhooks/digisign")
    @doc("DigiSign's webhooks (inbound)", "Providers", auth=PUBLIC, response=InboundOut,
         also={401: Problem, 404: Problem, 413: Problem}, body=None)
    async def digisign_webhook(request: web.Request) -> web.Response:
        """DigiSign's webhooks (``Signature: t=…,s=…``): authenticated, deduplicated, then a sync job
        reads the envelope's real state from DigiSign. 401 for a bad signature (nothing changes); a body
        over ``INBOUND_MAX_BYTES`` is refused before it is read whole or verified."""
        if (request.content_length or 0) > INBOUND_MAX_BYTES:
            raise DocumentTooLargeError(f"A webhook body is at most {INBOUND_MAX_BYTES} bytes.")
        body = await request.content.read(INBOUND_MAX_BYTES + 1)
        if len(body) > INBOUND_MAX_BYTES:
            raise DocumentTooLargeError(f"A webhook body is at most {INBOUND_MAX_BYTES} bytes.")
        try:
            outcome = await accept(dict(request.headers), body)
        except InvalidWebhook:
            raise UnauthorizedError("The webhook signature does not verify.") from None
        except LookupError:
            raise NotFoundError("DigiSign is not configured here.") from None
        return web.Response(text=InboundOut(status=outcome).model_dump_json(), content_type="application/json")

    return routes
