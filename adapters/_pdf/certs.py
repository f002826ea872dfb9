"""The X.509 extensions pyHanko's validator expects of a seal, a TSA and their root (see
shared/pyhanko-notes.md): for the development PKI and the upload trial's throwaway identity."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = ["as_leaf", "as_root"]


def as_root(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    """A CA that signs certificates and CRLs."""
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
    )


def as_leaf(builder: x509.CertificateBuilder, *, tsa: bool) -> x509.CertificateBuilder:
    """A seal (non-repudiation: digitalSignature alone comes back untrusted) or a TSA (critical EKU
    timeStamping)."""
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=not tsa, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
        ), critical=True)
    )
    if tsa:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder
