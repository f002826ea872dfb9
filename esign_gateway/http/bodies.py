"""Reading JSON request bodies and rendering pydantic responses — the same way in every handler."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from esign_gateway.errors import MalformedRequestError

__all__ = ["read_json", "render"]


def render(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(status=status, text=model.model_dump_json(), content_type="application/json")


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The body as JSON; ``400 malformed_request`` (not a 500) when it is not JSON. With ``empty``,
    a request without a body reads as that value."""
    if empty is not None and not request.can_read_body:
        return empty
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MalformedRequestError("The body is not valid JSON.") from None
