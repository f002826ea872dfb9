"""The signer page's document images: ``/sign/{token}/documents/{id}/pages/{n}.png?w=…&v=…``.

The same link and the same rule as the PDF download (``/api/sign/{token}/documents/{id}``): while
the envelope is open, and its signed result once it is completed; 404 for a link or a page that
is not there, 410 for a closed link. ``w`` is one of the widths the page's ``srcset`` offers.
``v`` names the document version the page was made from: an image of that version may be kept by
the signer's browser (``private``), any other answer is checked again each time.
"""

from __future__ import annotations

from aiohttp import web

from esign_gateway import errors as err
from esign_gateway.errors import ValidationFailedError
from esign_gateway.ports import PAGE_IMAGE_WIDTHS

from ..keys import CONTAINER
from ..openapi import SIGNER_LINK, Media, Param, doc

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get(r"/sign/{token}/documents/{document_id}/pages/{page:\d{1,5}}.png")
@doc("A document page as an image, for the signer's page", "Signer page", auth=SIGNER_LINK,
     response=Media("image/png", "The page as the signer's viewer would show it.", ("Cache-Control",)),
     params=(Param("w", schema={"type": "integer", "enum": list(PAGE_IMAGE_WIDTHS)},
                   description=f"Width in pixels (default {PAGE_IMAGE_WIDTHS[1]})."),
             Param("v", description="The document version the signer's page names (cache key)."),),
     errors=(err.NotFoundError, err.GoneError, ValidationFailedError))
async def page_image(request: web.Request) -> web.Response:
    raw = request.query.get("w", str(PAGE_IMAGE_WIDTHS[1]))
    if not raw.isdigit() or int(raw) not in PAGE_IMAGE_WIDTHS:
        raise ValidationFailedError(errors=[{"field": "w", "message": f"one of {list(PAGE_IMAGE_WIDTHS)}"}])
    page = int(request.match_info["page"])
    if page < 1:
        raise err.NotFoundError("Pages are numbered from 1.")
    png, version = await request.app[CONTAINER].ceremony.page_image(
        request.match_info["token"], request.match_info["document_id"], page - 1, int(raw))
    asked = request.query.get("v", "")
    fresh = len(asked) >= 16 and version.startswith(asked)
    return web.Response(body=png, content_type="image/png", headers={
        "Cache-Control": "private, max-age=86400, immutable" if fresh else "private, no-cache",
    })
