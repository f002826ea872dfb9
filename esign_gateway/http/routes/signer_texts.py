"""Every word of the signer's pages, from the gettext catalog (``esign_gateway.i18n``).

The page templates read ``t.<key>``; each key names an English message id below (marked with
``N_`` for extraction) and ``TEXT[lang]`` is the catalog's translation of all of them. A count
goes through ``t.pages(n)``, with the language's plural forms ("1 strana / 2 strany / 5 stran").
Names are never declined: the sender and the signer stand in labelled lines ("Podepisující:").
The e-mails and the SMS live in ``esign_gateway.messages``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from esign_gateway.i18n import LANGUAGES, N_, translations

__all__ = ["DEAD_LINK", "ERRORS", "LANGUAGES", "NOTICES", "TEXT", "PageTexts"]

_PAGE: dict[str, str] = {
    "title": N_("Sign documents"),
    "from": N_("Sender:"),
    "for": N_("Signer:"),
    "docs": N_("Documents"),
    "sign_on_page": N_("Your signature goes on page {page}"),
    "sign_on_added_page": N_("Your signature goes on the signature page at the end of the document (page {page})"),
    "download": N_("Download PDF"),
    "open": N_("Open the document"),
    "expires": N_("You can sign until"),
    "step_code": N_("Confirm your phone"),
    "step_sign": N_("Signature"),
    "phone": N_("We will send a one-time code by SMS to"),
    "phone_sent": N_("We sent the code by SMS to"),
    "send_code": N_("Send the code by SMS"),
    "resend_code": N_("Send a new code"),
    "resend_in": N_("that is in"),
    "seconds": N_("s"),
    "code_label": N_("Code from the SMS (6 digits)"),
    "code_help": N_("The code is valid for 5 minutes."),
    "agree": N_("I agree to sign the documents above electronically"),
    "sign": N_("Sign"),
    "decline": N_("Decline to sign"),
    "reason": N_("Reason for declining (the sender will see it)"),
    "envelope_id": N_("Envelope ID"),
    "signed": N_("Signed. Thank you."),
    "waiting": N_("The other signers have yet to sign."),
    "declined": N_("Signing was declined. The sender has been told."),
    "auth_failed_title": N_("Signing is blocked"),
    "language": N_("Language"),
    "download_signed": N_("Download the signed documents"),
    "about": N_("We will never ask you for a password or card details. You confirm your signature with a code "
                "sent by SMS to your phone."),
    "operator": N_("The signing service is operated by"),
    "contact": N_("Contact"),
    "privacy": N_("Privacy notice"),
    "logo": N_("Logo"),
    "reload": N_("Open the page again"),
    "page_alt": N_("Page {page} of {pages}"),
    "your_place": N_("your signature goes here"),
    "next_code_from": N_("You can ask for another code from"),
}

_NOTICES: dict[str, str] = {
    "code_sent": N_("We sent the code by SMS."),
    "signed": N_("Signed. Thank you."),
}

_ERRORS: dict[str, str] = {
    "code_rejected": N_("The code does not match. Tries left: {left}."),
    "code_expired": N_("The code has expired or was not sent. Ask for a new code."),
    "code_dead": N_("Three wrong tries: this code no longer works. Ask for a new code."),
    "auth_failed": N_("Too many wrong codes: signing with this link is blocked. Contact the sender ({sender})."),
    "rate_limited": N_("A new code can be sent in {wait} s."),
    "delivery_failed": N_("We could not send the SMS. Please try again in a moment."),
    "invalid_code": N_("Enter the 6 digits from the SMS."),
    "agree_required": N_("Tick the consent to sign."),
    "reason_required": N_("Please write why you decline."),
    "csrf": N_("The form has expired. Please open the page again and repeat the step."),
    "provider_error": N_("Signing failed on our side. Try again; the accepted code stays valid for 10 minutes."),
    "invalid_state": N_("This step is not possible now."),
    "unknown": N_("Something went wrong. Please try again."),
}

_DEAD_LINK: dict[str, str] = {
    "expired": N_("This signing link has expired. If you still need to sign, ask the sender for a new link."),
    "cancelled": N_("The signing request was cancelled."),
    "completed": N_("All signers have signed the documents."),
    "declined": N_("Signing was declined; the request is closed."),
    "not_found": N_("We do not know this signing link. Check that you copied all of it from the e-mail."),
    "download_expired": N_("This download link has expired or is not valid. Ask the sender for a copy."),
    "purged": N_("The documents of this envelope are no longer archived."),
}


class PageTexts(dict[str, str]):
    """One language's page texts (``t.title`` in a template) and its counted phrases."""

    language: str

    def pages(self, n: int) -> str:
        return translations(self.language).ntext("{n} page", "{n} pages", n)


class _Catalog(Mapping[str, dict[str, str]]):
    """``{language: {key: text}}`` read from the catalog when a language is first asked for."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = keys
        self._cache: dict[str, PageTexts] = {}

    def __getitem__(self, language: str) -> PageTexts:
        if language not in LANGUAGES:
            raise KeyError(language)
        if language not in self._cache:
            tr = translations(language)
            texts = PageTexts({key: tr.gettext(message) for key, message in self._keys.items()})
            texts.language = language
            self._cache[language] = texts
        return self._cache[language]

    def __iter__(self) -> Iterator[str]:
        return iter(LANGUAGES)

    def __len__(self) -> int:
        return len(LANGUAGES)


TEXT = _Catalog(_PAGE)
NOTICES = _Catalog(_NOTICES)
ERRORS = _Catalog(_ERRORS)
DEAD_LINK = _Catalog(_DEAD_LINK)
