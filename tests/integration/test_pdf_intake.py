"""Real-world uploads: what the inspector accepts is signed for every signer, and nothing of the
original changes. Each reproducer (tests/pdf_reproducers.py) stands for a class of the shared
corpus; every check ends in tools we did not write (poppler, qpdf) or in pyHanko's validator."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from typing import Any

import pikepdf
import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import async_validate_pdf_signature

from adapters._pdf.update import UpdateIntegrityError, check_update
from adapters.providers.local import pades
from adapters.providers.local.provider import LocalProvider
from esign_gateway.errors import PdfCertifiedError
from esign_gateway.ports import PdfInfo, SignatureRequest
from tests import pdf_reproducers as repro
from tests.factories import make_pdf
from tests.pdf_tools import pdfsig, poppler_pages, poppler_text, qpdf_check

ENVELOPE_ID = "01a206aa-bcdb-750e-bbc5-e812ca10e709"


def _request(pdf: bytes, slot: int, *, final: bool) -> SignatureRequest:
    return SignatureRequest(
        pdf=pdf, envelope_id=ENVELOPE_ID, document_id="doc", signer_id=f"s{slot}",
        signer_name=f"Jana Nováková {slot}", signer_email=f"s{slot}@example.cz", field_name=f"Signature-s{slot}",
        slot=slot,
        verification="e-mail link + SMS code to +420 *** *** 456", final=final,
    )


async def _sign_for(shared_parts: dict[str, Any], pdf: bytes, signers_: int = 2) -> bytes:
    """What an envelope with ``signers_`` signers does to the prepared file: B-T, …, then B-LTA."""
    provider = shared_parts["provider"]
    for slot in range(signers_):
        pdf = (await provider.sign(_request(pdf, slot, final=slot == signers_ - 1))).pdf
    return pdf


async def _ours_valid(shared_parts: dict[str, Any], pdf: bytes, count: int) -> None:
    roots = pades.load_roots(shared_parts["material"].trust_root_paths)
    checks = [c for c in await asyncio.to_thread(pades.validate, pdf, roots) if c.field_name.startswith("Signature-s")]
    assert len(checks) == count
    for check in checks:
        assert check.intact and check.valid and check.trusted, check
        assert check.modification_level in ("NONE", "FORM_FILLING", "LTA_UPDATES"), check
    ours = [s for s in pdfsig(pdf) if s.field.startswith("Signature-s")]
    assert len(ours) == count and all(s.valid for s in ours), ours


def _text_kept(before: bytes, after: bytes) -> bool:
    """Every page's lines of ``before`` appear, in order, on the same page of ``after`` (which may
    add the stamps' lines)."""
    old, new = poppler_text(before), poppler_text(after)
    if len(old) != len(new):
        return False
    for a, b in zip(old, new, strict=True):
        remaining = iter(line.strip() for line in b.splitlines())
        wanted = [line.strip() for line in a.splitlines() if line.strip()]
        if not all(any(line == candidate for candidate in remaining) for line in wanted):
            return False
    return True


async def _accept_and_sign(shared_parts: dict[str, Any], upload: bytes) -> tuple[PdfInfo, bytes, bytes]:
    info = await shared_parts["inspector"].inspect(upload)
    base = info.prepared if info.prepared is not None else upload
    signed = await _sign_for(shared_parts, base)
    assert signed.startswith(base)
    assert poppler_pages(signed) == poppler_pages(base) == info.pages
    await _ours_valid(shared_parts, signed, 2)
    return info, base, signed


# ------------------------------------------------------------- valid files accepted (D6, D13)


async def test_contents_as_an_indirect_array_is_accepted_and_signed_as_it_is(shared_parts: dict[str, Any]) -> None:
    upload = repro.contents_indirect_array()
    info, base, signed = await _accept_and_sign(shared_parts, upload)
    assert info.prepared is None and base == upload
    assert _text_kept(upload, signed)


