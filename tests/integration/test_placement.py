"""Automatic stamps on the pages that broke them: rotated, cropped, reversed, tiny, dark, full, and
signed elsewhere. Each file goes through the real inspector (placement at upload) and the real
signer; the checks are poppler's: word boxes (``pdftotext -bbox -cropbox``, the displayed page) and
renders (``pdftoppm -cropbox``)."""

from __future__ import annotations

import asyncio
import io
import statistics
from collections.abc import Callable
from typing import Any

import pikepdf
import pytest
from pyhanko.sign import fields, signers
from reportlab.pdfgen import canvas

from adapters.providers.local.pades import load_roots, validate
from esign_gateway.errors import PdfCertifiedError, ValidationFailedError
from esign_gateway.ports import FieldRequest, PdfInfo, PlacementRequest, SignatureRequest
from tests import pdf_reproducers as repro
from tests.factories import LOREM, _font, czech_contract, make_pdf, page_fill, with_empty_signature_fields
from tests.pdf_tools import Word, poppler_pages, poppler_render, poppler_words

ENVELOPE_ID = "01a206aa-bcdb-750e-bbc5-e812ca10e709"
NAMES = ("Jana Nováková", "Petr Šťastný", "Ľubomír Ďurica")


def _request(names: tuple[str, ...], fields_: tuple[FieldRequest | None, ...] | None = None) -> PlacementRequest:
    return PlacementRequest(envelope_id=ENVELOPE_ID, envelope_name="Smlouva o dílo 2026/042",
                            document_name="smlouva.pdf", language="cs", signers=names,
                            fields=fields_ or tuple(None for _ in names))


async def _place_and_sign(shared_parts: dict[str, Any], upload: bytes, names: tuple[str, ...]) -> tuple[PdfInfo, bytes]:
    info = await shared_parts["inspector"].inspect(upload, _request(names))
    pdf = info.prepared if info.prepared is not None else upload
    for i, name in enumerate(names):
        pdf = (await shared_parts["provider"].sign(SignatureRequest(
            pdf=pdf, envelope_id=ENVELOPE_ID, document_id="doc", signer_id=f"s{i}", signer_name=name,
            signer_email=f"s{i}@example.cz", field_name=f"Signature-s{i}", slot=i, verification="SMS",
            final=i == len(names) - 1, placement=info.placements[i],
        ))).pdf
    return info, pdf


def _displayed_size(pdf: bytes, page: int) -> tuple[float, float]:
    """Width and height of the displayed page, from poppler's render at 72 dpi (1 px = 1 pt)."""
    parts = poppler_render(pdf, page, 72).split(maxsplit=3)
    return float(parts[1]), float(parts[2])


def _stamp_words(words: list[Word], name: str) -> list[Word]:
    """The stamp's lines, top to bottom, found around the signer's name."""
    (line,) = [w for w in words if w.text == name]
    return [w for w in words if abs(w.x0 - line.x0) < 1 and abs(w.y0 - line.y0) < 40]


def _assert_stamps_good(upload: bytes, signed: bytes, info: PdfInfo, names: tuple[str, ...]) -> None:
    """Each of these signers' stamps (the first ``len(names)``): on the displayed page, upright,
    readable, over none of the page's words and over a light background."""
    for name, place in zip(names, info.placements[:len(names)], strict=True):
        page = place.page + 1
        words = poppler_words(signed, page)
        lines = _stamp_words(words, name)
        assert len(lines) == 5, (name, lines)  # signed by / name / time / "ID obálky:" / the ID
        width, height = _displayed_size(signed, page)
        for w in lines:
            assert w.x0 >= 0 and w.x1 <= width + 1 and w.y0 >= 0 and w.y1 <= height + 1, (name, w, width, height)
            assert w.x1 - w.x0 > w.y1 - w.y0  # horizontal on the displayed page
        assert [w.y0 for w in lines] == sorted(w.y0 for w in lines)  # in reading order: not upside down
        assert lines[0].text.startswith("Elektronicky") and lines[-1].text == ENVELOPE_ID
        x0, y0 = min(w.x0 for w in lines), min(w.y0 for w in lines)
        x1, y1 = max(w.x1 for w in lines), max(w.y1 for w in lines)
        if page <= poppler_pages(upload):
            over = [w for w in poppler_words(upload, page) if w.meets((x0, y0, x1 - x0, y1 - y0))]
            assert not over, (name, over)
        pgm = poppler_render(signed, page, 72)
        header, pixels = pgm.split(maxsplit=3), pgm.split(maxsplit=4)[4]
        row = int(header[1])
        box = [pixels[y * row + x] for y in range(int(y0), int(y1)) for x in range(int(x0), int(x1))]
        assert statistics.median(box) > 200, name  # light under the text, on any page


