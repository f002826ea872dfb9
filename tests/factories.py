"""Real test objects: PDFs made with reportlab (Czech text in a real TTF font), an encrypted PDF,
and a PDF bomb whose content stream inflates to gigabytes."""

from __future__ import annotations

import functools
import io
import zlib
from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

FONT = Path(__file__).parent.parent / "adapters" / "_pdf" / "fonts" / "DejaVuSans.ttf"


@functools.cache
def _font() -> str:
    pdfmetrics.registerFont(TTFont("DejaVuSans", str(FONT)))
    return "DejaVuSans"


def make_pdf(pages: int = 1, text: str = "Smlouva o dílo", *, encrypt: str | None = None) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, encrypt=encrypt)
    font = _font()
    for n in range(1, pages + 1):
        c.setFont(font, 14)
        c.drawString(72, 770, f"{text} — strana {n} z {pages}")
        c.setFont(font, 10)
        for line in range(30):
            c.drawString(72, 740 - line * 18, f"Článek {line + 1}: Smluvní strany se dohodly na plnění dle přílohy.")
        c.showPage()
    c.save()
    return buf.getvalue()


def make_encrypted_pdf() -> bytes:
    return make_pdf(encrypt="tajne-heslo")


@functools.cache
def make_pdf_bomb(inflated_bytes: int = 1536 * 1024 * 1024) -> bytes:
    """A valid-looking one-page PDF whose content stream inflates to ``inflated_bytes`` of zeros."""
    comp = zlib.compressobj(9)
    chunk = b"\0" * (1 << 20)
    parts = [comp.compress(chunk) for _ in range(inflated_bytes // len(chunk))]
    parts.append(comp.flush())
    stream = b"".join(parts)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def signature_kinds(pdf: bytes) -> list[str]:
    """``/Sig`` or ``/DocTimeStamp`` for each signature in the file, in order."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    return [str(s.sig_object.get("/Type", "/Sig")) for s in PdfFileReader(io.BytesIO(pdf)).embedded_signatures]


# --------------------------------------------------------------------------- where stamps go

LOREM = "Zhotovitel se zavazuje provést dílo řádně a včas; objednatel dílo převezme a zaplatí cenu."


def czech_contract(pages: int = 3, *, label_page: int = 2, label: str = "Podpis objednatele:",
                   full_pages: bool = True) -> bytes:
    """A contract whose page ``label_page`` ends with the signature block: "Podpis objednatele:" and
    "Podpis zhotovitele:" with room below; every other page is full of text to its bottom margin."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    font = _font()
    for n in range(1, pages + 1):
        c.setFont(font, 14)
        c.drawString(72, 780, f"Smlouva o dílo č. 2026/042 — strana {n} z {pages}")
        c.setFont(font, 10)
        lines = 16 if n == label_page else (60 if full_pages else 10)
        for line in range(lines):
            c.drawString(56, 756 - line * 12, f"{line + 1}. {LOREM}")
        if n == label_page:
            y = 756 - lines * 12 - 30
            c.drawString(56, y, label)
            c.drawString(320, y, "Podpis zhotovitele:")
        c.showPage()
    c.save()
    return buf.getvalue()


def placeholder_contract(placeholders: tuple[str, ...] = ("{{podpis:1}}",)) -> bytes:
    """One page with the sender's placeholders written into the signature block."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    font = _font()
    c.setFont(font, 10)
    for line in range(20):
        c.drawString(56, 780 - line * 12, f"{line + 1}. {LOREM}")
    for i, placeholder in enumerate(placeholders):
        c.drawString(56 + i * 260, 480, "Objednatel:" if i == 0 else "Zhotovitel:")
        c.setFont(font, 8)
        c.drawString(56 + i * 260, 460, placeholder)
        c.setFont(font, 10)
    c.showPage()
    c.save()
    return buf.getvalue()


def rotated_pdf(rotate: int = 90, *, crop: tuple[float, float, float, float] | None = None) -> bytes:
    """A landscape-displayed page: a portrait A4 page turned by ``/Rotate``, text on its upper half."""
    import pikepdf

    pdf = pikepdf.open(io.BytesIO(make_pdf(pages=1)))
    pdf.pages[0].obj["/Rotate"] = rotate
    if crop is not None:
        pdf.pages[0].obj["/CropBox"] = pikepdf.Array(list(crop))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def with_empty_signature_fields(names: tuple[str, ...] = ("Objednatel", "Zhotovitel"), *,
                                appearance: bool = False) -> bytes:
    """A contract with empty signature fields on page 1, as Word or LibreOffice export them (with
    ``appearance``: each empty widget draws a frame, as Acrobat's do)."""
    import pikepdf

    pdf = pikepdf.open(io.BytesIO(make_pdf(pages=1, text="Smlouva s podpisovými poli")))
    page = pdf.pages[0]
    fields = pikepdf.Array()
    annots = pikepdf.Array()
    for i, name in enumerate(names):
        widget = pdf.make_indirect(pikepdf.Dictionary(
            Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Widget, FT=pikepdf.Name.Sig, T=pikepdf.String(name),
            Rect=pikepdf.Array([56 + i * 260, 60, 56 + i * 260 + 200, 130]), F=4, P=page.obj,
        ))
        if appearance:
            frame = pdf.make_stream(b"0.5 G 1 w 0.5 0.5 199 69 re S", Type=pikepdf.Name.XObject,
                                    Subtype=pikepdf.Name.Form, BBox=pikepdf.Array([0, 0, 200, 70]))
            widget["/AP"] = pikepdf.Dictionary(N=frame)
        fields.append(widget)
        annots.append(widget)
    page.obj["/Annots"] = annots
    pdf.Root["/AcroForm"] = pikepdf.Dictionary(Fields=fields, SigFlags=0)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def page_fill(pages: int = 2) -> bytes:
    """Every page printed to its edges: the last page has no room for a stamp."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    font = _font()
    for n in range(1, pages + 1):
        c.setFont(font, 9)
        for line in range(84):
            c.drawString(10, 832 - line * 10, f"{n}.{line + 1} {LOREM} {LOREM}")
        c.showPage()
    c.save()
    return buf.getvalue()
