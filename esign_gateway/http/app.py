"""App factory: ``create_app(container)`` wires routes, middlewares and resource contexts."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from esign_gateway.container import Container
from esign_gateway.ports import ComponentHealth, HealthCheck

from .keys import CONTAINER, LOOP_LAG, METRICS
from .loop_lag import LoopLag, LoopLagMonitor
from .metrics_middleware import metrics_middleware
from .middlewares import middlewares
from .openapi import PUBLIC, Media, doc
from .routes import archive, branding, docs, envelopes, metrics, page_images, plans, signing, signing_page

__all__ = ["create_app"]

_STATIC = {"sign.css": "text/css", "sign.js": "text/javascript", "favicon.svg": "image/svg+xml"}
_TEMPLATES = Path(__file__).parent / "templates"


@doc("The signer page's stylesheet and script", "Signer page", auth=PUBLIC,
     response=Media("text/css", "`sign.css` (`text/css`) or `sign.js` (`text/javascript`)."))
async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:  # a fixed list: no path is built from the request
        raise web.HTTPNotFound()
    return web.Response(body=(_TEMPLATES / name).read_bytes(), content_type=_STATIC[name],
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


@doc("The favicon (the same picture as /static/favicon.svg)", "Signer page", auth=PUBLIC,
     response=Media("image/svg+xml", "An SVG icon."))
async def _favicon(_: web.Request) -> web.Response:
    return web.Response(body=(_TEMPLATES / "favicon.svg").read_bytes(), content_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})


class Health(BaseModel):
    status: str


@doc("Liveness: the process answers", "Meta", auth=PUBLIC, response=Health)
async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


class Inspectors(BaseModel):
    workers: int
    alive: int
    replaced: int


class Component(BaseModel):
    name: str
    """``database``, ``pdf_inspector``, ``signing_pool``, ``report_pool``, …"""
    ready: bool
    detail: str
    """Plain words for an operator."""


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    """``not_ready`` (503) while any component is not ready."""
    components: list[Component]
    """Every part the gateway needs, each with its own verdict."""
    event_loop_lag: LoopLag | None
    """How late this process's event loop ran a 20 ms timer over the last 10 s (None just after start)."""
    inspectors: Inspectors
    """The upload inspector processes of this web process."""


_DATABASE_TIMEOUT_SECONDS = 2.0


async def _database() -> ComponentHealth:
    from tortoise import connections

    try:
        await asyncio.wait_for(connections.get("default").execute_query("SELECT 1"), _DATABASE_TIMEOUT_SECONDS)
    except TimeoutError:
        return ComponentHealth("database", False, f"no answer within {_DATABASE_TIMEOUT_SECONDS:g} s")
    except Exception as exc:  # any driver's "connection refused", "terminating connection", …
        return ComponentHealth("database", False, f"unreachable ({type(exc).__name__})")
    return ComponentHealth("database", True, "answers")


async def _ask(check: HealthCheck) -> ComponentHealth:
    """A check that fails (its database query during an outage) is a component not ready, not a 500."""
    try:
        return await check()
    except Exception as exc:
        name = getattr(check, "__name__", "check").removesuffix("_health").removesuffix("health").strip("_") or "check"
        return ComponentHealth(name, False, f"the check itself failed ({type(exc).__name__})")


@doc("Readiness: the database answers, an upload inspector runs, every pool and transport works", "Meta",
     auth=PUBLIC, response=Readiness, also={503: Readiness})
async def _readyz(request: web.Request) -> web.Response:
    container = request.app[CONTAINER]
    health = container.inspector.health()
    parts = [
        await _database(),
        ComponentHealth("pdf_inspector", health.alive > 0,
                        f"{health.alive} of {health.workers} running, {health.replaced} replaced since start"),
    ]
    parts.extend([await _ask(check) for check in container.health_checks])
    ready = all(p.ready for p in parts)
    body = Readiness(
        status="ready" if ready else "not_ready",
        components=[Component(name=p.name, ready=p.ready, detail=p.detail) for p in parts],
        event_loop_lag=request.app[LOOP_LAG].summary(),
        inspectors=Inspectors(workers=health.workers, alive=health.alive, replaced=health.replaced),
    )
    return web.json_response(text=body.model_dump_json(), status=200 if ready else 503)


def create_app(container: Container, *, run_worker: bool | None = None) -> web.Application:
    settings = container.settings
    # base64 inflates JSON uploads by 4/3; the per-document limits are enforced on decoded bytes.
    app = web.Application(
        middlewares=[metrics_middleware, *middlewares],  # outermost: it counts the status the client gets
        client_max_size=math.ceil(settings.max_request_bytes * 4 / 3) + 1024 * 1024,
    )
    app[CONTAINER] = container
    app[METRICS] = container.metrics
    app[LOOP_LAG] = LoopLagMonitor(observe=container.metrics.loop_lag.observe)
    app.router.add_routes(envelopes.routes)
    app.router.add_routes(plans.routes)
    app.router.add_routes(archive.routes)
    app.router.add_routes(signing.routes)
    app.router.add_routes(signing_page.routes)
    app.router.add_routes(branding.routes)
    app.router.add_routes(page_images.routes)
    app.router.add_routes(docs.routes)
    app.router.add_routes(metrics.routes)
    app[docs.OPENAPI_CACHE] = {}
    for table in container.extra_routes:
        app.router.add_routes(table)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/favicon.ico", _favicon)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)

    async def resources_ctx(_: web.Application) -> AsyncIterator[None]:
        for start in container.startup:
            await start()
        app[LOOP_LAG].start()
        yield
        await app[LOOP_LAG].close()
        for stop in reversed(container.shutdown):
            await stop()

    async def worker_ctx(_: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(container.worker.run(stop))
        yield
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)

    app.cleanup_ctx.append(resources_ctx)
    if settings.embedded_worker if run_worker is None else run_worker:
        app.cleanup_ctx.append(worker_ctx)
    return app
