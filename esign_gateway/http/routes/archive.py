"""The tenant's archive overview, and support retrieval by envelope ID with an access log (SPEC §10).

Support keys read any tenant's envelope by its ID — the envelope, its signed result, its audit
report — and nothing else: they cannot list, create or change. Each read needs a reason
(``X-Access-Reason``) and is appended to the access log, which only ``operator`` keys read.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel

from esign_gateway import errors as err
from esign_gateway.errors import MalformedRequestError, ValidationFailedError
from esign_gateway.services.tenants import Principal

from ..auth import authenticate, tenant_of
from ..bodies import render
from ..keys import CONTAINER
from ..openapi import OPERATOR, SUPPORT, Media, Param, doc
from ..paths import ID_SCHEMA, path_id, query_cursor
from ..schemas import RECORD_TYPES, AuditTrailOut, EnvelopeOut
from .envelopes import attachment, audit_response, record_filter

__all__ = ["routes"]

routes = web.RouteTableDef()


class ArchiveItemOut(BaseModel):
    id: str
    name: str
    record: dict[str, str | None]
    completed_at: datetime | None
    retained_until: datetime | None
    documents: list[dict[str, str | None]]
    links: dict[str, str]


class ArchivePageOut(BaseModel):
    items: list[ArchiveItemOut]
    next_cursor: str | None


class AccessOut(BaseModel):
    id: int
    at: datetime
    key_id: str
    envelope_id: str
    tenant_id: str | None
    action: str
    reason: str
    ip: str | None


class AccessLogOut(BaseModel):
    items: list[AccessOut]


def _when(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw:  # `?to=` is not "no bound": the document says date-time
        raise ValidationFailedError(errors=[{"field": name, "message": "an ISO 8601 date or time"}])
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailedError(errors=[{"field": name, "message": "an ISO 8601 date or time"}]) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


@routes.get("/v1/archive")
@doc("Completed envelopes still retained", "Archive", response=ArchivePageOut, params=(
    Param("from", schema={"type": "string", "format": "date-time"}, description="Completed at or after."),
    Param("to", schema={"type": "string", "format": "date-time"}, description="Completed before."),
    Param("record_type", schema={"type": "string", "enum": list(RECORD_TYPES)}),
    Param("record_id", schema={"type": "string", "maxLength": 128}),
    Param("limit", schema={"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
    Param("cursor", schema=ID_SCHEMA, description="`next_cursor` of the previous page."),
), errors=(err.ValidationFailedError, err.MalformedRequestError))
async def archive(request: web.Request) -> web.Response:
    """Completed envelopes still retained, newest first: ``from``/``to`` on the completion time."""
    tenant = await tenant_of(request)
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 200:
        raise ValidationFailedError(errors=[{"field": "limit", "message": "an integer from 1 to 200"}])
    record_type, record_id = record_filter(request)
    page = await request.app[CONTAINER].archive.archive_page(
        tenant.id, since=_when(request, "from"), until=_when(request, "to"),
        record_type=record_type, record_id=record_id, limit=limit, cursor=query_cursor(request),
    )
    out = []
    for env in page.items:
        base = f"{request.app[CONTAINER].settings.base_url.rstrip('/')}/v1/envelopes/{env.id}"
        out.append(ArchiveItemOut(
            id=env.id, name=env.name, record={"type": env.record_type, "id": env.record_id, "name": env.record_name},
            completed_at=env.completed_at, retained_until=env.retained_until,
            documents=[{"id": d.id, "name": d.name, "sha256": d.sha256, "signed_sha256": d.signed_sha256}
                       for d in env.documents],
            links={"self": base, "download": f"{base}/download", "audit": f"{base}/audit"},
        ))
    return render(ArchivePageOut(items=out, next_cursor=page.next_cursor))


async def _support(request: web.Request, action: str) -> tuple[Principal, str]:
    principal = await authenticate(request, "support")
    reason = request.headers.get("X-Access-Reason", "").strip()
    if not reason:
        raise MalformedRequestError(
            "Support reads need an 'X-Access-Reason' header: why you open this envelope (e.g. a ticket number).",
            errors=[{"field": "X-Access-Reason", "message": "required"}],
        )
    envelope_id = path_id(request)
    await request.app[CONTAINER].archive.record_access(
        key_id=principal.key_id, envelope_id=envelope_id, action=action, reason=reason, ip=request.remote,
    )
    return principal, envelope_id


@routes.get("/v1/support/envelopes/{id}")
@doc("Support: any tenant's envelope", "Support", auth=SUPPORT, response=EnvelopeOut,
     errors=(err.NotFoundError, err.GoneError, err.MalformedRequestError))
async def support_envelope(request: web.Request) -> web.Response:
    _, envelope_id = await _support(request, "read")
    env = await request.app[CONTAINER].archive.load(envelope_id, None)
    return render(EnvelopeOut.from_domain(env, request.app[CONTAINER].settings.base_url.rstrip("/")))


@routes.get("/v1/support/envelopes/{id}/download")
@doc("Support: the signed result", "Support", auth=SUPPORT,
     response=Media("application/pdf", "The signed PDF (or a ZIP for several documents).", ("Content-Disposition",)),
     errors=(err.NotFoundError, err.GoneError, err.InvalidStateError, err.MalformedRequestError))
async def support_download(request: web.Request) -> web.Response:
    _, envelope_id = await _support(request, "download")
    container = request.app[CONTAINER]
    name, ctype, data = await container.envelopes.result_of(await container.archive.load(envelope_id, None))
    return web.Response(body=data, content_type=ctype, headers={"Content-Disposition": attachment(name)})


@routes.get("/v1/support/envelopes/{id}/audit")
@doc("Support: the audit report or trail", "Support", auth=SUPPORT,
     response=(Media("application/pdf", "The sealed audit report; `Accept: application/json` gives the trail.",
                     ("Content-Disposition",)), AuditTrailOut),
     errors=(err.NotFoundError, err.GoneError, err.InvalidStateError, err.MalformedRequestError))
async def support_audit(request: web.Request) -> web.Response:
    _, envelope_id = await _support(request, "audit")
    return await audit_response(request, envelope_id, None)


@routes.get("/v1/support/access-log")
@doc("Operator: who opened which envelope, and why", "Support", auth=OPERATOR, response=AccessLogOut,
     params=(Param("envelope_id"),))
async def access_log(request: web.Request) -> web.Response:
    await authenticate(request, "operator")
    rows = await request.app[CONTAINER].archive.access_log(request.query.get("envelope_id") or None)
    return render(AccessLogOut(items=[
        AccessOut(id=r.id, at=r.at, key_id=r.key_id, envelope_id=r.envelope_id, tenant_id=r.tenant_id,
                  action=r.action, reason=r.reason, ip=r.ip)
        for r in rows
    ]))
