"""The audit report as a PDF (reportlab), in the envelope's language (cs/sk/en).

The envelope ID is the largest line on the first page: it is what support is asked for three
years later. Times are given in UTC and in Prague time. The caller seals the result.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from adapters._pool import RebuildingPool
from esign_gateway.ports import AuditReport, ComponentHealth

__all__ = ["PdfReportRenderer", "render_report"]

PRAGUE = ZoneInfo("Europe/Prague")

TEXT: dict[str, dict[str, str]] = {
    "cs": {
        "title": "Protokol o elektronickém podpisu", "envelope_id": "ID obálky", "name": "Název",
        "status": "Stav", "tenant": "Odesílatel", "record": "Záznam v CRM", "provider": "Poskytovatel",
        "created": "Vytvořeno", "sent": "Odesláno", "ended": "Ukončeno", "retained": "Archivováno do",
        "documents": "Dokumenty", "pages": "Stran", "original": "SHA-256 originálu",
        "signed": "SHA-256 podepsané verze", "signers": "Podepisující", "email": "E-mail", "phone": "Telefon",
        "method": "Ověření", "signed_at": "Podepsáno", "timeline": "Průběh", "time": "Čas (UTC / Praha)",
        "event": "Událost", "actor": "Kdo", "client": "IP, prohlížeč",
        "chain": "Hlava řetězce auditních záznamů (SHA-256)",
        "footer": "Protokol je zapečetěn certifikátem brány s časovým razítkem. Vygenerováno",
    },
    "sk": {
        "title": "Protokol o elektronickom podpise", "envelope_id": "ID obálky", "name": "Názov",
        "status": "Stav", "tenant": "Odosielateľ", "record": "Záznam v CRM", "provider": "Poskytovateľ",
        "created": "Vytvorené", "sent": "Odoslané", "ended": "Ukončené", "retained": "Archivované do",
        "documents": "Dokumenty", "pages": "Strán", "original": "SHA-256 originálu",
        "signed": "SHA-256 podpísanej verzie", "signers": "Podpisujúci", "email": "E-mail", "phone": "Telefón",
        "method": "Overenie", "signed_at": "Podpísané",
        "timeline": "Priebeh", "time": "Čas (UTC / Praha)", "event": "Udalosť", "actor": "Kto",
        "client": "IP, prehliadač", "chain": "Hlava reťazca auditných záznamov (SHA-256)",
        "footer": "Protokol je zapečatený certifikátom brány s časovou pečiatkou. Vygenerované",
    },
    "en": {
        "title": "Electronic signature audit report", "envelope_id": "Envelope ID", "name": "Name",
        "status": "Status", "tenant": "Sender", "record": "CRM record", "provider": "Provider",
        "created": "Created", "sent": "Sent", "ended": "Ended", "retained": "Archived until",
        "documents": "Documents", "pages": "Pages", "original": "SHA-256 of the original",
        "signed": "SHA-256 of the signed version", "signers": "Signers", "email": "E-mail", "phone": "Phone",
        "method": "Verification", "signed_at": "Signed", "timeline": "Timeline", "time": "Time (UTC / Prague)",
        "event": "Event", "actor": "By", "client": "IP, browser", "chain": "Audit chain head (SHA-256)",
        "footer": "This report is sealed with the gateway's certificate and a trusted timestamp. Generated",
    },
}


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S')} UTC / {moment.astimezone(PRAGUE).strftime('%d.%m.%Y %H:%M:%S')}"


class PdfReportRenderer:
    """Renders in a one-process pool (``spawn``): reportlab is CPU work and must not hold the web
    process's GIL while requests wait."""

    def __init__(self, font_path: Path) -> None:
        self.font_path = font_path
        self.pool = RebuildingPool("report_pool", process_name="esign-report", max_workers=1)

    async def start(self) -> None:
        await self.pool.start()

    async def close(self) -> None:
        await self.pool.close()

    async def health(self) -> ComponentHealth:
        return await self.pool.health()

    async def render(self, report: AuditReport) -> bytes:
        return await self.pool.run(render_report, report, self.font_path)


def render_report(r: AuditReport, font_path: Path) -> bytes:
    """The report PDF (sync; runs in the renderer's worker process)."""
    if "AuditSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("AuditSans", str(font_path)))
    return _render(r)