@pytest.mark.parametrize("prefix", [b"\xef\xbb\xbf", b"x" * 600], ids=["bom", "600-bytes"])
async def test_bytes_before_the_header_are_repaired_once_and_the_repair_is_signed(
    shared_parts: dict[str, Any], prefix: bytes
) -> None:
    upload = repro.leading_junk(prefix)
    info, base, _signed = await _accept_and_sign(shared_parts, upload)
    assert info.prepared is not None and base.startswith(b"%PDF-")
    assert "bytes before the %PDF- header" in info.repairs
    assert poppler_text(base) == poppler_text(upload)


# ------------------------------------------------------------- nothing of the original changes (D2)


async def test_signing_a_file_whose_size_is_too_small_never_reuses_its_object_numbers(
    shared_parts: dict[str, Any],
) -> None:
    upload = repro.too_small_size()  # signed as it is here (no repair): the writer alone must be right
    out = (await shared_parts["provider"].sign(_request(upload, 0, final=False))).pdf
    check_update(upload, out)
    assert poppler_pages(out) == 2
    with pikepdf.open(io.BytesIO(upload)) as before, pikepdf.open(io.BytesIO(out)) as after:
        for obj in before.objects:
            if isinstance(obj, pikepdf.Stream):
                assert after.get_object(obj.objgen).read_raw_bytes() == obj.read_raw_bytes(), obj.objgen


def test_the_integrity_check_refuses_an_update_that_overwrites_an_original_object() -> None:
    """pyHanko numbering from /Size (what the signer did before): the check must catch it."""
    upload = repro.too_small_size()
    writer = IncrementalPdfFileWriter(io.BytesIO(upload), strict=False)  # plain: numbers from /Size
    out = io.BytesIO()
    signers.sign_pdf(
        writer, signers.PdfSignatureMetadata(field_name="Overwriter"), signer=repro.foreign_pki().signer,
        new_field_spec=fields.SigFieldSpec("Overwriter", box=(10, 10, 100, 50)), output=out,
    )
    with pytest.raises(UpdateIntegrityError, match="redefined"):
        check_update(upload, out.getvalue())


def test_the_integrity_check_refuses_a_changed_prefix() -> None:
    upload = make_pdf()
    tampered = upload.replace(b"/MediaBox", b"/MediaBoy", 1) + b"\n"
    with pytest.raises(UpdateIntegrityError, match="prefix"):
        check_update(upload, tampered)


async def test_a_file_with_a_too_small_size_is_repaired_at_upload_and_keeps_both_pages(
    shared_parts: dict[str, Any],
) -> None:
    upload = repro.too_small_size()
    info, base, signed = await _accept_and_sign(shared_parts, upload)
    assert info.prepared is not None and any("/Size" in r for r in info.repairs)
    assert qpdf_check(base)[0] == 0
    assert _text_kept(upload, signed)


# ------------------------------------------------------------- signed elsewhere (D1, D7, D14)


async def test_a_foreign_b_lta_file_takes_our_signatures_and_its_own_stay_valid(shared_parts: dict[str, Any]) -> None:
    upload = repro.document_timestamped()
    info, base, signed = await _accept_and_sign(shared_parts, upload)
    assert info.prepared is None and base == upload  # a signed file is never rewritten
    valid_before = [s.field for s in pdfsig(upload) if s.valid]
    assert valid_before  # poppler checks the signature; it does not verify document timestamps
    assert [s.field for s in pdfsig(signed) if s.valid and s.field in valid_before] == valid_before
    reader = PdfFileReader(io.BytesIO(signed))
    theirs = next(s for s in reader.embedded_regular_signatures if s.field_name == "Podpis-protistrana")
    status = await async_validate_pdf_signature(theirs, repro.foreign_pki().validation_context())
    assert status.intact and status.valid and status.trusted
    assert status.modification_level is not None and status.modification_level.name != "OTHER"


