"""The built-in development TSA: a real RFC 3161 timestamper with the dev TSA certificate.

``DevTimeStamper`` is pyHanko's ``DummyTimeStamper`` with the TSA key parsed once (the stock
class re-parses it for every token). ``tsa_routes`` serves it over HTTP at ``POST /tsa`` so any
RFC 3161 client (e.g. pyHanko's ``HTTPTimeStamper``) can use it. Production uses a real TSA URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from aiohttp import web
from asn1crypto import tsp
from pyhanko.keys import load_cert_from_pemder, load_private_key_from_pemder

from adapters._pdf.keys import CachedKeyTimeStamper
from esign_gateway.http.openapi import PUBLIC, Media, doc

__all__ = ["DevTimeStamper", "tsa_routes"]

MAX_QUERY = 64 * 1024


class DevTimeStamper(CachedKeyTimeStamper):
    @classmethod
    def from_files(cls, cert_path: Path, key_path: Path) -> Self:
        return cls(tsa_cert=load_cert_from_pemder(str(cert_path)),
                   tsa_key=load_private_key_from_pemder(str(key_path), passphrase=None))


def tsa_routes(timestamper: DevTimeStamper) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/tsa")
    @doc("Development TSA (RFC 3161)", "Development", auth=PUBLIC,
         response=Media("application/timestamp-reply", "The time-stamp response."),
         also={400: Media("text/plain", "Not a TimeStampReq."), 413: Media(None, "Too large."),
               415: Media("text/plain", "Send application/timestamp-query.")})
    async def timestamp(request: web.Request) -> web.Response:
        if request.content_type != "application/timestamp-query":
            return web.Response(status=415, text="application/timestamp-query expected")
        if request.content_length is not None and request.content_length > MAX_QUERY:
            return web.Response(status=413)
        body = await request.content.read(MAX_QUERY + 1)
        if len(body) > MAX_QUERY:
            return web.Response(status=413)
        try:
            req = tsp.TimeStampReq.load(body)
            req.native  # noqa: B018 - forces a full parse so garbage is refused here
        except ValueError:
            return web.Response(status=400, text="not a TimeStampReq")
        response = await timestamper.async_request_tsa_response(req)
        return web.Response(body=response.dump(), content_type="application/timestamp-reply")

    return routes
