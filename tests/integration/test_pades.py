"""Real PAdES signatures through LocalProvider's process pool, validated by pyHanko."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.timestamps import HTTPTimeStamper
from pypdf import PdfReader

from adapters.providers.local import pades
from adapters.providers.local.dev_pki import ensure_dev_pki
from adapters.providers.local.tsa import DevTimeStamper, tsa_routes
from esign_gateway.ports import SignatureRequest
from tests.factories import make_pdf

ENVELOPE_ID = "01a206aa-bcdb-750e-bbc5-e812ca10e709"


def _request(pdf: bytes, name: str, slot: int, language: str = "cs") -> SignatureRequest:
    return SignatureRequest(
        pdf=pdf, envelope_id=ENVELOPE_ID, document_id="doc", signer_id=f"s{slot}", signer_name=name,
        signer_email=f"s{slot}@example.cz", field_name=f"Signature-s{slot}", slot=slot,
        verification="e-mail link + SMS code to +420 *** *** 456", language=language,
    )


def stamp_texts(pdf: bytes) -> list[str]:
    """Text extraction (pypdf, through the fonts' ToUnicode maps) of every signature stamp."""
    reader = PdfReader(io.BytesIO(pdf))
    texts = []
    for page in reader.pages:
        for annot in page.get("/Annots", []):
            annot = annot.get_object()
            if annot.get("/FT") == "/Sig" and "/AP" in annot:
                texts.append(page.extract_xform_text(annot["/AP"]["/N"].get_object(), (0, 90, 180, 270), 200.0))
    return texts


async def _validate(pdf: bytes, material: Any) -> list[pades.SignatureCheck]:
    return await asyncio.to_thread(pades.validate, pdf, pades.load_roots(material.trust_root_paths))


async def test_czech_and_slovak_names_render_correctly_in_the_stamp(shared_parts: dict[str, Any]) -> None:
    provider = shared_parts["provider"]
    pdf = make_pdf(pages=2)
    for slot, name in enumerate(["Jana Nováková", "Petr Šťastný", "Ľubomír Ďurica"]):
        pdf = (await provider.sign(_request(pdf, name, slot))).pdf
    texts = stamp_texts(pdf)
    assert len(texts) == 3
    for text, name in zip(texts, ["Jana Nováková", "Petr Šťastný", "Ľubomír Ďurica"], strict=True):
        assert name in text
        assert ENVELOPE_ID in text
        assert "Elektronicky podepsáno" in text


async def test_second_signature_is_incremental_and_both_validate(shared_parts: dict[str, Any]) -> None:
    provider = shared_parts["provider"]
    original = make_pdf(pages=3)
    first = await provider.sign(_request(original, "Jana Nováková", 0))
    second = await provider.sign(_request(first.pdf, "Petr Šťastný", 1, language="en"))
    assert second.pdf.startswith(first.pdf)  # an incremental update: earlier bytes untouched
    assert first.timestamp is not None and second.timestamp is not None
    checks = await _validate(second.pdf, shared_parts["material"])
    assert [c.signer_name for c in checks] == ["Jana Nováková", "Petr Šťastný"]
    for c in checks:
        assert c.intact and c.valid and c.trusted and c.bottom_line
        assert c.timestamp is not None
    assert checks[0].modification_level == "FORM_FILLING"  # the later signature is allowed form filling
    assert checks[1].coverage == "ENTIRE_FILE"
    reader = PdfFileReader(io.BytesIO(second.pdf))
    sig = reader.embedded_signatures[0].sig_object
    assert "e-mail link + SMS code" in str(sig["/Reason"])


async def test_flipped_byte_in_signed_range_fails_validation(shared_parts: dict[str, Any]) -> None:
    signed = (await shared_parts["provider"].sign(_request(make_pdf(), "Jana Nováková", 0))).pdf
    tampered = bytearray(signed)
    tampered[200] ^= 0x20
    checks = await _validate(bytes(tampered), shared_parts["material"])
    assert not checks[0].intact and not checks[0].bottom_line


def test_dev_pki_is_generated_once(tmp_path: Any) -> None:
    first = ensure_dev_pki(tmp_path)
    cert = first.signer_cert_path.read_bytes()
    second = ensure_dev_pki(tmp_path)
    assert second.signer_cert_path.read_bytes() == cert
    assert oct(first.signer_key_path.stat().st_mode & 0o777) == "0o600"
    assert b"DEVELOPMENT" in first.ca_cert_path.read_bytes() or "DEVELOPMENT" in _subject(first.ca_cert_path)


def _subject(path: Any) -> str:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).subject.rfc4514_string()


async def test_builtin_tsa_serves_rfc3161_over_http(aiohttp_server: Any, shared_parts: dict[str, Any]) -> None:
    from aiohttp import web

    material = shared_parts["material"]
    app = web.Application()
    app.router.add_routes(tsa_routes(DevTimeStamper.from_files(material.dev_tsa_cert_path, material.dev_tsa_key_path)))
    server = await aiohttp_server(app)
    client = HTTPTimeStamper(str(server.make_url("/tsa")))
    token = await client.async_timestamp(b"\x00" * 32, "sha256")
    tst = token["content"]["encap_content_info"]["content"].parsed
    assert tst["message_imprint"]["hashed_message"].native == b"\x00" * 32
    async with __import__("aiohttp").ClientSession() as http:
        bad = await http.post(str(server.make_url("/tsa")), data=b"junk",
                              headers={"Content-Type": "application/timestamp-query"})
        assert bad.status == 400


