"""Ids in request paths: ours are UUIDs (``str(uuid7())``); anything else names nothing.

Checked before any lookup, so a path segment that cannot be one of our ids is a ``404`` (and never
reaches the ORM, whose column validation would turn a long one into a 500, or the database, which
may refuse odd bytes). Call it after authentication: a request without a key is still a 401.
"""

from __future__ import annotations

import re

from aiohttp import web

from esign_gateway.errors import MalformedRequestError, NotFoundError, ValidationFailedError

__all__ = ["ID_SCHEMA", "path_id", "query_cursor", "query_id"]

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ID_SCHEMA = {"type": "string", "format": "uuid"}
"""How the document describes one of our ids in a query (a cursor, a filter)."""


def path_id(request: web.Request, name: str = "id") -> str:
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        raise NotFoundError("No such resource.")
    return value


def query_id(request: web.Request, name: str) -> str | None:
    """An id in the query (a ``cursor`` we gave out, an ``envelope_id`` filter): None when absent,
    ``422`` when present but not one of our ids (an empty one included)."""
    value = request.query.get(name)
    if value is not None and not _ID.fullmatch(value):
        raise ValidationFailedError(errors=[{"field": name, "message": "an id this API gave out"}])
    return value


def query_cursor(request: web.Request) -> str | None:
    """``?cursor=``: only what a previous page gave out as ``next_cursor``; anything else (an empty
    one included) is a malformed request, ``400``."""
    value = request.query.get("cursor")
    if value is not None and not _ID.fullmatch(value):
        raise MalformedRequestError("The cursor is not one this API gave out: pass next_cursor as it came.",
                                    errors=[{"field": "cursor", "message": "a next_cursor this API gave out"}])
    return value
