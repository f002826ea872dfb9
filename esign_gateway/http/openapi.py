"""OpenAPI 3.1 from the server itself: the route table and the pydantic models the handlers use.

Each handler carries its contract next to its code (:func:`doc`: summary, body model, response
model or media type, the errors it may answer); :func:`build` walks the application's router —
the same table that serves requests — and writes one operation per route, with the pydantic
models as ``components.schemas`` (validation schemas for requests, serialisation for responses).
A route without ``@doc`` fails the build, so the document cannot drift from the server (and
``tests/api/test_openapi.py`` checks both directions).

A small generator of our own rather than a library: the maintained aiohttp ones either want
class-based views (aiohttp-pydantic) or marshmallow (aiohttp-apispec); here the routes stay plain
functions and pydantic does the schema work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from esign_gateway import errors as err
from esign_gateway.errors import GatewayError

__all__ = ["Doc", "Media", "Param", "build", "doc"]

F = TypeVar("F", bound=Callable[..., Any])

API_KEY, SUPPORT, OPERATOR, SIGNER_LINK, PUBLIC = "api_key", "support", "operator", "signer_link", "public"


@dataclass(frozen=True, slots=True)
class Media:
    """A response that is not JSON: a PDF, a ZIP, an HTML page, a redirect."""

    content_type: str | None
    description: str
    headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str = "query"
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Doc:
    summary: str
    tag: str
    auth: str = API_KEY
    body: type[BaseModel] | None = None
    body_optional: bool = False
    """The request may come without a body (read as ``{}``)."""
    multipart: bool = False
    """The body may also be ``multipart/form-data`` (an ``envelope`` JSON part and ``document`` files)."""
    params: tuple[Param, ...] = ()
    status: int = 200
    response: type[BaseModel] | Media | tuple[type[BaseModel] | Media, ...] | None = None
    """What the ``status`` answer carries; several: one content type each (``Accept`` chooses)."""
    also: dict[int, type[BaseModel] | Media] = field(default_factory=dict)
    errors: tuple[type[GatewayError], ...] = ()
    idempotent: bool = False
    description: str = ""
    choices: dict[str, Callable[[web.Application], list[str]]] = field(default_factory=dict)
    """Body fields whose allowed values are this gateway's data, not code (an ``enum`` from the app)."""


def doc(summary: str, tag: str, **kw: Any) -> Callable[[F], F]:
    """Attach the operation's contract to a handler (see the module docs)."""

    def mark(handler: F) -> F:
        handler.__openapi__ = Doc(summary, tag, **kw)  # type: ignore[attr-defined]
        return handler

    return mark


class ProblemFieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details; ``code`` is stable and machine-readable."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[ProblemFieldError] | None = None
    instance: str | None = None
    retry_after: int | None = None


PROBLEM = "application/problem+json"
_AUTH_ERRORS = (err.UnauthorizedError, err.ForbiddenError, err.TooManyRequestsError)
_BODY_ERRORS = (err.MalformedRequestError, err.UnsupportedMediaTypeError, err.ValidationFailedError)
_PATH_ERRORS = (err.NotFoundError,)
"""A path with a parameter names something, and may name nothing (an unknown id, file or link)."""
_DATABASE_ERRORS = (err.UnavailableError,)
"""Every operation behind a credential reads the database, which may be briefly unreachable."""
_HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
    "RateLimit-Limit": {"description": "API requests allowed per day by the plan.", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "API requests left today.", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the count starts again (Prague midnight).",
                        "schema": {"type": "integer"}},
    "Content-Disposition": {"description": "`attachment` with the file name.", "schema": {"type": "string"}},
    "Location": {"description": "Where to go next.", "schema": {"type": "string"}},
    "Cache-Control": {"description": "How long the answer may be kept, and by whom.", "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when this is the stored answer to an earlier request "
                                           "with the same `Idempotency-Key`.", "schema": {"type": "string"}},
}
_SECURITY = {
    API_KEY: [{"apiKey": []}], SUPPORT: [{"apiKey": []}], OPERATOR: [{"apiKey": []}],
    SIGNER_LINK: [], PUBLIC: [],
}
_ROLE = {
    API_KEY: "A tenant's API key (`Authorization: Bearer esk_…`).",
    SUPPORT: "An API key with the `support` role; every read is logged with the `X-Access-Reason` header.",
    OPERATOR: "An API key with the `operator` role.",
    SIGNER_LINK: "The signer's link token in the path is the credential; no API key.",
    PUBLIC: "No credential.",
}


