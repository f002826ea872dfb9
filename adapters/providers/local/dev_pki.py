"""Development PKI, generated once into ``<data_dir>/pki``: a CA, a signing certificate, a TSA
certificate and the CA's CRL. Every subject says DEVELOPMENT (untrusted): never use in production.

The certificates follow what pyHanko's validator accepts by default: the signer has
nonRepudiation; the root is a CA with keyCertSign + cRLSign; the TSA has the critical
``timeStamping`` EKU and an RSA key; lifetimes outlive the 3-year archive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from adapters._pdf.certs import as_leaf, as_root
from esign_gateway.http.openapi import PUBLIC, Media, doc

__all__ = ["DevPki", "crl_routes", "ensure_dev_pki"]

ORG = "esign-gateway DEVELOPMENT (untrusted)"


@dataclass(frozen=True, slots=True)
class DevPki:
    directory: Path
    ca_cert_path: Path
    ca_key_path: Path
    crl_path: Path
    signer_cert_path: Path
    signer_key_path: Path
    tsa_cert_path: Path
    tsa_key_path: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CZ"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _paths(directory: Path) -> DevPki:
    return DevPki(
        directory=directory,
        ca_cert_path=directory / "dev-ca.pem", ca_key_path=directory / "dev-ca.key",
        crl_path=directory / "dev-ca.crl",
        signer_cert_path=directory / "dev-signer.pem", signer_key_path=directory / "dev-signer.key",
        tsa_cert_path=directory / "dev-tsa.pem", tsa_key_path=directory / "dev-tsa.key",
    )


CRL_LIFETIME = timedelta(days=365)
CRL_RENEW_BEFORE = timedelta(days=180)


def ensure_dev_pki(directory: Path, *, crl_url: str | None = None) -> DevPki:
    """Return the development PKI in ``directory``, creating it the first time (its certificates
    point at ``crl_url`` for revocation info) and re-issuing the CRL when it nears its next update."""
    pki = _paths(directory)
    if all(p.exists() for p in (pki.ca_cert_path, pki.signer_cert_path, pki.tsa_cert_path, pki.crl_path,
                                pki.signer_key_path, pki.tsa_key_path, pki.ca_key_path)):
        _refresh_crl(pki)
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(minutes=5)

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name("esign-gateway development root CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        as_root(
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=365 * 20))
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)

    def issue(cn: str, key: rsa.RSAPrivateKey, *, tsa: bool) -> x509.Certificate:
        builder = (
            as_leaf(
                x509.CertificateBuilder()
                .subject_name(_name(cn)).issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + timedelta(days=365 * 10)),
                tsa=tsa,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(aki, critical=False)
        )
        if crl_url:
            builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(crl_url)], relative_name=None, reasons=None,
                crl_issuer=None,
            )]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer_cert = issue("esign-gateway development seal", signer_key, tsa=False)
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa_cert = issue("esign-gateway development TSA", tsa_key, tsa=True)
    pem = serialization.Encoding.PEM
    _write(pki.ca_key_path, _key_pem(ca_key), 0o600)
    _write(pki.signer_key_path, _key_pem(signer_key), 0o600)
    _write(pki.tsa_key_path, _key_pem(tsa_key), 0o600)
    _write(pki.crl_path, _crl(ca_cert, ca_key, 1, now), 0o644)
    _write(pki.signer_cert_path, signer_cert.public_bytes(pem), 0o644)
    _write(pki.tsa_cert_path, tsa_cert.public_bytes(pem), 0o644)
    _write(pki.ca_cert_path, ca_cert.public_bytes(pem), 0o644)  # last: its presence marks completion
    return pki


def _crl(ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, number: int, now: datetime) -> bytes:
    """An empty CRL (nothing revoked) of the development CA, DER."""
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject).last_update(now).next_update(now + CRL_LIFETIME)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.DER)


def _refresh_crl(pki: DevPki) -> None:
    current = x509.load_der_x509_crl(pki.crl_path.read_bytes())
    now = datetime.now(UTC)
    next_update = current.next_update_utc
    if next_update is not None and next_update - now > CRL_RENEW_BEFORE:
        return
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key_path.read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    number = current.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    _write(pki.crl_path, _crl(ca_cert, ca_key, number, now - timedelta(minutes=5)), 0o644)


def crl_routes(pki: DevPki) -> web.RouteTableDef:
    """``GET /pki/dev-ca.crl``: the development CA's CRL, where its certificates say it is."""
    routes = web.RouteTableDef()

    @routes.get("/pki/dev-ca.crl")
    @doc("Development CA's CRL", "Development", auth=PUBLIC, response=Media("application/pkix-crl", "The CRL."))
    async def crl(_: web.Request) -> web.Response:
        return web.Response(body=pki.crl_path.read_bytes(), content_type="application/pkix-crl",
                            headers={"Cache-Control": "public, max-age=3600"})

    return routes
