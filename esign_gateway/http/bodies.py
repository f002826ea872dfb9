"""Reading JSON request bodies and rendering pydantic responses — the same way in every handler."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from pydantic import BaseModel

from esign_gateway.errors import MalformedRequestError, UnsupportedMediaTypeError

__all__ = ["UNREADABLE_BODY", "is_json", "read_form", "read_json", "render"]

UNREADABLE_BODY = (ValueError, LookupError, HttpProcessingError)
"""What aiohttp raises on a form or multipart body it cannot read: no or a wrong boundary
(``ValueError``), an unknown charset (``LookupError``), a part header it refuses
(``HttpProcessingError``). The client's fault: a 400, never a 500."""


def render(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(status=status, text=model.model_dump_json(), content_type="application/json")


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or (content_type.startswith("application/")
                                                   and content_type.endswith("+json"))


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The body as JSON: ``415 unsupported_media_type`` unless it says it is JSON, ``400
    malformed_request`` (not a 500) when it is not. With ``empty``, a request without a body reads
    as that value."""
    if empty is not None and not request.can_read_body:
        return empty
    if not is_json(request.content_type):
        raise UnsupportedMediaTypeError(
            f"Send the body as 'Content-Type: application/json' (this one is {request.content_type!r}).")
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise MalformedRequestError("The body is not valid JSON.") from None


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """A urlencoded or multipart form; ``400 malformed_request`` when it cannot be read."""
    try:
        return await request.post()
    except UNREADABLE_BODY:
        raise MalformedRequestError("The form body could not be read.") from None
