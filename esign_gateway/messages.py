"""Signer-facing messages (e-mail and SMS) in cs/sk/en: texts from the gettext catalog
(``esign_gateway.i18n``), laid out with Jinja2.

Pure functions returning port value types. Every e-mail names the sender, the envelope, the
documents, the expiry (Prague time and UTC) and the envelope ID, in both the text and the HTML
part; no tracking pixels (a tenant's logo is one public URL per tenant, the same for every
recipient). A person's or a company's name is never declined: it stands in a labelled line
("Podepisující: Jana Nováková") or as the subject of a sentence in the nominative, and the
greeting carries no name. The footer names the operator of the service, a contact and the
privacy notice when they are configured.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from zoneinfo import ZoneInfo

import jinja2

from .i18n import Translations, translations
from .ports import OutgoingEmail, OutgoingSms

__all__ = [
    "DEFAULT_ACCENT", "MessageContext", "Operator", "from_display_name", "render_cancelled", "render_code_sms",
    "render_completed", "render_ended", "render_invitation", "render_reminder",
]

PRAGUE = ZoneInfo("Europe/Prague")
DEFAULT_ACCENT = "#1d4ed8"
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("esign_gateway", "templates/email"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True)
class Operator:
    """Who runs the service (``ESIGN_OPERATOR_NAME``, ``ESIGN_OPERATOR_CONTACT``,
    ``ESIGN_PRIVACY_URL``): named in the footer of every e-mail and of the signer's page."""

    name: str = ""
    contact: str = ""
    privacy_url: str = ""


@dataclass(frozen=True)
class MessageContext:
    language: str
    signer_name: str
    """The addressed signer, shown as "Signer: …"; empty for the sender's own copy of a notice."""
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
    from_name: str | None = None
    """The tenant's own display name for the From header; None: "<sender> via <service>"."""
    service_name: str = "esign-gateway"
    """The gateway's name (the display name of ``ESIGN_MAIL_FROM``)."""
    logo_url: str | None = None
    accent: str | None = None
    operator: Operator = field(default_factory=Operator)


def from_display_name(ctx: MessageContext) -> str:
    """The From display name: the tenant's configured one, else "Demo s.r.o. přes esign-gateway"."""
    name = ctx.from_name or translations(ctx.language).text("{sender} via {service}", sender=ctx.sender_name,
                                                             service=ctx.service_name)
    return " ".join(name.split())  # no line break can reach the header


def service_name_of(mail_from: str) -> str:
    """The display name of the gateway's own address (``esign-gateway <noreply@…>``)."""
    return parseaddr(mail_from)[0] or "esign-gateway"


def _expiry(ctx: MessageContext) -> str:
    local = ctx.expires_at.astimezone(PRAGUE)
    utc = ctx.expires_at.astimezone(ZoneInfo("UTC"))
    return f"{local:%d.%m.%Y %H:%M} ({local.tzname()}, Europe/Prague; {utc:%Y-%m-%d %H:%M} UTC)"


def _labels(tr: Translations) -> dict[str, str]:
    return {
        "greeting": tr.gettext("Hello,"),
        "sender": tr.gettext("Sender"),
        "signer": tr.gettext("Signer"),
        "envelope": tr.gettext("Envelope"),
        "reason": tr.gettext("Reason"),
        "documents": tr.gettext("Documents"),
        "envelope_id": tr.gettext("Envelope ID"),
        "message": tr.gettext("Message from the sender"),
        "operator": tr.gettext("The signing service is operated by"),
        "contact": tr.gettext("Contact"),
        "privacy": tr.gettext("Privacy notice"),
        "logo": tr.gettext("Logo"),
    }


@dataclass(frozen=True, slots=True)
class _Action:
    """The button of an e-mail: its words, the words before the deadline, the note below it."""

    button: str
    until: str
    note: str


def _render(
    ctx: MessageContext, tr: Translations, *, subject: str, lead: str, action: _Action | None,
    reason: str | None = None, personal: bool = False,
) -> OutgoingEmail:
    """``personal``: the link is the signer's own (invitation, reminder): say so, and what to do
    with an unexpected request. Closing notices (completed, cancelled, declined, expired) have no
    such line."""
    values = {
        "t": _labels(tr), "ctx": ctx, "lead": lead, "action": action, "link": ctx.link if action else None,
        "expiry": _expiry(ctx), "reason": reason, "accent": ctx.accent or DEFAULT_ACCENT,
        "personal": tr.gettext("This link is meant for you alone; do not forward it. If you did not expect this "
                               "request, ignore this e-mail.") if personal else None,
    }
    return OutgoingEmail(
        to=ctx.signer_email,
        subject=subject,
        text=_env.get_template("message.txt").render(**values),
        html=_env.get_template("message.html").render(**values),
        reply_to=ctx.reply_to,
        headers={"X-Esign-Envelope-Id": ctx.envelope_id, "Auto-Submitted": "auto-generated"},
        from_name=from_display_name(ctx),
    )


