"""Request id + log context, RFC 9457 problems for every error, signer-page security headers.

Every request gets one ``request`` log line: ``request_id``, ``method``, ``route`` (the template,
never the raw path: it may hold a signer's token), ``status``, ``duration_ms``, and whatever the
handlers bound meanwhile (``tenant_id`` once an API key is resolved, ``envelope_id`` from the path,
the created envelope or the signer's link). The line of a ``5xx`` is the one place its cause is
logged: level ``error``, ``problem`` (the problem's code), ``error`` (the class of the exception
underneath: ``BrokenProcessPool``, ``OperationalError``…) and ``cause`` (the problem's detail,
then that exception's message); a ``500`` adds its traceback as ``exception``. A request that fails
because the database cannot be reached (``esign_gateway.db.outage``) is ``503 unavailable`` with
``Retry-After``, without a traceback — an outage under traffic is one line per request.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

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



@dataclass(frozen=True, slots=True)
class Failure:
    """Why a request failed with a 5xx, for its ``request`` line."""

    problem: str
    error: str
    cause: str
    exception: BaseException | None = None
    """Set for a 500 (a fault of ours): its traceback goes on the line."""


FAILURE = web.RequestKey("esign.failure", Failure)
_CAUSE_CHARS = 500

SIGNER_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'; frame-src 'none'"
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
    started = time.perf_counter()
    request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
    structlog.contextvars.clear_contextvars()
    # Never the raw path: it may hold a signer token.
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "-"
    structlog.contextvars.bind_contextvars(request_id=request_id, method=request.method, route=route)
    if "/envelopes/{id}" in route:
        structlog.contextvars.bind_contextvars(envelope_id=request.match_info.get("id", "")[:64])
    try:
        response = await handler(request)
    except web.HTTPException as redirect:  # a 3xx raised by a handler (the signer page's forms)
        _finish(request, redirect, request_id, started)
        raise
    _finish(request, response, request_id, started)
    return response


def _finish(request: web.Request, response: web.StreamResponse, request_id: str, started: float) -> None:
    """What every answer gets, a raised redirect included: its id, rate headers, the signer
    page's security headers, one log line."""
    response.headers["X-Request-Id"] = request_id
    rate_headers(request, response)
    if _is_signer_path(request.path):
        for k, v in SIGNER_HEADERS.items():
            response.headers.setdefault(k, v)
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    failure = request.get(FAILURE)
    if failure is not None:
        trace = {"exc_info": failure.exception} if failure.exception is not None else {}
        log.error("request", status=response.status, duration_ms=duration_ms, problem=failure.problem,
                  error=failure.error, cause=failure.cause, **trace)
    else:
        log.info("request", status=response.status, duration_ms=duration_ms)


def _failed(request: web.Request, problem: str, exc: BaseException, detail: str,
            *, traceback: bool = False) -> None:
    """Keep why this request is a 5xx for its one log line: the innermost exception's class (a
    provider's ``raise … from None`` still keeps it as the context) and what it says."""
    inner, seen = exc, {id(exc)}
    while (underneath := inner.__cause__ or inner.__context__) is not None and id(underneath) not in seen:
        inner = underneath
        seen.add(id(inner))
    said = str(inner)[:200] if inner is not exc else ""
    cause = f"{detail} ({said})" if said and said not in detail else detail
    request[FAILURE] = Failure(problem, type(inner).__name__, cause[:_CAUSE_CHARS], exc if traceback else None)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as err:
        if err.status >= 500:  # a fault of ours or of a provider: its cause goes on the request line
            _failed(request, err.code, err, err.detail)
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
        if exc.status >= 500:
            _failed(request, MalformedRequestError.code, exc, exc.reason)
        return problem_response(MalformedRequestError(exc.reason), status=exc.status)
    except Exception as exc:
        cause = database_outage(exc)
        if cause is not None:  # logged once, by the request line
            request[FAILURE] = Failure(UnavailableError.code, type(cause).__name__, "the database cannot be reached")
            return problem_response(UnavailableError())
        _failed(request, GatewayError.code, exc, str(exc)[:200] or "unhandled error", traceback=True)
        return problem_response(GatewayError("Something went wrong on our side; it has been logged."))


middlewares = [context_middleware, problem_middleware]
