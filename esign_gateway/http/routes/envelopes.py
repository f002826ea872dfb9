"""/v1/envelopes: thin handlers — parse, call a service, render."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, unquote

import structlog
from aiohttp import BodyPartReader, MultipartReader, web
from pydantic import ValidationError

from esign_gateway import errors as err
from esign_gateway.domain.envelope import Envelope
from esign_gateway.errors import DocumentTooLargeError, MalformedRequestError, ValidationFailedError
from esign_gateway.ports import FieldRequest
from esign_gateway.services.envelopes import NewDocument, NewEnvelope, NewField, NewSigner
from esign_gateway.services.idempotency import Claim
from esign_gateway.services.tenants import TenantInfo

from ..auth import tenant_of
from ..bodies import UNREADABLE_BODY, read_json, render
from ..keys import CONTAINER
from ..openapi import Media, Param, doc
from ..paths import ID_SCHEMA, path_id, query_cursor
from ..problems import from_validation_error
from ..schemas import (
    ONE_LINE,
    RECORD_TYPES,
    AuditEventOut,
    AuditTrailOut,
    CancelIn,
    CreateEnvelopeIn,
    DownloadLinksRevokedOut,
    EnvelopeOut,
    EnvelopePage,
    ExtendIn,
    RemindOut,
)

__all__ = ["attachment", "audit_response", "record_filter", "routes", "wants_json"]

routes = web.RouteTableDef()
ENVELOPE_JSON_MAX = 256 * 1024


def _check_sizes(docs: list[NewDocument], max_doc: int, max_total: int) -> None:
    for i, d in enumerate(docs):
        if len(d.content) > max_doc:
            raise DocumentTooLargeError(
                f"Document {i} has {len(d.content)} bytes; the limit is {max_doc}.",
                errors=[{"field": f"documents[{i}]", "message": f"larger than {max_doc} bytes"}],
            )
    if sum(len(d.content) for d in docs) > max_total:
        raise DocumentTooLargeError(f"The documents exceed {max_total} bytes in total.")


async def _read_limited(part: BodyPartReader, limit: int, what: str) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(65536):
        size += len(chunk)
        if size > limit:
            raise DocumentTooLargeError(f"The {what} exceeds {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _filename(raw: str | None, index: int) -> str:
    """Clients percent-encode non-ASCII file names (RFC 7578 §4.2 tolerates it): decode them. A
    name with a control character or a line break is refused, as in a JSON request."""
    name = unquote(raw) if raw and "%" in raw else raw
    name = (name or "").replace("/", "_").replace("\\", "_").strip()
    if not re.fullmatch(ONE_LINE, name):
        raise ValidationFailedError(errors=[{"field": f"document[{index}]",
                                             "message": "a file name without control characters or line breaks"}])
    return name[:255] or f"document-{index + 1}.pdf"


async def _next_part(reader: MultipartReader) -> Any:
    """The next part; ``400 malformed_request`` for a body aiohttp cannot split into parts."""
    try:
        return await reader.next()
    except UNREADABLE_BODY:
        raise MalformedRequestError("The multipart body could not be read.") from None


async def _parse_create(request: web.Request) -> NewEnvelope:
    settings = request.app[CONTAINER].settings
    docs: list[NewDocument] = []
    if request.content_type == "multipart/form-data":
        raw_envelope: Any = None
        total = 0
        try:
            reader = await request.multipart()
        except UNREADABLE_BODY:  # no boundary
            raise MalformedRequestError("The multipart body could not be read.") from None
        while (part := await _next_part(reader)) is not None:
            if not isinstance(part, BodyPartReader):
                raise MalformedRequestError("Nested multipart is not supported.")
            if part.name == "envelope":
                try:
                    raw_envelope = json.loads(await _read_limited(part, ENVELOPE_JSON_MAX, "envelope part"))
                except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                    raise MalformedRequestError("The 'envelope' part is not valid JSON.") from None
            elif part.name == "document":
                data = await _read_limited(part, settings.max_document_bytes, "document")
                total += len(data)
                if total > settings.max_request_bytes:
                    raise DocumentTooLargeError(f"The documents exceed {settings.max_request_bytes} bytes in total.")
                docs.append(NewDocument(_filename(part.filename, len(docs)), data))
            else:
                raise ValidationFailedError(errors=[{"field": part.name or "?", "message": "unexpected part"}])
        if not isinstance(raw_envelope, dict):
            raise ValidationFailedError(errors=[{"field": "envelope", "message": "a JSON object part is required"}])
        if raw_envelope.get("documents"):
            raise ValidationFailedError(errors=[{"field": "documents", "message": "send documents as file parts"}])
        if not docs:
            raise ValidationFailedError(errors=[{"field": "document", "message": "at least one document part"}])
        body = CreateEnvelopeIn.model_validate(raw_envelope)
    else:
        body = CreateEnvelopeIn.model_validate(await read_json(request))
        if not body.documents:
            raise ValidationFailedError(errors=[{"field": "documents", "message": "at least one document"}])
        errors = []
        for i, d in enumerate(body.documents):
            try:
                docs.append(NewDocument(d.name, d.decoded()))
            except ValueError as exc:
                errors.append({"field": f"documents[{i}].content", "message": str(exc)})
        if errors:
            raise ValidationFailedError(errors=errors)
    if len(docs) > 20:
        raise ValidationFailedError(errors=[{"field": "documents", "message": "at most 20 documents"}])
    _check_sizes(docs, settings.max_document_bytes, settings.max_request_bytes)
    return NewEnvelope(
        record_type=body.record.type, record_id=body.record.id, record_name=body.record.name, name=body.name,
        message=body.message, language=body.language, documents=docs,
        signers=[NewSigner(s.name, s.email, s.phone, s.order, fields=[
            NewField(document=f.document - 1, request=FieldRequest(
                path=f"signers[{i}].fields[{j}]", anchor=f.anchor, occurrence=f.occurrence, offset_x=f.offset_x,
                offset_y=f.offset_y, page=f.page, x=f.x, y=f.y, width=f.width, height=f.height))
            for j, f in enumerate(s.fields)
        ]) for i, s in enumerate(body.signers)],
        expires_in_days=body.expires_in_days, expires_at=body.expires_at,
        reminders=body.reminders.model_dump(), metadata=body.metadata, send=body.send,
    )


async def _claim(
    request: web.Request, tenant: TenantInfo, operation: str, meaning: Any
) -> Claim | web.Response | None:
    """Honour ``Idempotency-Key``: a claim to do the work, a replayed response, or None (no key)."""
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    idem = request.app[CONTAINER].idempotency
    key = idem.validate_key(raw)
    outcome = await idem.begin(tenant.id, key, await idem.fingerprint(operation, meaning))
    if isinstance(outcome, Claim):
        return outcome
    body = outcome.body
    if body is None:  # committed, but its process died before keeping the body: render it now
        env = await request.app[CONTAINER].envelopes.get_envelope(tenant, outcome.envelope_id)
        body = EnvelopeOut.from_domain(env, _base(request)).model_dump_json()
    resp = web.Response(status=outcome.status, text=body, content_type="application/json")
    resp.headers["Idempotent-Replayed"] = "true"
    if outcome.status == 201:
        resp.headers["Location"] = f"{_base(request)}/v1/envelopes/{outcome.envelope_id}"
    return resp


async def _idempotent(
    request: web.Request, claim: Claim | None, work: Callable[[], Awaitable[Envelope]], status: int
) -> web.Response:
    """Run ``work``; with a claim, free the key if it fails and keep the response if it succeeds."""
    idem = request.app[CONTAINER].idempotency
    try:
        env = await work()
        structlog.contextvars.bind_contextvars(envelope_id=env.id)  # a created one's too, for the request line
    except BaseException:
        if claim is not None:
            await asyncio.shield(idem.abandon(claim))
        raise
    resp = render(EnvelopeOut.from_domain(env, _base(request)), status=status)
    if status == 201:
        resp.headers["Location"] = f"{_base(request)}/v1/envelopes/{env.id}"
    if claim is not None:
        await idem.remember(claim, resp.text or "")
    return resp


@routes.post("/v1/envelopes")
@doc("Create an envelope (and send it)", "Envelopes", body=CreateEnvelopeIn, multipart=True, status=201,
     response=EnvelopeOut, idempotent=True,
     errors=(err.PdfInvalidError, err.PdfEncryptedError, err.PdfCertifiedError, err.DocumentTooLargeError,
             err.QuotaExceededError, err.InstanceNotPaidError, err.SigningDisabledError, err.IdempotencyConflictError,
             err.IdempotencyInProgressError, err.InspectorBusyError, err.ProviderError),
     description="JSON with base64 documents, or multipart: an `envelope` JSON part and one `document` part per "
                 "PDF. Every document is checked (a trial signature) and every signer's stamp placed before "
                 "anything is stored; `send: false` keeps a draft.")
async def create_envelope(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    cmd = await _parse_create(request)
    claim = await _claim(request, tenant, "create_envelope", cmd)
    if isinstance(claim, web.Response):
        return claim
    service = request.app[CONTAINER].envelopes
    return await _idempotent(request, claim, lambda: service.create_envelope(tenant, cmd, claim=claim), 201)


@routes.get("/v1/envelopes")
@doc("List envelopes, newest first", "Envelopes", response=EnvelopePage, params=(
    Param("record_type", schema={"type": "string", "enum": ["client", "contact", "deal", "offer", "order"]}),
    Param("record_id", schema={"type": "string", "maxLength": 128},
          description="The CRM record's id: every envelope of one deal."),
    Param("status", schema={"type": "string",
                            "enum": ["draft", "sent", "completed", "declined", "expired", "cancelled"]}),
    Param("limit", schema={"type": "integer", "minimum": 1, "maximum": 100, "default": 20}),
    Param("cursor", schema=ID_SCHEMA, description="`next_cursor` of the previous page."),
), errors=(err.ValidationFailedError, err.MalformedRequestError))
async def list_envelopes(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    q = request.query
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise ValidationFailedError(errors=[{"field": "limit", "message": "an integer from 1 to 100"}])
    record_type, record_id = record_filter(request)
    status = q.get("status")
    if status is not None and status not in ("draft", "sent", "completed", "declined", "expired", "cancelled"):
        raise ValidationFailedError(errors=[{"field": "status", "message": "not a known status"}])
    page = await request.app[CONTAINER].envelopes.list_envelopes(
        tenant, record_type=record_type, record_id=record_id, status=status, limit=limit,
        cursor=query_cursor(request),
    )
    base = _base(request)
    return render(EnvelopePage(items=[EnvelopeOut.from_domain(e, base) for e in page.items],
                               next_cursor=page.next_cursor))


@routes.get("/v1/envelopes/{id}")
@doc("Get an envelope", "Envelopes", response=EnvelopeOut, errors=(err.NotFoundError, err.GoneError))
async def get_envelope(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    env = await request.app[CONTAINER].envelopes.get_envelope(tenant, path_id(request))
    return render(EnvelopeOut.from_domain(env, _base(request)))


@routes.post("/v1/envelopes/{id}/send")
@doc("Send a draft", "Envelopes", response=EnvelopeOut, idempotent=True,
     errors=(err.NotFoundError, err.InvalidStateError, err.QuotaExceededError, err.InstanceNotPaidError,
             err.SigningDisabledError, err.IdempotencyConflictError, err.IdempotencyInProgressError,
             err.ProviderError, err.ValidationFailedError))
async def send_envelope(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    envelope_id = path_id(request)
    claim = await _claim(request, tenant, "send_envelope", {"envelope_id": envelope_id})
    if isinstance(claim, web.Response):
        return claim
    service = request.app[CONTAINER].envelopes
    return await _idempotent(request, claim, lambda: service.send_envelope(tenant, envelope_id, claim=claim), 200)


@routes.post("/v1/envelopes/{id}/cancel")
@doc("Cancel a sent envelope", "Envelopes", body=CancelIn, body_optional=True, response=EnvelopeOut,
     errors=(err.NotFoundError, err.InvalidStateError, err.ProviderError),
     description="The body may be empty (`{}`); `reason` is shown to the signers.")
async def cancel_envelope(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    raw = await read_json(request, empty={})
    try:
        body = CancelIn.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailedError(errors=from_validation_error(exc)) from None
    env = await request.app[CONTAINER].envelopes.cancel_envelope(tenant, path_id(request), body.reason)
    return render(EnvelopeOut.from_domain(env, _base(request)))


@routes.post("/v1/envelopes/{id}/extend")
@doc("Move the expiry", "Envelopes", body=ExtendIn, response=EnvelopeOut,
     errors=(err.NotFoundError, err.InvalidStateError, err.ProviderError))
async def extend_envelope(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    body = ExtendIn.model_validate(await read_json(request))
    env = await request.app[CONTAINER].envelopes.extend_envelope(
        tenant, path_id(request), expires_in_days=body.expires_in_days, expires_at=body.expires_at
    )
    return render(EnvelopeOut.from_domain(env, _base(request)))


@routes.post("/v1/envelopes/{id}/remind")
@doc("Remind the signers who have to act now", "Envelopes", status=202, response=RemindOut,
     errors=(err.NotFoundError, err.InvalidStateError, err.TooManyRequestsError, err.ProviderError),
     description="At most once an hour per envelope (`429` with `Retry-After`).")
async def remind(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    signers = await request.app[CONTAINER].envelopes.remind_now(tenant, path_id(request))
    return render(RemindOut(reminded=[s.id for s in signers]), status=202)


@routes.delete("/v1/envelopes/{id}")
@doc("Delete a draft", "Envelopes", status=204, response=Media(None, "Deleted."),
     errors=(err.NotFoundError, err.InvalidStateError))
async def delete_envelope(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    await request.app[CONTAINER].envelopes.delete_draft(tenant, path_id(request))
    return web.Response(status=204)


def record_filter(request: web.Request) -> tuple[str | None, str | None]:
    """``record_type`` and ``record_id`` of a list's query: one of the record types, an id no longer
    than a record's (128); ``422`` otherwise (never a filter no record could match)."""
    record_type, record_id = request.query.get("record_type"), request.query.get("record_id")
    if record_type is not None and record_type not in RECORD_TYPES:
        raise ValidationFailedError(errors=[{"field": "record_type", "message": "|".join(RECORD_TYPES)}])
    if record_id is not None and len(record_id) > 128:
        raise ValidationFailedError(errors=[{"field": "record_id", "message": "at most 128 characters"}])
    return record_type, record_id


