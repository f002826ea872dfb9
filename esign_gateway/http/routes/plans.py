"""/v1/plans, /v1/plan, /v1/usage: the tenant's plan and its month (SPEC §8)."""

from __future__ import annotations

from aiohttp import web

from esign_gateway import errors as err
from esign_gateway.errors import ValidationFailedError

from ..auth import tenant_of
from ..bodies import read_json, render
from ..keys import CONTAINER
from ..openapi import Param, doc
from ..schemas import PlanCatalogueOut, PlanIn, PlanOut, PlanStateOut, UsageOut

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/v1/plans")
@doc("The plan catalogue", "Plans and usage", response=PlanCatalogueOut)
async def plans(request: web.Request) -> web.Response:
    await tenant_of(request)
    catalogue = request.app[CONTAINER].plans.catalogue
    return render(PlanCatalogueOut(items=[PlanOut.from_domain(p, catalogue.currency) for p in catalogue.plans]))


@routes.get("/v1/plan")
@doc("The tenant's plan", "Plans and usage", response=PlanStateOut)
async def current_plan(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    return render(PlanStateOut.from_domain(await request.app[CONTAINER].plans.state(tenant.id)))


@routes.put("/v1/plan")
@doc("Change the plan", "Plans and usage", body=PlanIn, response=PlanStateOut,
     errors=(err.NotFoundError, err.InvalidStateError),
     choices={"code": lambda app: [p.code for p in app[CONTAINER].plans.catalogue.plans if not p.is_custom]})
async def change_plan(request: web.Request) -> web.Response:
    """Raise at once, lower from the 1st of next month; also re-enables a terminated module."""
    tenant = await tenant_of(request)
    body = PlanIn.model_validate(await read_json(request))
    state = await request.app[CONTAINER].plans.change(tenant.id, body.code)
    return render(PlanStateOut.from_domain(state))


@routes.delete("/v1/plan")
@doc("Terminate the signing module", "Plans and usage", response=PlanStateOut, errors=(err.InvalidStateError,))
async def terminate_plan(request: web.Request) -> web.Response:
    """Terminate the signing module: new sends are refused; in-flight envelopes finish."""
    tenant = await tenant_of(request)
    return render(PlanStateOut.from_domain(await request.app[CONTAINER].plans.terminate(tenant.id)))


@routes.get("/v1/usage")
@doc("A month's usage", "Plans and usage", response=UsageOut,
     params=(Param("month", schema={"type": "string", "pattern": r"^(?!0000)[0-9]{4}-(0[1-9]|1[0-2])$"},
                   description="`YYYY-MM` (Prague time); the current month by default."),),
     errors=(err.ValidationFailedError,))
async def usage(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    service = request.app[CONTAINER].plans
    asked = request.query.get("month")
    if asked == "":  # `?month=` is not "this month": the document says YYYY-MM
        raise ValidationFailedError(errors=[{"field": "month", "message": "use YYYY-MM"}])
    month = await service.usage(tenant.id, asked)
    return render(UsageOut.from_domain(month, service.catalogue.currency))
