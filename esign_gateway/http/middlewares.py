"""Request id + log context, RFC 9457 problems for every error, signer-page security headers.

Every request gets one ``request`` log line. A request that fails because the database cannot be
reached (``esign_gateway.db.outage``) is ``503 unavailable`` with ``Retry-After``, and its
``request`` line is the only line it leaves: level ``error``, the error's class, no traceback — an
outage under traffic is one line per request, not a traceback each.
"""

from __future__ import annotations

import secrets

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from esign_gateway.db.outage import database_outage
from esign_gateway.errors import (
    DocumentTooLargeError,
    GatewayError,
    MalformedRequestError,
    MethodNotAllowedError,
    NotFoundError,
    UnavailableError,
    ValidationFailedError,
)

from .auth import rate_headers
from .problems import from_validation_error, problem_response

__all__ = ["middlewares"]

log = structlog.get_logger("esign_gateway.http")

OUTAGE = web.RequestKey("esign.outage", str)
"""The class of the error that made this request fail for a database outage (for its log line)."""

SIGNER_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'self'; frame-src 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _is_signer_path(path: str) -> bool:
    return path.startswith(("/sign/", "/api/sign/", "/download/"))


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
    structlog.contextvars.clear_contextvars()
    # Never the raw path: it may hold a signer token.
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "-"
    structlog.contextvars.bind_contextvars(request_id=request_id, method=request.method, route=route)
    try:
        response = await handler(request)
    except web.HTTPException as redirect:  # a 3xx raised by a handler (the signer page's forms)
        _finish(request, redirect, request_id)
        raise
    _finish(request, response, request_id)
    return response


def _finish(request: web.Request, response: web.StreamResponse, request_id: str) -> None:
    """What every answer gets, a raised redirect included: its id, rate headers, the signer
    page's security headers, one log line."""
    response.headers["X-Request-Id"] = request_id
    rate_headers(request, response)
    if _is_signer_path(request.path):
        for k, v in SIGNER_HEADERS.items():
            response.headers.setdefault(k, v)
    outage = request.get(OUTAGE)
    if outage is not None:
        log.error("request", status=response.status, error=outage, problem=UnavailableError.code)
    else:
        log.info("request", status=response.status)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as err:
        if err.status >= 500:  # a fault of ours or of a provider: its cause must be findable in the log
            log.error("request_failed", code=err.code, status=err.status, cause=err.detail)
        return problem_response(err)
    except ValidationError as exc:
        return problem_response(ValidationFailedError(errors=from_validation_error(exc)))
    except web.HTTPNotFound:
        return problem_response(NotFoundError("No such resource."))
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        problem = MethodNotAllowedError(f"{exc.method} is not allowed here; allowed: {allowed}.",
                                        headers={"Allow": allowed})
        return problem_response(problem)
    except web.HTTPRequestEntityTooLarge:
        return problem_response(DocumentTooLargeError("The request body is too large."))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(MalformedRequestError(exc.reason), status=exc.status)
    except Exception as exc:
        cause = database_outage(exc)
        if cause is not None:  # logged once, by the request line
            request[OUTAGE] = type(cause).__name__
            return problem_response(UnavailableError())
        log.exception("unhandled_error")
        return problem_response(GatewayError("Something went wrong on our side; it has been logged."))


middlewares = [context_middleware, problem_middleware]
