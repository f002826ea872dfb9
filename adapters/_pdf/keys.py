"""A signer and a timestamper that parse their RSA key once, not for every signature.

pyHanko's ``SimpleSigner`` and ``DummyTimeStamper`` turn their asn1crypto key into a
``cryptography`` key for every signature or token (~36-50 ms each with OpenSSL 3's key check); the
signing workers and the upload inspector make many, so both keep the parsed key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from asn1crypto import cms, core
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pyhanko.sign import signers
from pyhanko.sign.general import as_signing_certificate, get_pyca_cryptography_hash, simple_cms_attribute
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

__all__ = ["CachedKeySigner", "CachedKeyTimeStamper"]


class CachedKeySigner(signers.SimpleSigner):
    """``SimpleSigner`` that keeps the parsed private key instead of re-parsing it per signature."""

    _pyca_key: Any = None

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        if self._pyca_key is None:
            self._pyca_key = serialization.load_der_private_key(self.signing_key.dump(), password=None)
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
        if mechanism == "rsassa_pkcs1v15" and isinstance(self._pyca_key, RSAPrivateKey):
            return self._pyca_key.sign(data, PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))
        return super().sign_raw(data, digest_algorithm)


class CachedKeyTimeStamper(DummyTimeStamper):
    """``DummyTimeStamper`` (an in-process RFC 3161 TSA) with its RSA key parsed once."""

    _pyca_key: Any = None

    def _sign_tst_info(self, tst_info_data: bytes, md_algorithm: str, dt: datetime) -> tuple[bytes, cms.CMSAttributes]:
        if self._pyca_key is None:
            key = serialization.load_der_private_key(self.tsa_key.dump(), password=None)
            if not isinstance(key, RSAPrivateKey):
                raise NotImplementedError("This timestamper needs an RSA key.")
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
