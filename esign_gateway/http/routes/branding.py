"""``/branding/{tenant_id}/{name}``: a tenant's logo and accent stylesheet, from our own origin.

The signer's page and the HTML e-mails reference them (``services.branding.branding_of``); the
name carries a hash of the content, so a response is cached for a year and a new logo or colour
is a new name. Anything else is a 404 problem.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from esign_gateway.services import branding

from ..keys import CONTAINER
from ..openapi import PUBLIC, Media, doc

__all__ = ["page_branding", "routes"]

routes = web.RouteTableDef()


@routes.get("/branding/{tenant_id}/{name}")
@doc("A tenant's logo or accent stylesheet (content-addressed)", "Signer page", auth=PUBLIC,
     response=Media("image/png", "The logo (`image/png` or `image/jpeg`), or the accent as `text/css`."),
     also={404: Media("application/problem+json", "No such image.")})
async def branding_file(request: web.Request) -> web.Response:
    body, ctype = await branding.logo_of(request.match_info["tenant_id"], request.match_info["name"])
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'", "Cross-Origin-Resource-Policy": "cross-origin"}
    if isinstance(body, str):
        return web.Response(text=body, content_type=ctype, charset="utf-8", headers=headers)
    return web.Response(body=body, content_type=ctype, headers=headers)


async def page_branding(request: web.Request, tenant_id: str | None) -> dict[str, Any]:
    """What a signer page shows besides the envelope: the tenant's logo and accent stylesheet, and
    the operator of the service (name, contact, privacy notice) for the footer."""
    settings = request.app[CONTAINER].settings
    operator = {"name": settings.operator_name, "contact": settings.operator_contact,
                "privacy_url": settings.privacy_url}
    return {"brand": await branding.branding_of(tenant_id) if tenant_id else None, "operator": operator}
