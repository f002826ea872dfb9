"""The signature page: appended once, before the first signature, when the last page has no room.

An A4 page in the envelope's language: what it is, the envelope's name, the document's name and
the envelope ID, then one captioned slot per signer; each signer's stamp goes into their slot. Only
unsigned documents get one (a new page breaks the signatures of a file signed elsewhere). The page
is appended with pikepdf (qpdf); the pages before it are copied as they are, so they render the same.
"""

from __future__ import annotations

import functools
import io

import pikepdf
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from esign_gateway.i18n import translations
from esign_gateway.ports import PlacementRequest, StampPlacement

from .geometry import Rect
from .placement import STAMP_H, STAMP_W
from .signature import FONT_DIR

__all__ = ["append_signature_page", "slots"]

MARGIN, COLUMNS, CAPTION, ROW_GAP = 56.0, 2, 14.0, 18.0
TOP = 200.0
"""Where the first row's caption starts, from the top (below the heading and the three lines)."""

def slots(count: int) -> list[Rect]:
    """Each signer's stamp box on the signature page (points from its top-left corner)."""
    width = A4[0]
    column = (width - 2 * MARGIN) / COLUMNS
    out = []
    for i in range(count):
        row, col = divmod(i, COLUMNS)
        x = MARGIN + col * column
        y = TOP + row * (CAPTION + STAMP_H + ROW_GAP) + CAPTION
        out.append((x, y, STAMP_W, STAMP_H))
    return out


@functools.cache
def _font() -> str:
    pdfmetrics.registerFont(TTFont("SignaturePageSans", str(FONT_DIR / "DejaVuSans.ttf")))
    return "SignaturePageSans"


def _page(request: PlacementRequest, names: list[str]) -> bytes:
    tr = translations(request.language)
    heading, envelope, document, envelope_id = (tr.gettext("Signature page"), tr.gettext("Envelope"),
                                                tr.gettext("Document"), tr.gettext("Envelope ID"))
    intro = tr.gettext("Signatures to the document above, in this order:")
    font = _font()
    width, height = A4
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=A4, invariant=True, pageCompression=1)
    c.setTitle(heading)
    c.setFont(font, 16)
    c.drawString(MARGIN, height - 72, heading)
    c.setFont(font, 10)
    for n, (label, value) in enumerate(
        ((envelope, request.envelope_name), (document, request.document_name), (envelope_id, request.envelope_id))
    ):
        c.drawString(MARGIN, height - 100 - n * 15, f"{label}: {_fit(value, font, 10, width - 2 * MARGIN - 90)}")
    c.drawString(MARGIN, height - (TOP - 20), intro)
    c.setFont(font, 9)
    for i, (name, (x, y, _w, _h)) in enumerate(zip(names, slots(len(names)), strict=True)):
        c.drawString(x, height - y + 5, _fit(f"{i + 1}. {name}", font, 9, STAMP_W))
    c.showPage()
    c.save()
    return out.getvalue()


def _fit(text: str, font: str, size: float, width: float) -> str:
    if pdfmetrics.stringWidth(text, font, size) <= width:
        return text
    while text and pdfmetrics.stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…"


def append_signature_page(
    data: bytes, request: PlacementRequest, signers: list[int]
) -> tuple[bytes, list[StampPlacement]]:
    """``data`` with the signature page appended, and the place on it of each of ``signers``
    (indexes into ``request.signers``: those without a place of their own)."""
    names = [request.signers[i] for i in signers]
    with pikepdf.open(io.BytesIO(data)) as pdf, pikepdf.open(io.BytesIO(_page(request, names))) as page:
        pdf.pages.append(page.pages[0])
        index = len(pdf.pages) - 1
        out = io.BytesIO()
        pdf.save(out, fix_metadata_version=False, deterministic_id=True)
    placements = [StampPlacement(page=index, x=x, y=y, width=w, height=h, source="signature_page")
                  for x, y, w, h in slots(len(names))]
    return out.getvalue(), placements