def _pikepdf(pdf: bytes, edit: Callable[[pikepdf.Pdf], None]) -> bytes:
    doc = pikepdf.open(io.BytesIO(pdf))
    edit(doc)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def _set(key: str, value: Any) -> Callable[[pikepdf.Pdf], None]:
    def edit(doc: pikepdf.Pdf) -> None:
        for page in doc.pages:
            page.obj[key] = value

    return edit


def _dark_page() -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(595, 842))
    c.setFillGray(0.1)
    c.rect(0, 0, 595, 842, fill=1, stroke=0)
    c.setFillGray(1)
    c.setFont(_font(), 10)
    for line in range(20):
        c.drawString(56, 780 - line * 12, f"{line + 1}. {LOREM}")
    c.showPage()
    c.save()
    return buf.getvalue()


def _tiny_page() -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(200, 150))
    c.setFont(_font(), 6)
    c.drawString(8, 135, "Stvrzenka č. 42")
    c.showPage()
    c.save()
    return buf.getvalue()


def _faint_footer() -> bytes:
    """Light grey small print along the bottom of the page (as footers often are): faint in a render."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(595, 842))
    c.setFont(_font(), 10)
    c.drawString(56, 780, "Smlouva o dílo")
    c.setFillGray(0.88)
    c.setFont(_font(), 6)
    for line in range(8):
        c.drawString(30, 30 + line * 9, f"{LOREM} {LOREM}"[:140])
    c.showPage()
    c.save()
    return buf.getvalue()


PAGES: dict[str, Callable[[], bytes]] = {
    "rotate-90": lambda: _pikepdf(make_pdf(), _set("/Rotate", 90)),
    "rotate-180": lambda: _pikepdf(make_pdf(), _set("/Rotate", 180)),
    "rotate-270": lambda: _pikepdf(make_pdf(), _set("/Rotate", -90)),
    "cropbox-inside": lambda: _pikepdf(make_pdf(), _set("/CropBox", pikepdf.Array([40, 20, 560, 600]))),
    "cropbox-rotated": lambda: _pikepdf(make_pdf(), lambda d: (_set("/CropBox", pikepdf.Array([40, 20, 560, 600]))(d),
                                                              _set("/Rotate", 270)(d))),
    "mediabox-reversed": lambda: _pikepdf(make_pdf(), _set("/MediaBox", pikepdf.Array([595, 842, 0, 0]))),
    "mediabox-offset": lambda: _pikepdf(make_pdf(), _set("/MediaBox", pikepdf.Array([-300, -400, 295, 442]))),
    "dark-page": _dark_page,
    "tiny-page": _tiny_page,
    "faint-footer": _faint_footer,
}


@pytest.mark.parametrize("kind", sorted(PAGES))
async def test_automatic_stamps_are_visible_upright_and_over_nothing(shared_parts: dict[str, Any], kind: str) -> None:
    upload = PAGES[kind]()
    info, signed = await _place_and_sign(shared_parts, upload, NAMES)
    _assert_stamps_good(upload, signed, info, NAMES)


async def test_a_tiny_page_that_cannot_hold_three_stamps_gets_a_signature_page(shared_parts: dict[str, Any]) -> None:
    upload = _tiny_page()
    info, signed = await _place_and_sign(shared_parts, upload, NAMES)
    assert info.signature_page and info.pages == 2
    assert {p.page for p in info.placements} == {1}
    assert poppler_render(signed, 1, 72) == poppler_render(upload, 1, 72)


async def test_ten_signers_all_fit_on_the_signature_page(shared_parts: dict[str, Any]) -> None:
    names = tuple(f"Signatář Číslo{i}" for i in range(1, 11))
    upload = page_fill(pages=1)
    info = await shared_parts["inspector"].inspect(upload, _request(names))
    assert info.signature_page and {p.page for p in info.placements} == {1}
    for i, a in enumerate(info.placements):
        assert a.x >= 0 and a.x + a.width <= 595 and a.y >= 0 and a.y + a.height <= 842
        for b in info.placements[i + 1:]:
            assert a.x + a.width <= b.x or b.x + b.width <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y


def _signed_elsewhere(pdf: bytes) -> bytes:
    meta = signers.PdfSignatureMetadata(field_name="Podpis-protistrana", subfilter=fields.SigSeedSubFilter.PADES,
                                        name="Petr Cizinec", md_algorithm="sha256")
    return repro._foreign_sign(pdf, meta)


async def test_a_file_signed_elsewhere_with_a_full_last_page_is_stamped_on_an_earlier_page(
    shared_parts: dict[str, Any]
) -> None:
    # page 2 is full (signed in a thread: pyHanko's signer runs its own event loop)
    upload = await asyncio.to_thread(_signed_elsewhere, czech_contract(pages=2, label_page=1, full_pages=True))
    info, signed = await _place_and_sign(shared_parts, upload, NAMES[:1])
    assert not info.signature_page and info.prepared is None
    assert info.placements[0].page == 0
    assert signed.startswith(upload)
    _assert_stamps_good(upload, signed, info, NAMES[:1])
    roots = load_roots(shared_parts["material"].trust_root_paths)
    checks = {c.field_name: c for c in await asyncio.to_thread(validate, signed, roots)}
    assert checks["Podpis-protistrana"].intact and checks["Podpis-protistrana"].valid  # theirs still holds


async def test_a_file_signed_elsewhere_without_any_room_needs_a_place_from_the_sender(
    shared_parts: dict[str, Any]
) -> None:
    upload = await asyncio.to_thread(_signed_elsewhere, page_fill(pages=1))
    with pytest.raises(ValidationFailedError) as caught:
        await shared_parts["inspector"].inspect(upload, _request(NAMES[:1]))
    assert caught.value.errors == [{"field": "signers[0].fields", "message": caught.value.errors[0]["message"]}]
    assert "signed elsewhere" in caught.value.errors[0]["message"]
    info = await shared_parts["inspector"].inspect(upload, _request(NAMES[:1], (FieldRequest(
        path="signers[0].fields[0]", page=1, x=300, y=700),)))
    assert (info.placements[0].source, info.placements[0].page) == ("coordinates", 0)


def _with_text(text: str) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(595, 842))
    c.setFont(_font(), 11)
    c.drawString(56, 700, "Úvodní ustanovení")
    c.drawString(56, 400, text)
    c.showPage()
    c.save()
    return buf.getvalue()


@pytest.mark.parametrize(("printed", "anchor"), [
    ("Podpis za ﬁrmu:", "Podpis za firmu:"),  # a ligature glyph (U+FB01) in the PDF's text
    ("Podpis objedna\u0301vajícího:", "Podpis objednávajícího:"),  # a decomposed á in the PDF
    ("Podpis  objednatele :", "Podpis objednatele:"),  # other spacing
])
async def test_anchors_are_found_through_ligatures_diacritics_and_spacing(
    shared_parts: dict[str, Any], printed: str, anchor: str
) -> None:
    upload = _with_text(printed)
    info = await shared_parts["inspector"].inspect(upload, _request(NAMES[:1], (FieldRequest(
        path="signers[0].fields[0]", anchor=anchor),)))
    (place,) = info.placements
    (label,) = [w for w in poppler_words(upload, 1) if w.text.startswith("Podpis")]
    assert place.source == "anchor" and abs(place.x - label.x0) < 3 and label.y1 < place.y < label.y1 + 12


async def test_the_last_occurrence_of_an_anchor_is_taken_when_asked(shared_parts: dict[str, Any]) -> None:
    upload = czech_contract(pages=3, label_page=3, label="Podpis objednatele:", full_pages=False)
    request = _request(NAMES[:1], (FieldRequest(path="signers[0].fields[0]", anchor="Smlouva o dílo", occurrence=-1),))
    info = await shared_parts["inspector"].inspect(upload, request)
    assert info.placements[0].page == 2
    with pytest.raises(ValidationFailedError) as caught:
        await shared_parts["inspector"].inspect(upload, _request(NAMES[:1], (FieldRequest(
            path="signers[0].fields[0]", anchor="Smlouva o dílo", occurrence=4),)))
    assert caught.value.errors[0]["field"] == "signers[0].fields[0].occurrence"


def _certified_with_an_empty_field() -> bytes:
    """An author's certification "form filling and signing only" (DocMDP P=2) over a contract that
    has one empty signature field for the customer: signing that field is allowed, a new one is not."""
    meta = signers.PdfSignatureMetadata(
        field_name="Certifikace", subfilter=fields.SigSeedSubFilter.PADES, name="Petr Cizinec",
        md_algorithm="sha256", certify=True, docmdp_permissions=fields.MDPPerm.FILL_FORMS,
    )
    return repro._foreign_sign(with_empty_signature_fields(("Objednatel",)), meta)


async def test_a_certified_file_is_signed_in_its_own_empty_field_and_refused_when_a_new_one_is_needed(
    shared_parts: dict[str, Any]
) -> None:
    upload = await asyncio.to_thread(_certified_with_an_empty_field)
    info, signed = await _place_and_sign(shared_parts, upload, NAMES[:1])
    assert (info.placements[0].source, info.placements[0].field_name) == ("form_field", "Objednatel")
    checks = {c.field_name: c for c in await asyncio.to_thread(
        validate, signed, load_roots(shared_parts["material"].trust_root_paths))}
    assert checks["Objednatel"].bottom_line
    assert checks["Certifikace"].intact and checks["Certifikace"].modification_level != "OTHER"
    # a second signer would need a new field, which the certification forbids: refused now, not after the SMS
    with pytest.raises(PdfCertifiedError):
        await shared_parts["inspector"].inspect(upload, _request(NAMES[:2]))


async def test_an_empty_signature_field_drawn_over_the_text_is_not_used(shared_parts: dict[str, Any]) -> None:
    def over_text(doc: pikepdf.Pdf) -> None:
        doc.Root.AcroForm.Fields[0].Rect = pikepdf.Array([60, 700, 260, 760])  # over "Článek 3 …"

    upload = _pikepdf(with_empty_signature_fields(("Objednatel",)), over_text)
    info, signed = await _place_and_sign(shared_parts, upload, NAMES[:1])
    assert info.placements[0].source == "automatic"
    _assert_stamps_good(upload, signed, info, NAMES[:1])


async def test_a_page_whose_cropbox_lies_outside_its_mediabox_takes_no_stamp(shared_parts: dict[str, Any]) -> None:
    upload = _pikepdf(make_pdf(), _set("/CropBox", pikepdf.Array([700, 900, 900, 1100])))
    info, signed = await _place_and_sign(shared_parts, upload, NAMES[:1])
    assert info.signature_page and info.placements[0].page == 1
    _assert_stamps_good(upload, signed, info, NAMES[:1])


def _cut(text: str, width: float) -> str:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    while stringWidth(text, _font(), 9) > width:
        text = text[:-1]
    return text


def _one_small_gap() -> bytes:
    """A page printed all over but for a 110 × 45 pt gap (x 400–510, y 60–105 from the bottom):
    room for a smaller stamp only."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(595, 842))
    c.setFont(_font(), 9)
    for line in range(84):
        y = 832 - line * 10
        if 55 <= y <= 110:
            c.drawString(10, y, _cut(LOREM, 385))  # ends left of the gap …
            c.drawString(515, y, _cut(LOREM, 75))  # … and starts again right of it
        else:
            c.drawString(10, y, f"{LOREM} {LOREM}")
    c.showPage()
    c.save()
    return buf.getvalue()


