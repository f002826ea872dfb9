"""B-LTA: the last signature brings the validation data and a document timestamp; the file
validates by ETSI EN 319 102-1 (pyHanko's AdES engine, revocation info required, nothing fetched)
today and, simulated, 3 years from now; renewal adds a timestamp and keeps it so."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from pyhanko.pdf_utils.reader import PdfFileReader

from adapters.providers.local import pades
from esign_gateway.ports import SignatureRequest
from tests.factories import make_pdf, signature_kinds

THREE_YEARS = timedelta(days=3 * 366)


def _request(pdf: bytes, name: str, slot: int, *, final: bool) -> SignatureRequest:
    return SignatureRequest(
        pdf=pdf, envelope_id="01a206aa-bcdb-750e-bbc5-e812ca10e709", document_id="doc", signer_id=f"s{slot}",
        signer_name=name, signer_email=f"s{slot}@example.cz", field_name=f"Signature-s{slot}", slot=slot,
        verification="e-mail link + SMS code", final=final,
    )


async def _two_signers(provider: Any) -> bytes:
    pdf = (await provider.sign(_request(make_pdf(pages=3), "Jana Nováková", 0, final=False))).pdf
    return (await provider.sign(_request(pdf, "Ľubo Kováč", 1, final=True))).pdf


async def _long_term(pdf: bytes, material: Any, future: datetime) -> list[pades.LongTermCheck]:
    return await asyncio.to_thread(pades.long_term_check, pdf, pades.load_roots(material.trust_root_paths), future)


async def test_completed_pdf_is_b_lta_and_validates_now_and_in_three_years(shared_parts: dict[str, Any]) -> None:
    provider, material = shared_parts["provider"], shared_parts["material"]
    pdf = await _two_signers(provider)
    assert signature_kinds(pdf) == ["/Sig", "/Sig", "/DocTimeStamp"]
    reader = PdfFileReader(io.BytesIO(pdf))
    dss = reader.root["/DSS"]
    assert len(dss["/Certs"]) >= 3 and len(dss["/CRLs"]) >= 1  # signer, TSA, CA; the CA's CRL

    roots = pades.load_roots(material.trust_root_paths)
    checks = await asyncio.to_thread(pades.validate, pdf, roots)
    assert [(c.intact, c.valid, c.trusted) for c in checks] == [(True, True, True)] * 2
    assert await asyncio.to_thread(pades.validate_timestamps, pdf, roots) == [True]

    results = await _long_term(pdf, material, datetime.now(UTC) + THREE_YEARS)
    assert [(r.now, r.future, r.bottom_line) for r in results] == [("OK", "OK", True)] * 2


async def test_one_flipped_byte_fails_the_long_term_validation(shared_parts: dict[str, Any]) -> None:
    provider, material = shared_parts["provider"], shared_parts["material"]
    pdf = bytearray(await _two_signers(provider))
    target = pdf.find(b"stream\n") + 40  # inside the first page content: covered by every signature
    assert 40 < target < len(make_pdf(pages=3)) // 2
    pdf[target] ^= 0x01
    results = await _long_term(bytes(pdf), material, datetime.now(UTC) + THREE_YEARS)
    assert results and all(not r.bottom_line and r.now != "OK" for r in results)


async def test_renewal_adds_a_document_timestamp_and_everything_still_validates(
    shared_parts: dict[str, Any]
) -> None:
    provider, material = shared_parts["provider"], shared_parts["material"]
    pdf = await _two_signers(provider)
    tsa_cert = x509.load_pem_x509_certificate(material.dev_tsa_cert_path.read_bytes())
    assert await provider.timestamp_expiry(pdf) == tsa_cert.not_valid_after_utc.replace(microsecond=0)

    renewed = (await provider.renew(pdf)).pdf
    assert renewed.startswith(pdf)  # an incremental update: the old bytes are untouched
    assert signature_kinds(renewed) == ["/Sig", "/Sig", "/DocTimeStamp", "/DocTimeStamp"]
    roots = pades.load_roots(material.trust_root_paths)
    assert await asyncio.to_thread(pades.validate_timestamps, renewed, roots) == [True, True]
    results = await _long_term(renewed, material, datetime.now(UTC) + THREE_YEARS)
    assert all(r.bottom_line for r in results)


async def test_dev_ca_crl_is_served_where_the_certificates_point(shared_parts: dict[str, Any]) -> None:
    material = shared_parts["material"]
    cert = x509.load_pem_x509_certificate(material.cert_pem_path.read_bytes())
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value.endswith("/pki/dev-ca.crl")
    crl = x509.load_der_x509_crl(material.crl_paths[0].read_bytes())
    assert crl.issuer == cert.issuer and crl.next_update_utc > datetime.now(UTC) + timedelta(days=180)