def _errors_of(d: Doc, path: str) -> list[type[GatewayError]]:
    found: list[type[GatewayError]] = []
    implied = [*(_AUTH_ERRORS if d.auth in (API_KEY, SUPPORT, OPERATOR) else ()),
               *(_BODY_ERRORS if d.body is not None else ()),
               *(_PATH_ERRORS if "{" in path and 404 not in d.also else ()),  # unless a page says it
               *d.errors,
               *(_DATABASE_ERRORS if d.auth in (API_KEY, SUPPORT, OPERATOR, SIGNER_LINK) else ())]
    for e in implied:
        if e not in found:
            found.append(e)
    return found


def _targets(target: Any) -> tuple[Any, ...]:
    return target if isinstance(target, tuple) else () if target is None else (target,)


def _response(target: Any, description: str, refs: dict[type[BaseModel], str], rate_limited: bool) -> dict[str, Any]:
    headers = {name: _HEADERS[name] for name in (("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
                                                 if rate_limited else ())}
    out: dict[str, Any] = {"description": description}
    content: dict[str, Any] = {}
    for one in _targets(target):
        if isinstance(one, Media):
            out["description"] = one.description
            headers.update({name: _HEADERS[name] for name in one.headers})
            if one.content_type:
                ctype = one.content_type
                schema: dict[str, Any] = (
                    {"type": "object"} if ctype == "application/json" or ctype.endswith("+json")  # a JSON document
                    else {"type": "string"} if ctype.startswith("text/")
                    else {"type": "string", "format": "binary"})
                content[one.content_type] = {"schema": schema}
        else:
            content["application/json"] = {"schema": {"$ref": refs[one]}}
    if content:
        out["content"] = content
    if headers:
        out["headers"] = headers
    return out


def _operation(method: str, path: str, d: Doc, refs: dict[type[BaseModel], str], handler: Any) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": handler.__name__,
        "summary": d.summary,
        "tags": [d.tag],
        "description": "\n\n".join(p for p in (d.description or (handler.__doc__ or "").strip(), _ROLE[d.auth]) if p),
        "security": _SECURITY[d.auth],
    }
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    params += [{"name": p.name, "in": p.where, "required": p.required, "schema": p.schema,
                **({"description": p.description} if p.description else {})} for p in d.params]
    if d.auth == SUPPORT:
        params.append({"name": "X-Access-Reason", "in": "header", "required": True, "schema": {"type": "string"},
                       "description": "Why this envelope is opened (e.g. a ticket number); kept in the access log."})
    if d.idempotent:
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": {"type": "string", "maxLength": 255},
                       "description": "Retry safely: the same key and request within 24 h answers what the first "
                                      "one answered (`Idempotent-Replayed: true`), never doing the work twice."})
    if params:
        op["parameters"] = params
    if d.body is not None:
        content: dict[str, Any] = {"application/json": {"schema": {"$ref": refs[d.body]}}}
        if d.multipart:
            content["multipart/form-data"] = {
                "schema": {"type": "object", "required": ["envelope", "document"], "properties": {
                    "envelope": {"$ref": refs[d.body]},
                    "document": {"type": "array", "items": {"type": "string", "format": "binary"}},
                }, "additionalProperties": False},  # any other part is refused (422)
                "encoding": {"envelope": {"contentType": "application/json"},
                             "document": {"contentType": "application/pdf"}},
            }
        op["requestBody"] = {"required": not d.body_optional, "content": content}
    rate_limited = d.auth in (API_KEY, SUPPORT, OPERATOR)
    responses = {str(d.status): _response(d.response, "OK" if d.status < 300 else "See Location", refs, rate_limited)}
    for status, target in d.also.items():
        responses[str(status)] = _response(target, "Also", refs, rate_limited)
    by_status: dict[int, list[type[GatewayError]]] = {}
    for e in _errors_of(d, path):
        by_status.setdefault(e.status, []).append(e)
    for status, group in sorted(by_status.items()):
        codes = ", ".join(f"`{e.code}` ({e.title})" for e in group)
        entry: dict[str, Any] = {"description": f"A problem: {codes}.",
                                 "content": {PROBLEM: {"schema": {"$ref": refs[Problem]}}}}
        if status in (429, 503) or any(e is err.IdempotencyInProgressError for e in group):
            entry["headers"] = {"Retry-After": _HEADERS["Retry-After"]}
        responses[str(status)] = entry
    op["responses"] = responses
    return op