async def test_a_damaged_earlier_signature_does_not_stop_ours(shared_parts: dict[str, Any]) -> None:
    upload = repro.broken_earlier_signature()
    info, base, _signed = await _accept_and_sign(shared_parts, upload)
    assert info.prepared is None and base == upload


async def test_a_file_certified_against_any_change_is_refused_as_pdf_certified(shared_parts: dict[str, Any]) -> None:
    with pytest.raises(PdfCertifiedError, match="certified"):
        await shared_parts["inspector"].inspect(repro.certified_no_changes())


async def test_a_file_certified_for_form_filling_only_is_refused_as_pdf_certified(
    shared_parts: dict[str, Any],
) -> None:
    with pytest.raises(PdfCertifiedError, match="form"):
        await shared_parts["inspector"].inspect(repro.certified_form_filling())


# ------------------------------------------------------------- form values stay visible (D9)


async def test_filled_form_values_stay_visible_through_every_signature(shared_parts: dict[str, Any]) -> None:
    """The values have no appearance streams of their own: /NeedAppearances must survive signing."""
    upload = repro.need_appearances()
    info, base, signed = await _accept_and_sign(shared_parts, upload)
    assert info.prepared is None and base == upload
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        assert bool(pdf.Root.AcroForm.get("/NeedAppearances")) is True
        assert [str(f.V) for f in pdf.Root.AcroForm.Fields if "/V" in f and f.get("/FT") == "/Tx"]


async def test_need_appearances_survives_a_repair_and_the_signatures_on_it(shared_parts: dict[str, Any]) -> None:
    upload = b"\xef\xbb\xbf" + repro.need_appearances()  # a form saved with a BOM: repaired first
    info, base, signed = await _accept_and_sign(shared_parts, upload)
    assert info.prepared is not None and base != upload
    for pdf in (base, signed):
        with pikepdf.open(io.BytesIO(pdf)) as doc:
            assert bool(doc.Root.AcroForm.get("/NeedAppearances")) is True


# ------------------------------------------------------------- structures pyHanko refuses (D7, D10)


@pytest.mark.parametrize("build", [
    repro.direct_annotations, repro.direct_page_kids, repro.circular_form_tree, repro.annotations_null,
    repro.fields_with_non_dict_entries,
], ids=lambda f: f.__name__)
async def test_a_structurally_odd_unsigned_file_is_repaired_and_then_signed(
    shared_parts: dict[str, Any], build: Any
) -> None:
    upload = build()
    info, base, signed = await _accept_and_sign(shared_parts, upload)
    assert info.prepared is not None and info.repairs
    assert _text_kept(base, signed)


async def test_a_compressed_bomb_in_metadata_or_a_form_field_is_never_inflated(shared_parts: dict[str, Any]) -> None:
    for upload in (repro.xmp_bomb(256 << 20), repro.form_field_bomb(256 << 20)):
        _info, base, _signed = await _accept_and_sign(shared_parts, upload)
        assert base == upload


# ------------------------------------------------------------- pyHanko's validator on malformed originals (D11)


def _with_catalog_entry(pdf: bytes, key: str, value: Any) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    writer.root[key] = value(writer) if callable(value) else value
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_pyhanko_validates_our_signature_over_a_dangling_reference(shared_parts: dict[str, Any]) -> None:
    """ISO 32000-1 §7.3.10: a reference to a missing object is null. pyHanko's diff analysis raised
    KeyError on it (adapters/_pdf/validation_fix.py); pdfsig always said valid."""
    upload = _with_catalog_entry(make_pdf(), "/PieceInfo", lambda w: generic.IndirectObject(999, 0, w))
    signed = await _sign_for(shared_parts, upload)
    await _ours_valid(shared_parts, signed, 2)


