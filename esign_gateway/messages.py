"""Signer-facing messages (e-mail and SMS) in cs/sk/en, rendered with Jinja2.

Pure functions returning port value types. Every e-mail names the sender, the envelope, the
documents, the expiry (Prague time and UTC) and the envelope ID, in both the text and the HTML
part; no tracking pixels.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import jinja2

from .ports import OutgoingEmail, OutgoingSms

__all__ = [
    "MessageContext", "render_cancelled", "render_code_sms", "render_completed", "render_ended", "render_invitation",
    "render_reminder",
]

PRAGUE = ZoneInfo("Europe/Prague")
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("esign_gateway", "templates/email"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class MessageContext:
    language: str
    signer_name: str
    signer_email: str
    sender_name: str
    envelope_name: str
    envelope_id: str
    message: str | None
    document_names: list[str]
    expires_at: datetime
    link: str
    reply_to: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


TEXTS: dict[str, dict[str, str]] = {
    "cs": {
        "invitation_subject": "Žádost o podpis: {name}",
        "reminder_subject": "Připomínka: čeká na Váš podpis – {name}",
        "cancelled_subject": "Podpis zrušen: {name}",
        "greeting": "Dobrý den, {name},",
        "invitation_lead": "{sender} Vás žádá o elektronický podpis dokumentů „{envelope}“.",
        "reminder_lead": "připomínáme, že {sender} stále čeká na Váš podpis dokumentů „{envelope}“.",
        "cancelled_lead": "{sender} zrušil(a) žádost o podpis dokumentů „{envelope}“. Odkaz k podpisu už neplatí.",
        "reason": "Důvod",
        "documents": "Dokumenty",
        "expires": "Podepsat lze do",
        "button": "Zobrazit a podepsat dokumenty",
        "sms_note": "Podpis potvrdíte jednorázovým kódem, který Vám pošleme SMS zprávou na Váš mobilní telefon.",
        "envelope_id": "ID obálky",
        "footer": "Odkaz je osobní, nepřeposílejte jej. Pokud jste žádost nečekali, e-mail ignorujte.",
        "completed_subject": "Podepsáno: {name}",
        "completed_lead": "dokumenty „{envelope}“ od {sender} jsou podepsané všemi podepisujícími.",
        "download_button": "Stáhnout podepsané dokumenty",
        "download_until": "Odkaz ke stažení platí do",
        "completed_note": "Podepsané dokumenty jsou archivovány 3 roky; při dotazu uveďte ID obálky.",
        "declined_subject": "Podpis odmítnut: {name}",
        "declined_lead": "žádost o podpis dokumentů „{envelope}“ od {sender} byla odmítnuta a je uzavřena. Nic "
            "dalšího nemusíte dělat.",
        "expired_subject": "Platnost žádosti vypršela: {name}",
        "expired_lead": "platnost žádosti o podpis dokumentů „{envelope}“ od {sender} vypršela. Pokud je podpis "
            "stále potřeba, odesílatel pošle novou žádost.",
        "sms": "Kod pro podpis {envelope} ({sender}): {code}. Plati 5 minut. Kod nikomu nesdelujte.",
    },
    "sk": {
        "invitation_subject": "Žiadosť o podpis: {name}",
        "reminder_subject": "Pripomienka: čaká sa na Váš podpis – {name}",
        "cancelled_subject": "Podpis zrušený: {name}",
        "greeting": "Dobrý deň, {name},",
        "invitation_lead": "{sender} Vás žiada o elektronický podpis dokumentov „{envelope}“.",
        "reminder_lead": "pripomíname, že {sender} stále čaká na Váš podpis dokumentov „{envelope}“.",
        "cancelled_lead": "{sender} zrušil(a) žiadosť o podpis dokumentov „{envelope}“. Odkaz na podpis už neplatí.",
        "reason": "Dôvod",
        "documents": "Dokumenty",
        "expires": "Podpísať je možné do",
        "button": "Zobraziť a podpísať dokumenty",
        "sms_note": "Podpis potvrdíte jednorazovým kódom, ktorý Vám pošleme SMS správou na Váš mobilný telefón.",
        "envelope_id": "ID obálky",
        "footer": "Odkaz je osobný, neposielajte ho ďalej. Ak ste žiadosť neočakávali, e-mail ignorujte.",
        "completed_subject": "Podpísané: {name}",
        "completed_lead": "dokumenty „{envelope}“ od {sender} sú podpísané všetkými podpisujúcimi.",
        "download_button": "Stiahnuť podpísané dokumenty",
        "download_until": "Odkaz na stiahnutie platí do",
        "completed_note": "Podpísané dokumenty sú archivované 3 roky; pri otázke uveďte ID obálky.",
        "declined_subject": "Podpis odmietnutý: {name}",
        "declined_lead": "žiadosť o podpis dokumentov „{envelope}“ od {sender} bola odmietnutá a je uzavretá. "
            "Nemusíte robiť nič ďalšie.",
        "expired_subject": "Platnosť žiadosti vypršala: {name}",
        "expired_lead": "platnosť žiadosti o podpis dokumentov „{envelope}“ od {sender} vypršala. Ak je podpis stále "
            "potrebný, odosielateľ pošle novú žiadosť.",
        "sms": "Kod na podpis {envelope} ({sender}): {code}. Plati 5 minut. Kod nikomu neoznamujte.",
    },
    "en": {
        "invitation_subject": "Signature request: {name}",
        "reminder_subject": "Reminder: your signature is awaited – {name}",
        "cancelled_subject": "Signature request cancelled: {name}",
        "greeting": "Hello {name},",
        "invitation_lead": "{sender} asks you to sign the documents “{envelope}” electronically.",
        "reminder_lead": "{sender} is still waiting for your signature on “{envelope}”.",
        "cancelled_lead": "{sender} cancelled the signature request “{envelope}”. The signing link no longer works.",
        "reason": "Reason",
        "documents": "Documents",
        "expires": "You can sign until",
        "button": "View and sign the documents",
        "sms_note": "You will confirm your signature with a one-time code we send by SMS to your mobile phone.",
        "envelope_id": "Envelope ID",
        "footer": "This link is personal; do not forward it. If you did not expect this request, ignore this e-mail.",
        "completed_subject": "Signed: {name}",
        "completed_lead": "the documents “{envelope}” from {sender} are signed by everyone.",
        "download_button": "Download the signed documents",
        "download_until": "The download link works until",
        "completed_note": "The signed documents are archived for 3 years; quote the envelope ID with any question.",
        "declined_subject": "Signature declined: {name}",
        "declined_lead": "the signature request “{envelope}” from {sender} was declined and is closed. You need to "
            "do nothing more.",
        "expired_subject": "Signature request expired: {name}",
        "expired_lead": "the signature request “{envelope}” from {sender} has expired. If a signature is still "
            "needed, the sender will send a new request.",
        "sms": "Code to sign {envelope} ({sender}): {code}. Valid 5 minutes. Do not share it.",
    },
}


def _t(language: str) -> dict[str, str]:
    return TEXTS.get(language, TEXTS["cs"])


def _expiry(ctx: MessageContext) -> str:
    local = ctx.expires_at.astimezone(PRAGUE)
    utc = ctx.expires_at.astimezone(ZoneInfo("UTC"))
    return f"{local:%d.%m.%Y %H:%M} ({local.tzname()}, Europe/Prague; {utc:%Y-%m-%d %H:%M} UTC)"


def _render(
    ctx: MessageContext, *, subject: str, lead: str, link: bool, reason: str | None = None,
    texts: dict[str, str] | None = None,
) -> OutgoingEmail:
    t = texts or _t(ctx.language)
    values = {
        "t": t, "ctx": ctx, "lead": lead, "link": ctx.link if link else None, "expiry": _expiry(ctx),
        "reason": reason, "greeting": t["greeting"].format(name=ctx.signer_name),
    }
    return OutgoingEmail(
        to=ctx.signer_email,
        subject=subject,
        text=_env.get_template("message.txt").render(**values),
        html=_env.get_template("message.html").render(**values),
        reply_to=ctx.reply_to,
        headers={"X-Esign-Envelope-Id": ctx.envelope_id, "Auto-Submitted": "auto-generated"},
    )


def _lead(key: str, ctx: MessageContext) -> str:
    return _t(ctx.language)[key].format(sender=ctx.sender_name, envelope=ctx.envelope_name)


def render_invitation(ctx: MessageContext) -> OutgoingEmail:
    subject = _t(ctx.language)["invitation_subject"].format(name=ctx.envelope_name)
    return _render(ctx, subject=subject, lead=_lead("invitation_lead", ctx), link=True)


def render_reminder(ctx: MessageContext) -> OutgoingEmail:
    subject = _t(ctx.language)["reminder_subject"].format(name=ctx.envelope_name)
    return _render(ctx, subject=subject, lead=_lead("reminder_lead", ctx), link=True)


def render_cancelled(ctx: MessageContext, reason: str | None) -> OutgoingEmail:
    subject = _t(ctx.language)["cancelled_subject"].format(name=ctx.envelope_name)
    return _render(ctx, subject=subject, lead=_lead("cancelled_lead", ctx), link=False, reason=reason)


def render_completed(ctx: MessageContext) -> OutgoingEmail:
    """To each signer and to the sender's contact: the envelope ID and a time-limited download
    link (``ctx.link``, valid until ``ctx.expires_at``)."""
    t = _t(ctx.language)
    texts = {**t, "button": t["download_button"], "expires": t["download_until"], "sms_note": t["completed_note"]}
    subject = t["completed_subject"].format(name=ctx.envelope_name)
    return _render(ctx, subject=subject, lead=_lead("completed_lead", ctx), link=True, texts=texts)


def render_ended(ctx: MessageContext, kind: str) -> OutgoingEmail:
    """The request ended without signatures: ``kind`` is ``declined`` or ``expired``."""
    subject = _t(ctx.language)[f"{kind}_subject"].format(name=ctx.envelope_name)
    return _render(ctx, subject=subject, lead=_lead(f"{kind}_lead", ctx), link=False)


GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
_ASCII_LOOKALIKE = str.maketrans({"–": "-", "—": "-", "„": '"', "“": '"', "”": '"', "‚": "'", "‘": "'", "’": "'",
                                  "…": "...", "\u00a0": " "})


def _gsm_safe(text: str) -> str:
    """Keep the SMS in the GSM-7 basic alphabet (160 characters a part, not 70): strip diacritics,
    turn typographic dashes and quotes into plain ones, and anything else outside it into '?'."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(c if c in GSM7_BASIC else "?" for c in plain.translate(_ASCII_LOOKALIKE))


def render_code_sms(language: str, to: str, code: str, envelope_name: str, sender_name: str) -> OutgoingSms:
    template = _t(language)["sms"]
    envelope, sender = _gsm_safe(envelope_name), _gsm_safe(sender_name)[:40]
    text = template.format(envelope=envelope, sender=sender, code=code)
    overflow = len(text) - 160
    if overflow > 0:
        envelope = envelope[: max(8, len(envelope) - overflow - 3)] + "..."
        text = template.format(envelope=envelope, sender=sender, code=code)
    return OutgoingSms(to=to, text=text)
