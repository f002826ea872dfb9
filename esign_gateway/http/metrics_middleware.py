"""Counts and times every HTTP answer under its route template (``esign_http_requests_total``).

The outermost middleware, so it sees the status the client gets: problem responses, raised
redirects (the signer page's forms), 404s of paths no route matches (``route="unmatched"``: the
raw path is never a label, it may hold a signer token or an envelope id).
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler

from .keys import METRICS

__all__ = ["UNMATCHED", "metrics_middleware", "route_template"]

UNMATCHED = "unmatched"


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app.get(METRICS)
    if metrics is None:
        return await handler(request)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as raised:  # a redirect raised by a handler, answered by aiohttp
        metrics.observe_request(request.method, route_template(request), raised.status, time.perf_counter() - started)
        raise
    metrics.observe_request(request.method, route_template(request), response.status, time.perf_counter() - started)
    return response