async def test_pyhanko_validates_our_signature_over_metadata_that_is_not_xmp(shared_parts: dict[str, Any]) -> None:
    """The catalog's /Metadata is a stream of plain text that no revision touches: pyHanko's
    metadata rule called every later signature modified (adapters/_pdf/validation_fix.py)."""

    def stream(writer: IncrementalPdfFileWriter) -> generic.IndirectObject:
        return writer.add_object(generic.StreamObject(
            {generic.pdf_name("/Type"): generic.pdf_name("/Metadata"),
             generic.pdf_name("/Subtype"): generic.pdf_name("/XML")}, stream_data=b"not XMP at all"))

    upload = _with_catalog_entry(make_pdf(), "/Metadata", stream)
    signed = await _sign_for(shared_parts, upload)
    await _ours_valid(shared_parts, signed, 2)
    assert signed.count(b"not XMP at all") == 1  # the original's metadata is left as it was


async def test_a_foreign_b_lta_file_is_signed_in_the_production_configuration_too(
    shared_parts: dict[str, Any],
) -> None:
    """Production signs with revocation fetching on (real CAs publish CRL/OCSP URLs): the other
    party's timestamp chain is still not a precondition, whatever fetching finds or fails to find."""
    production_like = dataclasses.replace(shared_parts["material"], fetch_revocation=True)
    provider = LocalProvider(production_like, max_workers=1)
    await provider.start()
    try:
        upload = repro.document_timestamped()
        signed = (await provider.sign(_request(upload, 0, final=True))).pdf
    finally:
        await provider.close()
    check_update(upload, signed)
    await _ours_valid(shared_parts, signed, 1)


async def test_an_update_that_drops_an_entry_of_the_catalog_in_place_is_caught(monkeypatch: Any) -> None:
    """pyHanko edits the original's objects in place in its reader's cache: the check must read the
    original afresh, or a removed entry would look as if it had never been there."""
    from pyhanko.sign.signers import cms_embedder

    from adapters._pdf.signature import add_signature
    from adapters._pdf.trial import TrialIdentity, _spec

    upload = _with_catalog_entry(make_pdf(), "/Lang", generic.TextStringObject("cs-CZ"))
    keep = cms_embedder.ensure_sig_flags

    def and_drop_the_language(writer: Any, lock_sig_flags: bool = True) -> None:
        keep(writer=writer, lock_sig_flags=lock_sig_flags)
        del writer.root["/Lang"]
        writer.update_root()

    monkeypatch.setattr(cms_embedder, "ensure_sig_flags", and_drop_the_language)
    identity = await asyncio.to_thread(TrialIdentity.create)
    with pytest.raises(UpdateIntegrityError, match="/Lang was removed"):
        await add_signature(upload, _spec(0, None), signer=identity.signer, timestamper=identity.timestamper,
                            font=identity.font)


def _update(upload: bytes, edit: Any) -> bytes:
    """``upload`` plus one incremental revision made by ``edit(writer)``."""
    writer = IncrementalPdfFileWriter(io.BytesIO(upload), strict=False)
    edit(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_the_integrity_check_lets_only_an_empty_signature_field_take_a_value_and_an_appearance() -> None:
    from tests.factories import with_empty_signature_fields

    upload = with_empty_signature_fields(("Objednatel",), appearance=True)

    def fill(writer: Any, key: str) -> None:
        widget = writer.root["/AcroForm"]["/Fields"][0]
        widget[generic.pdf_name(key)] = generic.DictionaryObject()
        writer.update_container(widget)

    check_update(upload, _update(upload, lambda w: fill(w, "/AP")))  # what signing that field does
    with pytest.raises(UpdateIntegrityError, match="/Rect was changed"):
        check_update(upload, _update(upload, lambda w: fill(w, "/Rect")))
    signed_field = repro.signed_by_foreign_ca()  # a field that already holds a signature

    def restyle(writer: Any) -> None:
        field = writer.root["/AcroForm"]["/Fields"][0]
        field[generic.pdf_name("/V")] = generic.NullObject()
        writer.update_container(field)

    with pytest.raises(UpdateIntegrityError, match="/V was changed"):
        check_update(signed_field, _update(signed_field, restyle))
