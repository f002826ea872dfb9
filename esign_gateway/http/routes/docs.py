"""``/openapi.json``: the API's OpenAPI 3.1 document, built from the running app's own routes;
``/docs``: that document as a readable reference, rendered in the browser by Redoc (vendored in
``esign_gateway/http/static/``, see its ``README.txt``; nothing is loaded from a CDN).
"""

from __future__ import annotations

import json
import secrets
from functools import cache
from pathlib import Path

from aiohttp import web

from esign_gateway.domain.events import WEBHOOK_TYPES
from esign_gateway.webhook_payloads import WebhookEvent, WebhookUsageEvent

from .. import openapi
from ..keys import CONTAINER
from ..openapi import PUBLIC, Media, doc

__all__ = ["OPENAPI_CACHE", "docs_csp", "document", "routes"]

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


_STATIC = Path(__file__).parent.parent / "static"
_ASSETS = {"redoc.standalone.js": "text/javascript", "redocly-wordmark.svg": "image/svg+xml",
           "docs-icon.svg": "image/svg+xml"}
"""What ``/docs/assets/{name}`` serves: a fixed list, no path is built from the request."""
_WORDMARK = b"/docs/assets/redocly-wordmark.svg"
_REWRITES = {"redoc.standalone.js": (
    # Redoc's sidebar credits Redocly with a logo from its CDN (hard-coded, no option turns it off):
    # the credit stays, with a wordmark of ours from this origin, so no visitor's browser calls out.
    (b"https://cdn.redoc.ly/redoc/logo-mini-full.svg", _WORDMARK),
    (b"https://cdn.redoc.ly/redoc/logo-mini.svg", _WORDMARK),
)}
"""Served in place of the vendored bytes (the file itself stays as npm ships it)."""


def docs_csp(nonce: str) -> str:
    """The reference page's own policy: only what Redoc needs. ``tests/browser/test_api_docs.py``
    fails on any violation, so a source the renderer needs shows up there, and none is added untested."""
    return "; ".join((
        "default-src 'none'",  # anything not listed below is refused
        # The vendored Redoc bundle only: no inline script, no eval. (Redoc's search tries
        # ``Function()`` to see whether it may use a worker; refused, it searches on the page.)
        "script-src 'self'",
        # Redoc's styled-components insert <style> elements; they carry this response's nonce
        # (read from <meta property="csp-nonce">), so no 'unsafe-inline'.
        f"style-src 'self' 'nonce-{nonce}'",
        "connect-src 'self'",  # Redoc fetches /openapi.json
        "font-src data:",  # Redoc's icon font is inlined in its CSS as a data: URL
        "img-src 'self'",  # the page's icon and the Redocly wordmark (see _REWRITES)
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ))


# disable-telemetry: Redoc 3 would otherwise report usage to otel.cloud.redocly.com (refused by
# connect-src anyway). The script is a module (the bundle ends with ``export``).
_DOCS_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta property="csp-nonce" nonce="{nonce}">
<link rel="icon" href="/docs/assets/docs-icon.svg" type="image/svg+xml">
<title>esign-gateway API reference</title>
</head>
<body>
<redoc spec-url="/openapi.json" disable-telemetry="true"></redoc>
<script type="module" src="/docs/assets/redoc.standalone.js"></script>
</body>
</html>
"""


@cache
def _asset(name: str) -> bytes:
    body = (_STATIC / name).read_bytes()
    for old, new in _REWRITES.get(name, ()):
        body = body.replace(old, new)
    return body


@routes.get("/docs")
@doc("This API's reference, readable in a browser", "Meta", auth=PUBLIC,
     response=Media("text/html", "An HTML page that renders `/openapi.json` with Redoc (JavaScript needed)."))
async def api_docs(_: web.Request) -> web.Response:
    nonce = secrets.token_urlsafe(18)
    return web.Response(text=_DOCS_HTML.replace("{nonce}", nonce), content_type="text/html", headers={
        "Content-Security-Policy": docs_csp(nonce), "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
    })


@routes.get("/docs/assets/{name}")
@doc("The reference page's renderer (Redoc)", "Meta", auth=PUBLIC,
     response=Media("text/javascript", "`redoc.standalone.js` (the vendored Redoc bundle) or "
                    "`redocly-wordmark.svg`, `docs-icon.svg` (`image/svg+xml`)."))
async def api_docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _ASSETS:
        raise web.HTTPNotFound()
    return web.Response(body=_asset(name), content_type=_ASSETS[name],
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
