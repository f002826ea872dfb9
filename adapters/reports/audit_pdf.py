"""The audit report as a PDF (reportlab), in the envelope's language (cs/sk/en; the words from
the gettext catalog, ``esign_gateway.i18n``).

It says what the signatures are (SPEC §5: with the ``local`` provider the gateway's electronic
seal backed by two-channel evidence, in eIDAS terms a simple electronic signature), each signer's
PAdES level and the TSA time of their own signature timestamp, the document timestamps apart from
those, and every state and event as words of the report's language, never a code.

The envelope ID is the largest line on the first page: it is what support is asked for three
years later. Times are given in UTC and in Prague time. The caller seals the result.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from adapters._pool import RebuildingPool
from esign_gateway.i18n import N_, Translations, translations
from esign_gateway.ports import AuditReport, ComponentHealth, ReportSignature, SignatureFacts

__all__ = ["EVENTS", "PdfReportRenderer", "read_signature_facts", "render_report"]

PRAGUE = ZoneInfo("Europe/Prague")

STATUS: dict[str, str] = {
    "draft": N_("Draft (not sent)"),
    "sent": N_("Sent, waiting for signatures"),
    "completed": N_("Completed: all signers have signed"),
    "declined": N_("Closed: signing was declined"),
    "expired": N_("Expired before all signers had signed"),
    "cancelled": N_("The envelope was cancelled"),
}

SIGNER_STATUS: dict[str, str] = {
    "waiting": N_("Not yet their turn"),
    "notified": N_("Signature awaited"),
    "viewed": N_("Documents viewed, not signed"),
    "verified": N_("Code verified, not signed"),
    "signed": N_("Signed"),
    "declined": N_("Signing declined"),
    "auth_failed": N_("Blocked after too many wrong codes"),
    "undeliverable": N_("The e-mail could not be delivered"),
}

EVENTS: dict[str, str] = {
    "envelope.created": N_("Envelope created"),
    "envelope.sent": N_("Envelope sent to the signers"),
    "envelope.completed": N_("All signers have signed; the envelope is completed"),
    "envelope.declined": N_("Envelope closed: signing was declined"),
    "envelope.expired": N_("The envelope expired"),
    "envelope.cancelled": N_("The envelope was cancelled"),
    "envelope.extended": N_("Signing deadline extended"),
    "envelope.reminder_sent": N_("Reminders sent"),
    "envelope.audit_report_sealed": N_("Audit report sealed"),
    "envelope.download_links_revoked": N_("Download links revoked"),
    "envelope.provider_result_archived": N_("Signed result from the provider archived"),
    "envelope.provider_reminders_refused": N_("Reminders the provider refused; it sends its own default reminders"),
    "envelope.provider_expiry_mismatch": N_("The provider's signing deadline differs from ours"),
    "envelope.provider_refused": N_("The provider refused an action in the envelope's current state"),
    "envelope.purged": N_("Documents and personal data removed at the end of retention"),
    "document.normalised": N_("The document's PDF structure repaired for signing"),
    "document.signature_page_added": N_("Signature page added to the document"),
    "document.timestamp_renewed": N_("Document timestamp renewed"),
    "signer.notified": N_("The signer's turn to sign"),
    "signer.invitation_sent": N_("Invitation e-mail sent"),
    "signer.reminder_sent": N_("Reminder e-mail sent"),
    "signer.reminder_failed": N_("The reminder could not be sent"),
    "signer.undeliverable": N_("The e-mail to the signer could not be delivered"),
    "signer.opened": N_("Signing link opened"),
    "signer.viewed": N_("Documents viewed"),
    "signer.code_sent": N_("One-time code sent by SMS"),
    "signer.code_verified": N_("Correct SMS code entered"),
    "signer.code_rejected": N_("Wrong SMS code entered"),
    "signer.signed": N_("Documents signed"),
    "signer.declined": N_("Signing declined"),
    "signer.auth_failed": N_("Signing blocked after too many wrong codes"),
    "signer.completion_sent": N_("E-mail with the signed documents sent"),
    "signer.cancel_notice_sent": N_("Cancellation notice sent"),
    "signer.declined_notice_sent": N_("Notice of the declined request sent"),
    "signer.expired_notice_sent": N_("Notice of the expired request sent"),
    "signer.personal_data_erased": N_("The signer's personal data erased (GDPR request)"),
}

ACTORS: dict[str, str] = {
    "api": N_("sender (API)"),
    "gateway": N_("signing gateway"),
    "operator": N_("operator"),
    "support": N_("support"),
    "signer": N_("signer"),
}

PROVIDER_NAMES = {"digisign": "DigiSign"}


def _provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


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

    async def read_signatures(self, pdf: bytes) -> SignatureFacts:
        return await self.pool.run(read_signature_facts, pdf)


def _gen_time(signed_data: Any) -> datetime:
    """The ``genTime`` of an RFC 3161 token (its TSTInfo), in UTC."""
    return signed_data["encap_content_info"]["content"].parsed["gen_time"].native.astimezone(UTC)


def _signature_timestamp(signer_info: Any) -> Any:
    """The signature's own timestamp token (the unsigned ``signature_time_stamp_token``), or None."""
    attrs = signer_info["unsigned_attrs"]
    for attr in attrs if attrs.native else ():
        if attr["type"].native == "signature_time_stamp_token":
            return attr["values"][0]["content"]
    return None