async def test_a_file_signed_elsewhere_gets_a_smaller_stamp_where_only_a_small_gap_is_free(
    shared_parts: dict[str, Any]
) -> None:
    upload = await asyncio.to_thread(_signed_elsewhere, _one_small_gap())
    info, signed = await _place_and_sign(shared_parts, upload, NAMES[:1])
    (place,) = info.placements
    assert place.width < 110 and place.height < 55  # smaller than 170 × 62 …
    assert place.x >= 385 and place.x + place.width <= 515  # … in the gap …
    assert place.y >= 842 - 115 and place.y + place.height <= 842 - 50
    _assert_stamps_good(upload, signed, info, NAMES[:1])  # … over nothing, and still readable


async def test_on_a_need_appearances_form_the_first_stamp_shows_and_later_signatures_keep_it_valid(
    shared_parts: dict[str, Any]
) -> None:
    """poppler redraws every widget of a /NeedAppearances form from its value, and a signature has
    none: the first signer's stamp is also drawn by a plain annotation. A later signer's may not
    add one (pyHanko's validator would count it as a change after the first signature)."""
    upload = repro.need_appearances()
    info, signed = await _place_and_sign(shared_parts, upload, NAMES[:2])
    _assert_stamps_good(upload, signed, info, NAMES[:1])
    checks = await asyncio.to_thread(validate, signed, load_roots(shared_parts["material"].trust_root_paths))
    assert [(c.field_name, c.bottom_line) for c in checks] == [("Signature-s0", True), ("Signature-s1", True)]


