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