def _base(request: web.Request) -> str:
    """The gateway's public URL: links in answers are absolute."""
    return str(request.app[CONTAINER].settings.base_url).rstrip("/")


def attachment(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


@routes.get("/v1/envelopes/{id}/documents/{document_id}")
@doc("One document as it stands", "Envelopes", response=Media("application/pdf", "The PDF.", ("Content-Disposition",)),
     params=(Param("version", schema={"type": "string", "enum": ["current", "original", "prepared"],
                                       "default": "current"},
                   description="`original`: the upload; `prepared`: what the signers sign (repaired and/or with a "
                               "signature page); `current`: with every signature so far."),),
     errors=(err.NotFoundError, err.GoneError, err.ValidationFailedError))
async def get_document(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    version = request.query.get("version", "current")
    if version not in ("current", "original", "prepared"):
        raise ValidationFailedError(errors=[{"field": "version", "message": "current, original or prepared"}])
    doc, data = await request.app[CONTAINER].envelopes.document_content(
        tenant, path_id(request), path_id(request, "document_id"), version=version
    )
    return web.Response(body=data, content_type="application/pdf",
                        headers={"Content-Disposition": attachment(doc.name)})


@routes.get("/v1/envelopes/{id}/download")
@doc("The signed result", "Envelopes",
     response=Media("application/pdf", "The signed PDF, or a ZIP of every signed PDF and the audit report when "
                    "there are several documents (`application/zip`).", ("Content-Disposition",)),
     errors=(err.NotFoundError, err.GoneError, err.InvalidStateError))
async def download(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    name, ctype, data = await request.app[CONTAINER].envelopes.signed_result(tenant, path_id(request))
    return web.Response(body=data, content_type=ctype, headers={"Content-Disposition": attachment(name)})


@routes.get("/v1/envelopes/{id}/audit")
@doc("The audit report (PDF) or the event trail (JSON)", "Envelopes",
     response=(Media("application/pdf", "The sealed audit report; with `Accept: application/json` the "
                     "hash-chained event trail.", ("Content-Disposition",)), AuditTrailOut),
     errors=(err.NotFoundError, err.GoneError, err.InvalidStateError))
async def audit(request: web.Request) -> web.Response:
    """The sealed audit report PDF; ``Accept: application/json`` gives the event trail."""
    tenant = await tenant_of(request)
    return await audit_response(request, path_id(request), tenant.id)


@routes.delete("/v1/envelopes/{id}/download-links")
@doc("Revoke the signers' download links", "Envelopes", response=DownloadLinksRevokedOut,
     errors=(err.NotFoundError, err.GoneError, err.InvalidStateError),
     description="A completed envelope's links to the signed result (`/download/…`, one per signer and one for "
                 "the sender's contact, from the completion e-mail and the signer's page) answer `410` from now "
                 "on, and none is issued again. `GET /v1/envelopes/{id}/download` is not affected. `409` before "
                 "completion.")
async def revoke_download_links(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    count = await request.app[CONTAINER].ceremony.revoke_download_links(path_id(request), tenant.id, actor="api")
    return render(DownloadLinksRevokedOut(revoked=count))


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


async def audit_response(request: web.Request, envelope_id: str, tenant_id: str | None) -> web.Response:
    archive = request.app[CONTAINER].archive
    if not wants_json(request):
        pdf = await archive.report_pdf(envelope_id, tenant_id)
        return web.Response(body=pdf, content_type="application/pdf",
                            headers={"Content-Disposition": attachment(f"audit-{envelope_id}.pdf")})
    env = await archive.load(envelope_id, tenant_id)
    events = await archive.trail(env.id)
    return render(AuditTrailOut(
        envelope_id=env.id, chain_head=events[-1].hash if events else None,
        events=[AuditEventOut(seq=e.seq, type=e.type, at=e.at, actor=e.actor, signer_id=e.signer_id, data=e.data,
                              ip=e.ip, user_agent=e.user_agent, note=e.note, hash=e.hash, prev_hash=e.prev_hash)
                for e in events],
    ))