@pytest.mark.parametrize("language", ["cs", "sk", "en"])
async def test_stamp_language(shared_parts: dict[str, Any], language: str) -> None:
    signed = (await shared_parts["provider"].sign(_request(make_pdf(), "Ľubomír Ďurica", 0, language))).pdf
    words = {"cs": "Elektronicky podepsáno", "sk": "Elektronicky podpísané", "en": "Signed electronically by"}
    assert words[language] in stamp_texts(signed)[0]


async def test_stamp_font_widths_are_in_pdf_text_units_so_viewers_do_not_space_letters_out(
    shared_parts: dict[str, Any]
) -> None:
    """pyHanko writes a TrueType font's raw advance widths into /W, which PDF reads as 1/1000 em:
    the stamp font is therefore scaled to 1000 units per em (DejaVu ships 2048; with it, poppler and
    pdf.js draw 'E l e k t r o n i c k y' running out of the stamp box)."""
    pdf = (await shared_parts["provider"].sign(_request(make_pdf(), "Jana Nováková", 0))).pdf
    reader = PdfReader(io.BytesIO(pdf))
    widths: list[float] = []
    for page in reader.pages:
        for annot in page.get("/Annots", []):
            ap = annot.get_object()["/AP"]["/N"].get_object()
            for font in ap["/Resources"]["/Font"].values():
                for descendant in font.get_object().get("/DescendantFonts", []):
                    for entry in descendant.get_object()["/W"]:
                        if isinstance(entry, list):
                            widths.extend(float(w) for w in entry)
    assert widths and max(widths) <= 1000 and min(widths) > 200


def test_the_signer_keeps_its_parsed_key(shared_parts: dict[str, Any]) -> None:
    """pyHanko's loaders return a plain SimpleSigner, which re-parses its RSA key (~36 ms) for every
    signature: the worker must hold our key-caching signer instead."""
    pades.init_worker(shared_parts["material"])
    assert pades._state is not None and isinstance(pades._state.signer, pades._CachedKeySigner)
    first = pades._state.signer.sign_raw(b"x", "sha256")
    assert pades._state.signer._pyca_key is not None and pades._state.signer.sign_raw(b"x", "sha256") == first


async def test_the_stamp_embeds_the_prepared_stamp_font_whole(shared_parts: dict[str, Any]) -> None:
    """The stamp font is a ready subset of DejaVu Sans, embedded as it is (not re-subset per
    signature, ~30 ms each): the embedded program is that file, byte for byte, for every signer."""
    pdf = make_pdf()
    for slot, name in enumerate(["Jana Nováková", "Ľubomír Ďurica"]):
        pdf = (await shared_parts["provider"].sign(_request(pdf, name, slot))).pdf
    reader = PdfReader(io.BytesIO(pdf))
    programs = []
    for annot in reader.pages[-1]["/Annots"]:
        ap = annot.get_object()["/AP"]["/N"].get_object()
        for font in ap["/Resources"]["/Font"].values():
            for descendant in font.get_object()["/DescendantFonts"]:
                descriptor = descendant.get_object()["/FontDescriptor"].get_object()
                programs.append(descriptor["/FontFile2"].get_object().get_data())
    assert programs == [pades.FONT_PATH.read_bytes()] * 2


@pytest.mark.parametrize("damage", ["container headers", "signer certificate"])
async def test_a_corrupted_signature_container_is_reported_invalid_not_raised(
    shared_parts: dict[str, Any], damage: str,
) -> None:
    pdf = (await shared_parts["provider"].sign(_request(make_pdf(), "Jana Nováková", 0))).pdf
    if damage == "container headers":  # the container cannot even be parsed
        at = pdf.rindex(b"/Contents <") + len(b"/Contents <")
    else:  # it parses, but the signer's certificate inside is garbage (found by its own bytes)
        cert = load_cert_from_pemder(str(shared_parts["material"].cert_pem_path)).dump().hex().encode()
        at = pdf.lower().rindex(cert) + len(cert) // 2
    broken = bytearray(pdf)
    broken[at:at + 40] = b"0" * 40
    checks = await _validate(bytes(broken), shared_parts["material"])
    assert len(checks) == 1 and not checks[0].intact and not checks[0].valid and not checks[0].bottom_line
    assert checks[0].field_name == "Signature-s0"


def test_the_validation_context_is_reused_for_five_minutes_then_made_anew(shared_parts: dict[str, Any]) -> None:
    """It validates at the moment it was made and holds the CRLs it read: never older than the TTL."""
    pades.init_worker(shared_parts["material"])
    first = pades._validation_context()
    assert pades._validation_context() is first
    pades._context = (time.monotonic() - pades.CONTEXT_TTL_SECONDS - 1, first)
    fresh = pades._validation_context()
    assert fresh is not first and fresh.moment > first.moment