def _sign_action(tr: Translations) -> _Action:
    return _Action(
        button=tr.gettext("View and sign the documents"),
        until=tr.gettext("You can sign until"),
        note=tr.gettext("You confirm your signature with a one-time code: on the signing page you ask for it and "
                        "we send it by SMS to your mobile phone."),
    )


def render_invitation(ctx: MessageContext) -> OutgoingEmail:
    tr = translations(ctx.language)
    return _render(
        ctx, tr, subject=tr.text("Signature request: {envelope}", envelope=ctx.envelope_name),
        lead=tr.text("you have been asked to sign the documents “{envelope}” electronically.",
                     envelope=ctx.envelope_name),
        action=_sign_action(tr), personal=True,
    )


def render_reminder(ctx: MessageContext) -> OutgoingEmail:
    tr = translations(ctx.language)
    return _render(
        ctx, tr, subject=tr.text("Reminder: your signature is awaited – {envelope}", envelope=ctx.envelope_name),
        lead=tr.text("this is a reminder that the documents “{envelope}” are still waiting for your signature.",
                     envelope=ctx.envelope_name),
        action=_sign_action(tr), personal=True,
    )


def render_cancelled(ctx: MessageContext, reason: str | None) -> OutgoingEmail:
    tr = translations(ctx.language)
    return _render(
        ctx, tr, subject=tr.text("Signature request cancelled: {envelope}", envelope=ctx.envelope_name),
        lead=tr.text("the request to sign the documents “{envelope}” has been cancelled. The signing link no "
                     "longer works and you need to do nothing more.", envelope=ctx.envelope_name),
        action=None, reason=reason,
    )


def render_completed(ctx: MessageContext) -> OutgoingEmail:
    """To each signer and to the sender's contact: the envelope ID and a time-limited download
    link (``ctx.link``, valid until ``ctx.expires_at``)."""
    tr = translations(ctx.language)
    return _render(
        ctx, tr, subject=tr.text("Signed by everyone: {envelope}", envelope=ctx.envelope_name),
        lead=tr.text("the documents “{envelope}” have been signed by all signers.", envelope=ctx.envelope_name),
        action=_Action(
            button=tr.gettext("Download the signed documents"),
            until=tr.gettext("The download link works until"),
            note=tr.gettext("The signed documents are archived for 3 years. Quote the envelope ID with any "
                            "question."),
        ),
    )


def render_ended(ctx: MessageContext, kind: str) -> OutgoingEmail:
    """The request ended without signatures: ``kind`` is ``declined`` or ``expired``."""
    tr = translations(ctx.language)
    if kind == "declined":
        subject = tr.text("Signature declined: {envelope}", envelope=ctx.envelope_name)
        lead = tr.text("the request to sign the documents “{envelope}” was declined and is closed. You need to do "
                       "nothing more.", envelope=ctx.envelope_name)
    else:
        subject = tr.text("Signature request expired: {envelope}", envelope=ctx.envelope_name)
        lead = tr.text("the request to sign the documents “{envelope}” has expired. If a signature is still "
                       "needed, the sender will send a new request.", envelope=ctx.envelope_name)
    return _render(ctx, tr, subject=subject, lead=lead, action=None)


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
    """The code SMS: the catalog's sentence with its diacritics stripped (GSM-7), one part of 160."""
    template = translations(language).gettext(
        "Code to sign “{envelope}” ({sender}): {code}. Valid for 5 minutes. Do not share it with anyone.")
    envelope, sender = _gsm_safe(envelope_name), _gsm_safe(sender_name)[:40]
    text = _gsm_safe(template.format(envelope=envelope, sender=sender, code=code))
    overflow = len(text) - 160
    if overflow > 0:
        envelope = envelope[: max(8, len(envelope) - overflow - 3)] + "..."
        text = _gsm_safe(template.format(envelope=envelope, sender=sender, code=code))
    return OutgoingSms(to=to, text=text)
