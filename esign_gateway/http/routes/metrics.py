"""``GET /metrics``: this process's metrics in the Prometheus text format, on the web process and
(``metrics_app``) on a ``worker`` process's own port.

Open on the listening address by default (no tenant data is in it: see ``esign_gateway.metrics``);
with ``ESIGN_METRICS_TOKEN`` set it needs ``Authorization: Bearer <token>`` (``401`` otherwise).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from esign_gateway import errors as err
from esign_gateway.container import Container

from ..keys import CONTAINER, LOOP_LAG, METRICS
from ..loop_lag import LoopLagMonitor
from ..metrics_middleware import metrics_middleware
from ..middlewares import problem_middleware
from ..openapi import PUBLIC, Media, doc

__all__ = ["metrics_app", "routes", "serve_metrics"]

routes = web.RouteTableDef()


def _check_token(request: web.Request, container: Container) -> None:
    token = container.settings.metrics_token
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.get_secret_value().encode()):
        raise err.UnauthorizedError("Send 'Authorization: Bearer <ESIGN_METRICS_TOKEN>'.")


@routes.get("/metrics")
@doc("This process's metrics (Prometheus text format)", "Meta", auth=PUBLIC,
     response=Media("text/plain", "Prometheus text exposition format 0.0.4: HTTP requests by route "
                    "template, jobs, signatures, inspections, webhooks, e-mail and SMS, quota refusals, "
                    "event-loop lag (docs/operations.md, *Metrics*)."),
     errors=(err.UnauthorizedError,),
     description="Open by default; with `ESIGN_METRICS_TOKEN` set it needs `Authorization: Bearer <token>`. "
                 "Label values are route templates, methods, status codes, job kinds, providers and "
                 "outcomes: never a tenant, an envelope or a person.")
async def metrics(request: web.Request) -> web.Response:
    container = request.app[CONTAINER]
    _check_token(request, container)
    found = request.app[METRICS]
    await found.refresh_jobs(container.clock.now())
    return web.Response(body=generate_latest(found.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_app(container: Container) -> web.Application:
    """The app a ``worker`` process serves on ``ESIGN_WORKER_METRICS_PORT``: ``/metrics`` alone,
    with this process's event-loop lag."""
    app = web.Application(middlewares=[metrics_middleware, problem_middleware])
    app[CONTAINER] = container
    app[METRICS] = container.metrics
    app[LOOP_LAG] = LoopLagMonitor(observe=container.metrics.loop_lag.observe)
    app.router.add_routes(routes)

    async def loop_lag_ctx(_: web.Application) -> AsyncIterator[None]:
        app[LOOP_LAG].start()
        yield
        await app[LOOP_LAG].close()

    app.cleanup_ctx.append(loop_lag_ctx)
    return app


async def serve_metrics(container: Container) -> web.AppRunner | None:
    """Serve :func:`metrics_app` on ``ESIGN_WORKER_METRICS_HOST:ESIGN_WORKER_METRICS_PORT`` (a
    ``worker`` process); ``None`` when no port is set. The caller cleans the runner up."""
    settings = container.settings
    if settings.worker_metrics_port is None:
        return None
    runner = web.AppRunner(metrics_app(container), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.worker_metrics_host, settings.worker_metrics_port).start()
    return runner