def _when_lines(moment: datetime | None) -> str:
    """:func:`_when` on two lines, for narrow table cells."""
    return _when(moment).replace(" / ", "\n")


def _render(r: AuditReport) -> bytes:
    """Short values (labels, numbers, times, states) are plain table strings; only text that may
    need wrapping (names, addresses, user agents) is a ``Paragraph``, which costs ~10x more to lay
    out — most of the time of a report was spent parsing and wrapping one-word paragraphs."""
    t = TEXT.get(r.language, TEXT["en"])
    base = ParagraphStyle("base", fontName="AuditSans", fontSize=8.5, leading=11)
    small = ParagraphStyle("small", parent=base, fontSize=6.5, leading=8)
    h1 = ParagraphStyle("h1", parent=base, fontSize=15, leading=19, spaceAfter=4)
    h2 = ParagraphStyle("h2", parent=base, fontSize=11, leading=14, spaceBefore=8, spaceAfter=4)
    big = ParagraphStyle("big", parent=base, fontSize=16, leading=21, textColor=colors.HexColor("#0b3d91"))

    def p(text: str, style: ParagraphStyle = base) -> Paragraph:
        return Paragraph(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"), style)

    def table(rows: list[list[Paragraph | str]], widths: list[float], small_columns: tuple[int, ...] = ()) -> Table:
        tbl = Table(rows, colWidths=widths, repeatRows=1)
        style: list[tuple[object, ...]] = [
            ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("FONT", (0, 0), (-1, -1), "AuditSans", 8.5, 11),
        ]
        style += [("FONT", (c, 1), (c, -1), "AuditSans", 6.5, 8) for c in small_columns]
        tbl.setStyle(TableStyle(style))
        return tbl

    def digest(value: str | None) -> str:
        return "—" if not value else f"{value[:32]}\n{value[32:]}"

    story = [
        p(t["title"], h1),
        p(f"{t['envelope_id']}:", base),
        p(r.envelope_id, big),
        Spacer(1, 4),
        table([[t["name"], p(r.envelope_name)], [t["status"], r.status], [t["tenant"], p(r.tenant_name)],
               [t["record"], p(r.record)], [t["provider"], r.provider], [t["created"], _when(r.created_at)],
               [t["sent"], _when(r.sent_at)], [t["ended"], _when(r.ended_at)],
               [t["retained"], _when(r.retained_until)]], [45 * mm, 125 * mm]),
        p(t["documents"], h2),
        table([[t["name"], t["pages"], t["original"], t["signed"]]] + [
            [p(d.name), str(d.pages), digest(d.sha256_original), digest(d.sha256_signed)] for d in r.documents
        ], [38 * mm, 14 * mm, 59 * mm, 59 * mm], small_columns=(2, 3)),
        p(t["signers"], h2),
        table([[t["name"], t["email"], t["phone"], t["method"], t["status"], t["signed_at"]]] + [
            [p(s.name), p(s.email_masked), s.phone_masked, p(s.verification, small), s.status,
             _when_lines(s.signed_at)]
            for s in r.signers
        ], [30 * mm, 30 * mm, 22 * mm, 32 * mm, 20 * mm, 36 * mm], small_columns=(2, 4, 5)),
        p(t["timeline"], h2),
        table([["#", t["time"], t["event"], t["actor"], t["client"]]] + [
            [str(e.seq), _when_lines(e.at), p(e.type + (f" — {e.signer_name}" if e.signer_name else "")),
             e.actor, p(" · ".join(x for x in (e.ip, (e.user_agent or "")[:90]) if x) or "—", small)]
            for e in r.events
        ], [8 * mm, 40 * mm, 52 * mm, 16 * mm, 54 * mm], small_columns=(1,)),
        p(t["chain"], h2),
        p(r.chain_head, small),
        Spacer(1, 6),
        p(f"{t['footer']} {_when(r.generated_at)}.", small),
    ]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm,
                            bottomMargin=18 * mm, title=f"{t['title']} {r.envelope_id}",
                            author="esign-gateway", subject=r.envelope_id)
    doc.build(story)
    return buf.getvalue()
