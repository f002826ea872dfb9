"""/v1/plans, /v1/plan, /v1/usage: the tenant's plan and its month (SPEC §8)."""

from __future__ import annotations

from aiohttp import web

from ..auth import tenant_of
from ..bodies import read_json, render
from ..keys import CONTAINER
from ..schemas import PlanCatalogueOut, PlanIn, PlanOut, PlanStateOut, UsageOut

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/v1/plans")
async def plans(request: web.Request) -> web.Response:
    await tenant_of(request)
    catalogue = request.app[CONTAINER].plans.catalogue
    return render(PlanCatalogueOut(items=[PlanOut.from_domain(p, catalogue.currency) for p in catalogue.plans]))


@routes.get("/v1/plan")
async def current_plan(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    return render(PlanStateOut.from_domain(await request.app[CONTAINER].plans.state(tenant.id)))


@routes.put("/v1/plan")
async def change_plan(request: web.Request) -> web.Response:
    """Raise at once, lower from the 1st of next month; also re-enables a terminated module."""
    tenant = await tenant_of(request)
    body = PlanIn.model_validate(await read_json(request))
    state = await request.app[CONTAINER].plans.change(tenant.id, body.code)
    return render(PlanStateOut.from_domain(state))


@routes.delete("/v1/plan")
async def terminate_plan(request: web.Request) -> web.Response:
    """Terminate the signing module: new sends are refused; in-flight envelopes finish."""
    tenant = await tenant_of(request)
    return render(PlanStateOut.from_domain(await request.app[CONTAINER].plans.terminate(tenant.id)))


@routes.get("/v1/usage")
async def usage(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    service = request.app[CONTAINER].plans
    month = await service.usage(tenant.id, request.query.get("month") or None)
    return render(UsageOut.from_domain(month, service.catalogue.currency))