async def test_an_empty_signature_field_with_its_own_appearance_is_signed_in_place(
    shared_parts: dict[str, Any]
) -> None:
    upload = with_empty_signature_fields(("Objednatel",), appearance=True)  # a frame drawn by the empty field
    info, signed = await _place_and_sign(shared_parts, upload, NAMES[:1])
    assert (info.placements[0].source, info.placements[0].field_name) == ("form_field", "Objednatel")
    checks = await asyncio.to_thread(validate, signed, load_roots(shared_parts["material"].trust_root_paths))
    assert [(c.field_name, c.bottom_line) for c in checks] == [("Objednatel", True)]
    assert [w for w in poppler_words(signed, 1) if w.text == NAMES[0]]  # our stamp replaced the frame


@pytest.mark.parametrize("rotate", [90, 180, 270])
async def test_an_anchor_on_a_rotated_cropped_page_is_found_where_a_viewer_shows_it(
    shared_parts: dict[str, Any], rotate: int
) -> None:
    upload = _pikepdf(make_pdf(), lambda d: (_set("/CropBox", pikepdf.Array([30, 40, 570, 800]))(d),
                                             _set("/Rotate", rotate)(d)))
    info = await shared_parts["inspector"].inspect(upload, _request(NAMES[:1], (FieldRequest(
        path="signers[0].fields[0]", anchor="Článek 12:"),)))
    (place,) = info.placements
    (label,) = [w for w in poppler_words(upload, 1) if w.text == "12:"]  # poppler's box, displayed page
    right, bottom = place.x + place.width, place.y + place.height
    gaps = (place.x - label.x1, label.x0 - right, place.y - label.y1, label.y0 - bottom)
    assert 0 <= max(gaps) <= 12, (place, label)  # next to the label, on one side of it …
    assert not label.meets((place.x, place.y, place.width, place.height))  # … and not over it
