"""RFC 9457 problem responses: the one renderer for every error."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from esign_gateway.errors import GatewayError, UnauthorizedError

__all__ = ["from_validation_error", "problem_response"]

PROBLEM_TYPE = "https://esign-gateway.dev/problems/"


def problem_response(err: GatewayError, *, instance: str | None = None, status: int | None = None) -> web.Response:
    status = status or err.status
    headers = dict(err.headers)
    if status == 401:
        headers.setdefault("WWW-Authenticate", UnauthorizedError.challenge)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + err.code.replace("_", "-"),
        "title": err.title,
        "status": status,
        "detail": err.detail,
        "code": err.code,
    }
    if err.errors:
        body["errors"] = err.errors
    if instance:
        body["instance"] = instance
    body.update(err.extra)
    return web.Response(
        status=status, text=json.dumps(body, ensure_ascii=False),
        content_type="application/problem+json", headers=headers,
    )


def from_validation_error(exc: ValidationError, *, prefix: str = "") -> list[dict[str, str]]:
    errors = []
    for e in exc.errors(include_url=False, include_input=False):
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        errors.append({"field": f"{prefix}{loc}" if loc else prefix.rstrip(".") or "body", "message": e["msg"]})
    return errors
