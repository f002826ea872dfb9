"""The built-in development TSA: a real RFC 3161 timestamper with the dev TSA certificate.

``DevTimeStamper`` is pyHanko's ``DummyTimeStamper`` with the TSA key parsed once (the stock
class re-parses it for every token). ``tsa_routes`` serves it over HTTP at ``POST /tsa`` so any
RFC 3161 client (e.g. pyHanko's ``HTTPTimeStamper``) can use it. Production uses a real TSA URL.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Self

from aiohttp import web
from asn1crypto import cms, core, tsp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pyhanko.keys import load_cert_from_pemder, load_private_key_from_pemder
from pyhanko.sign.general import as_signing_certificate, get_pyca_cryptography_hash, simple_cms_attribute
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

__all__ = ["DevTimeStamper", "tsa_routes"]

MAX_QUERY = 64 * 1024


class DevTimeStamper(DummyTimeStamper):
    _pyca_key: Any = None

    @classmethod
    def from_files(cls, cert_path: Path, key_path: Path) -> Self:
        return cls(tsa_cert=load_cert_from_pemder(str(cert_path)),
                   tsa_key=load_private_key_from_pemder(str(key_path), passphrase=None))

    def _sign_tst_info(self, tst_info_data: bytes, md_algorithm: str, dt: datetime) -> tuple[bytes, cms.CMSAttributes]:
        if self._pyca_key is None:
            key = serialization.load_der_private_key(self.tsa_key.dump(), password=None)
            if not isinstance(key, RSAPrivateKey):
                raise NotImplementedError("The development TSA needs an RSA key.")
            self._pyca_key = key
        digest = hashes.Hash(get_pyca_cryptography_hash(md_algorithm))
        digest.update(tst_info_data)
        signed_attrs = cms.CMSAttributes([
            simple_cms_attribute("content_type", "tst_info"),
            simple_cms_attribute("signing_time", cms.Time({"utc_time": core.UTCTime(dt)})),
            simple_cms_attribute("signing_certificate", as_signing_certificate(self.tsa_cert)),
            simple_cms_attribute("message_digest", digest.finalize()),
        ])
        signature = self._pyca_key.sign(signed_attrs.dump(), PKCS1v15(),
                                        get_pyca_cryptography_hash(md_algorithm.upper()))
        return signature, signed_attrs


def tsa_routes(timestamper: DevTimeStamper) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/tsa")
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