def read_signature_facts(pdf: bytes) -> SignatureFacts:
    """The signatures of a signed PDF in signing order, each with its PAdES level as the file
    carries it and the TSA time of its own timestamp token, and the document timestamps' TSA
    times. Levels: ``B-B`` (no timestamp), ``B-T`` (a signature timestamp), ``B-LT`` (plus
    validation data in the DSS), ``B-LTA`` (plus a document timestamp after the signature). Any
    provider's file (sync; runs in the renderer's worker process)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    stamps = reader.embedded_timestamp_signatures
    has_dss = "/DSS" in reader.root
    found = []
    for sig in reader.embedded_regular_signatures:
        token = _signature_timestamp(sig.signer_info)
        when = _gen_time(token) if token is not None else None
        later = any(ts.signed_revision > sig.signed_revision for ts in stamps)
        level = "B-B" if when is None else "B-LTA" if has_dss and later else "B-LT" if has_dss else "B-T"
        name = sig.sig_object.get("/Name")
        found.append(ReportSignature(sig.field_name, str(name) if name is not None else None, level, when))
    return SignatureFacts(signatures=found, document_timestamps=[_gen_time(ts.signed_data) for ts in stamps])


def render_report(r: AuditReport, font_path: Path) -> bytes:
    """The report PDF (sync; runs in the renderer's worker process)."""
    if "AuditSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("AuditSans", str(font_path)))
    return _render(r)


def _when_lines(moment: datetime | None) -> str:
    """:func:`_when` on two lines, for narrow table cells."""
    return _when(moment).replace(" / ", "\n")


def _statement(r: AuditReport, tr: Translations) -> str:
    """What the signatures are, in the words SPEC §5 asks for: never more than they are."""
    if r.signature_kind == "gateway_seal":
        return tr.gettext(
            "The signatures in the documents were made by the signing gateway with its own key: technically "
            "they are the gateway's electronic seal, backed by evidence from two channels (a personal link sent "
            "by e-mail and a one-time code sent by SMS) and a trusted timestamp. In terms of the eIDAS "
            "regulation this is a simple electronic signature of the signers, not an advanced or a qualified "
            "electronic signature.")
    return tr.text(
        "The signatures were made by {provider} in its own signing process; what they are in terms of the "
        "eIDAS regulation depends on {provider} and its certificates. What the signed files hold is listed "
        "below.", provider=_provider_name(r.provider))


def _method(r: AuditReport, verification: str, phone: str, tr: Translations) -> str:
    if verification == "provider":
        return tr.text("{provider}: a personal link by e-mail and a one-time SMS code to {phone}",
                       provider=_provider_name(r.provider), phone=phone)
    return tr.text("A personal link by e-mail and a one-time SMS code to {phone}", phone=phone)


def _signer_status(status: str, reason: str | None, tr: Translations) -> str:
    words = tr.gettext(SIGNER_STATUS[status]) if status in SIGNER_STATUS else status
    return tr.text("{status}; reason: {reason}", status=words, reason=reason) if reason else words


def _render(r: AuditReport) -> bytes:
    """Short values (labels, numbers, times, states) are plain table strings; only text that may
    need wrapping (names, addresses, sentences, user agents) is a ``Paragraph``, which costs ~10x
    more to lay out — most of the time of a report was spent parsing and wrapping one-word paragraphs."""
    tr = translations(r.language)
    _ = tr.gettext
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

    def who(e: Any) -> str:
        if e.signer_name:
            return str(e.signer_name)
        if e.actor == "provider":
            return _provider_name(r.provider)
        return _(ACTORS[e.actor]) if e.actor in ACTORS else str(e.actor)

    title = _("Electronic signature audit report")
    how = (_("The signing gateway's electronic seal (the gateway's own signing process)")
           if r.signature_kind == "gateway_seal" else _provider_name(r.provider))
    facts: list[list[Paragraph | str]] = [
        [_("Name"), p(r.envelope_name)], [_("Status"), p(_(STATUS[r.status]) if r.status in STATUS else r.status)],
        [_("Sender"), p(r.tenant_name)], [_("CRM record"), p(r.record)], [_("Signed with"), p(how)],
        [_("Created"), _when(r.created_at)], [_("Sent"), _when(r.sent_at)], [_("Ended"), _when(r.ended_at)],
    ]
    if r.cancel_reason:
        facts.append([_("Reason for cancelling"), p(r.cancel_reason)])
    facts.append([_("Archived until"), _when(r.retained_until)])
    stamps = [[p(d.name), _when(at)] for d in r.documents for at in d.document_timestamps]
    story = [
        p(title, h1),
        p(f"{_('Envelope ID')}:", base),
        p(r.envelope_id, big),
        Spacer(1, 4),
        table(facts, [45 * mm, 125 * mm]),
        p(_("What these signatures are"), h2),
        p(_statement(r, tr)),
        p(_("Documents"), h2),
        table([[_("Name"), _("Pages"), _("SHA-256 of the original"), _("SHA-256 of the signed version")]] + [
            [p(d.name), str(d.pages), digest(d.sha256_original), digest(d.sha256_signed)] for d in r.documents
        ], [32 * mm, 20 * mm, 59 * mm, 59 * mm], small_columns=(2, 3)),
        p(_("Signers"), h2),
        table([[_("Person's name"), _("E-mail"), _("Phone"), _("Verification"), _("Status")]] + [
            [p(s.name), p(s.email_masked), s.phone_masked, p(_method(r, s.verification, s.phone_masked, tr), small),
             p(_signer_status(s.status, s.decline_reason, tr), small)]
            for s in r.signers
        ], [32 * mm, 32 * mm, 24 * mm, 44 * mm, 38 * mm], small_columns=(2,)),
        p(_("Signatures and timestamps"), h2),
        table([[_("Signer"), _("Signed (gateway clock)"), _("Signature timestamp (TSA)"), _("PAdES level")]] + [
            [p(s.name), _when_lines(s.signed_at), _when_lines(s.signature_time), s.signature_level or "—"]
            for s in r.signers if s.signed_at or s.signature_time
        ], [44 * mm, 42 * mm, 56 * mm, 28 * mm], small_columns=(1, 2)),
        p(_("B-T: the signature carries a timestamp from a timestamp authority (TSA). B-LTA: the file also "
            "holds the validation data and a document timestamp, so the signatures can be verified long "
            "after the certificates expire."), small),
    ]
    if stamps:
        story += [
            p(_("Document timestamps (TSA)"), h2),
            table([[_("Document"), _("Time of the document timestamp (UTC / Prague)")], *stamps],
                  [80 * mm, 90 * mm]),
        ]
    story += [
        p(_("Timeline"), h2),
        table([["#", _("Time (UTC / Prague)"), _("Event"), _("By"), _("IP, browser")]] + [
            [str(e.seq), _when_lines(e.at), p(_(EVENTS[e.type]) if e.type in EVENTS else e.type), p(who(e)),
             p(" · ".join(x for x in (e.ip, (e.user_agent or "")[:90]) if x) or "—", small)]
            for e in r.events
        ], [8 * mm, 40 * mm, 52 * mm, 24 * mm, 46 * mm], small_columns=(1,)),
        p(_("Head of the audit record chain (SHA-256)"), h2),
        p(r.chain_head, small),
        Spacer(1, 6),
        p(tr.text("The report is sealed with the gateway's electronic seal and a trusted timestamp. Made {time}.",
                  time=_when(r.generated_at)), small),
    ]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm,
                            bottomMargin=18 * mm, title=f"{title} {r.envelope_id}",
                            author="esign-gateway", subject=r.envelope_id)
    doc.build(story)
    return buf.getvalue()
