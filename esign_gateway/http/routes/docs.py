"""``/openapi.json``: the API's OpenAPI 3.1 document, built from the running app's own routes."""

from __future__ import annotations

import json

from aiohttp import web

from esign_gateway.domain.events import WEBHOOK_TYPES
from esign_gateway.webhook_payloads import WebhookEvent, WebhookUsageEvent

from .. import openapi
from ..keys import CONTAINER
from ..openapi import PUBLIC, Media, doc

__all__ = ["OPENAPI_CACHE", "document", "routes"]

routes = web.RouteTableDef()
OPENAPI_CACHE = web.AppKey("openapi_cache", dict)
"""Set to ``{}`` by the app factory; holds the document once built."""


def document(app: web.Application) -> str:
    """The document as JSON, built once per app (the route table does not change after start)."""
    cache = app[OPENAPI_CACHE]
    if "json" not in cache:
        hooks = {name: WebhookUsageEvent if name == "usage.threshold" else WebhookEvent
                 for name in sorted(WEBHOOK_TYPES)}
        cache["json"] = json.dumps(openapi.build(app, title="esign-gateway", version=_version(),
                                                 server_url=app[CONTAINER].settings.base_url, webhooks=hooks),
                                   ensure_ascii=False)
    return cache["json"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("esign-gateway")
    except PackageNotFoundError:
        return "0"


@routes.get("/openapi.json")
@doc("This API's OpenAPI 3.1 document", "Meta", auth=PUBLIC, response=Media("application/json", "OpenAPI 3.1."))
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(text=document(request.app), content_type="application/json",
                        headers={"Cache-Control": "no-cache"})