def _models(docs: Iterable[Doc], extra: Iterable[type[BaseModel]]) -> tuple[dict[type[BaseModel], str], dict[str, Any]]:
    wanted: list[tuple[type[BaseModel], Any]] = [(Problem, "serialization")]
    for d in docs:
        if d.body is not None:
            wanted.append((d.body, "validation"))
        for target in (*_targets(d.response), *d.also.values()):
            if isinstance(target, type) and issubclass(target, BaseModel):
                wanted.append((target, "serialization"))
    wanted += [(m, "serialization") for m in extra]
    seen: set[tuple[type[BaseModel], Any]] = set()
    unique = [w for w in wanted if not (w in seen or seen.add(w))]  # type: ignore[func-returns-value]
    keys, schema = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    refs = {model: keys[(model, mode)]["$ref"] for model, mode in unique}
    return refs, schema.get("$defs", {})


def build(app: web.Application, *, title: str, version: str, server_url: str,
          webhooks: dict[str, type[BaseModel]] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``; raises ``LookupError`` for a route without ``@doc``."""
    routes: list[tuple[str, str, Doc, Any]] = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        handler = route.handler
        d = getattr(handler, "__openapi__", None)
        if d is None:
            raise LookupError(f"{route.method} {route.resource.canonical} has no @doc: document it")
        routes.append((route.method.lower(), route.resource.canonical, d, handler))
    names = [handler.__name__ for _, _, _, handler in routes]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise LookupError(f"handlers share a name (their operationId): {', '.join(twice)}")
    refs, schemas = _models((d for _, _, d, _ in routes), (webhooks or {}).values())
    for _, _, d, _ in routes:
        for name, values in d.choices.items():
            assert d.body is not None, "choices name fields of the body"
            schemas[refs[d.body].rsplit("/", 1)[1]]["properties"][name]["enum"] = values(app)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, d, handler in routes:
        paths.setdefault(path, {})[method] = _operation(method, path, d, refs, handler)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Send documents from a CRM for electronic signature; follow every step by "
                                "webhook; fetch the signed result and its evidence. Errors are RFC 9457 problems "
                                "with a stable `code`."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "esk_…",
                                           "description": "An API key; its role (tenant, support, operator) "
                                                          "decides what it may call."}},
        },
    }
    if webhooks:
        document["webhooks"] = {
            name: {"post": {
                "summary": f"`{name}`", "operationId": f"webhook_{name.replace('.', '_')}",
                "description": "Standard Webhooks: `webhook-id` (the same on every retry), `webhook-timestamp`, "
                               "`webhook-signature: v1,<base64 HMAC-SHA256>`.",
                "requestBody": {"content": {"application/json": {"schema": {"$ref": refs[model]}}}},
                "responses": {"2XX": {"description": "Received; anything else is retried for about 3 days."}},
            }} for name, model in webhooks.items()
        }
    return document
