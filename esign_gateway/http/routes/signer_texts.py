"""Every word of the signer's pages, in cs/sk/en (the e-mails live in ``esign_gateway.messages``)."""

from __future__ import annotations

__all__ = ["DEAD_LINK", "ERRORS", "LANGUAGES", "NOTICES", "TEXT"]

LANGUAGES = ("cs", "sk", "en")

TEXT: dict[str, dict[str, str]] = {
    "cs": {
        "title": "Podpis dokumentů", "from": "Žádost o podpis od", "for": "Pro", "docs": "Dokumenty",
        "pages": "stran", "sign_on_page": "Váš podpis bude na straně {page}",
        "sign_on_added_page": "Váš podpis bude na podpisové straně na konci dokumentu (strana {page})",
        "download": "Stáhnout PDF", "open": "Otevřít dokument", "expires": "Podepsat lze do",
        "step_code": "Ověření telefonem", "step_sign": "Podpis", "phone": "Jednorázový kód pošleme SMS na číslo",
        "send_code": "Poslat SMS kód", "resend_code": "Poslat nový kód", "resend_in": "Nový kód lze poslat za",
        "seconds": "s", "code_label": "Kód z SMS (6 číslic)", "code_help": "Kód platí 5 minut.",
        "agree": "Souhlasím s elektronickým podpisem uvedených dokumentů", "sign": "Podepsat",
        "decline": "Odmítnout podpis", "reason": "Důvod odmítnutí (uvidí ho odesílatel)",
        "envelope_id": "ID obálky", "signed": "Podepsáno. Děkujeme.", "waiting": "Čekáme na podpis ostatních.",
        "declined": "Podpis jste odmítl(a). Odesílatel o tom ví.", "auth_failed_title": "Podepisování je zablokováno",
        "language": "Jazyk", "download_signed": "Stáhnout podepsané dokumenty",
        "about": "Tuto stránku provozuje podpisová brána odesílatele. Nikdy po Vás nebudeme chtít heslo ani údaje "
                 "o platební kartě. Podpis potvrzujete kódem z SMS na Váš telefon.",
        "reload": "Otevřít stránku znovu",
    },
    "sk": {
        "title": "Podpis dokumentov", "from": "Žiadosť o podpis od", "for": "Pre", "docs": "Dokumenty",
        "pages": "strán", "sign_on_page": "Váš podpis bude na strane {page}",
        "sign_on_added_page": "Váš podpis bude na podpisovej strane na konci dokumentu (strana {page})",
        "download": "Stiahnuť PDF", "open": "Otvoriť dokument", "expires": "Podpísať je možné do",
        "step_code": "Overenie telefónom", "step_sign": "Podpis", "phone": "Jednorazový kód pošleme SMS na číslo",
        "send_code": "Poslať SMS kód", "resend_code": "Poslať nový kód", "resend_in": "Nový kód je možné poslať o",
        "seconds": "s", "code_label": "Kód z SMS (6 číslic)", "code_help": "Kód platí 5 minút.",
        "agree": "Súhlasím s elektronickým podpisom uvedených dokumentov", "sign": "Podpísať",
        "decline": "Odmietnuť podpis", "reason": "Dôvod odmietnutia (uvidí ho odosielateľ)",
        "envelope_id": "ID obálky", "signed": "Podpísané. Ďakujeme.", "waiting": "Čakáme na podpis ostatných.",
        "declined": "Podpis ste odmietli. Odosielateľ o tom vie.", "auth_failed_title": "Podpisovanie je zablokované",
        "language": "Jazyk", "download_signed": "Stiahnuť podpísané dokumenty",
        "about": "Túto stránku prevádzkuje podpisová brána odosielateľa. Nikdy od Vás nebudeme chcieť heslo ani "
                 "údaje o platobnej karte. Podpis potvrdzujete kódom z SMS na Váš telefón.",
        "reload": "Otvoriť stránku znovu",
    },
    "en": {
        "title": "Sign documents", "from": "Signature requested by", "for": "For", "docs": "Documents",
        "pages": "pages", "sign_on_page": "Your signature goes on page {page}",
        "sign_on_added_page": "Your signature goes on the signature page at the end of the document (page {page})",
        "download": "Download PDF", "open": "Open the document", "expires": "You can sign until",
        "step_code": "Confirm your phone", "step_sign": "Sign", "phone": "We send a one-time code by SMS to",
        "send_code": "Send SMS code", "resend_code": "Send a new code", "resend_in": "A new code can be sent in",
        "seconds": "s", "code_label": "Code from the SMS (6 digits)", "code_help": "The code is valid for 5 minutes.",
        "agree": "I agree to sign the documents above electronically", "sign": "Sign",
        "decline": "Decline to sign", "reason": "Reason for declining (the sender will see it)",
        "envelope_id": "Envelope ID", "signed": "Signed. Thank you.", "waiting": "Waiting for the other signers.",
        "declined": "You declined to sign. The sender has been told.", "auth_failed_title": "Signing is blocked",
        "language": "Language", "download_signed": "Download the signed documents",
        "about": "This page is run by the sender's signing gateway. We will never ask for a password or card "
                 "details. You confirm your signature with a code sent by SMS to your phone.",
        "reload": "Open the page again",
    },
}

NOTICES: dict[str, dict[str, str]] = {
    "cs": {"code_sent": "Kód jsme poslali SMS zprávou.", "signed": "Podepsáno. Děkujeme."},
    "sk": {"code_sent": "Kód sme poslali SMS správou.", "signed": "Podpísané. Ďakujeme."},
    "en": {"code_sent": "We sent the code by SMS.", "signed": "Signed. Thank you."},
}

ERRORS: dict[str, dict[str, str]] = {
    "cs": {
        "code_rejected": "Kód nesouhlasí. Zbývající pokusy: {left}.",
        "code_expired": "Kód vypršel nebo nebyl odeslán. Požádejte o nový kód.",
        "code_dead": "Třikrát chybný kód: tento kód už neplatí. Požádejte o nový kód.",
        "auth_failed": "Příliš mnoho chybných kódů: podepisování tímto odkazem je zablokováno. "
                       "Obraťte se na odesílatele ({sender}).",
        "rate_limited": "Nový kód lze poslat za {wait} s.",
        "delivery_failed": "SMS se nepodařilo odeslat. Zkuste to prosím za chvíli.",
        "invalid_code": "Zadejte 6 číslic z SMS.", "agree_required": "Pro podpis zaškrtněte souhlas.",
        "reason_required": "Napište prosím důvod odmítnutí.",
        "csrf": "Formulář vypršel. Otevřete prosím stránku znovu a akci zopakujte.",
        "provider_error": "Podpis se na naší straně nepodařil. Zkuste to znovu; přijatý kód platí 10 minut.",
        "invalid_state": "Tento krok teď není možný.", "unknown": "Něco se nepovedlo. Zkuste to prosím znovu.",
    },
    "sk": {
        "code_rejected": "Kód nesúhlasí. Zostávajúce pokusy: {left}.",
        "code_expired": "Kód vypršal alebo nebol odoslaný. Požiadajte o nový kód.",
        "code_dead": "Trikrát chybný kód: tento kód už neplatí. Požiadajte o nový kód.",
        "auth_failed": "Príliš veľa chybných kódov: podpisovanie týmto odkazom je zablokované. "
                       "Obráťte sa na odosielateľa ({sender}).",
        "rate_limited": "Nový kód je možné poslať o {wait} s.",
        "delivery_failed": "SMS sa nepodarilo odoslať. Skúste to prosím o chvíľu.",
        "invalid_code": "Zadajte 6 číslic z SMS.", "agree_required": "Na podpis zaškrtnite súhlas.",
        "reason_required": "Napíšte prosím dôvod odmietnutia.",
        "csrf": "Formulár vypršal. Otvorte prosím stránku znovu a akciu zopakujte.",
        "provider_error": "Podpis sa na našej strane nepodaril. Skúste to znovu; prijatý kód platí 10 minút.",
        "invalid_state": "Tento krok teraz nie je možný.", "unknown": "Niečo sa nepodarilo. Skúste to prosím znovu.",
    },
    "en": {
        "code_rejected": "The code does not match. Tries left: {left}.",
        "code_expired": "The code has expired or was not sent. Ask for a new code.",
        "code_dead": "Three wrong tries: this code no longer works. Ask for a new code.",
        "auth_failed": "Too many wrong codes: signing with this link is blocked. Contact the sender ({sender}).",
        "rate_limited": "A new code can be sent in {wait} s.",
        "delivery_failed": "We could not send the SMS. Please try again in a moment.",
        "invalid_code": "Enter the 6 digits from the SMS.", "agree_required": "Tick the consent to sign.",
        "reason_required": "Please write why you decline.",
        "csrf": "The form has expired. Please open the page again and repeat the step.",
        "provider_error": "Signing failed on our side. Try again; the accepted code stays valid for 10 minutes.",
        "invalid_state": "This step is not possible now.", "unknown": "Something went wrong. Please try again.",
    },
}

DEAD_LINK: dict[str, dict[str, str]] = {
    "cs": {"expired": "Platnost odkazu k podpisu vypršela. Pokud máte dokument stále podepsat, požádejte odesílatele o "
                      "nový odkaz.",
           "cancelled": "Odesílatel žádost o podpis zrušil.",
           "completed": "Dokumenty již podepsaly všechny strany.",
           "declined": "Podpis byl odmítnut; žádost je uzavřena.", "not_found": "Tento odkaz k podpisu neznáme. "
           "Zkontrolujte, že jste jej z e-mailu zkopírovali celý.",
           "download_expired": "Odkaz ke stažení vypršel nebo je neplatný. Požádejte odesílatele o kopii.",
           "purged": "Dokumenty této obálky už nejsou archivovány."},
    "sk": {"expired": "Platnosť odkazu na podpis vypršala. Ak máte dokument stále podpísať, požiadajte odosielateľa "
                      "o nový odkaz.",
           "cancelled": "Odosielateľ žiadosť o podpis zrušil.",
           "completed": "Dokumenty už podpísali všetky strany.",
           "declined": "Podpis bol odmietnutý; žiadosť je uzavretá.", "not_found": "Tento odkaz na podpis nepoznáme. "
           "Skontrolujte, že ste ho z e-mailu skopírovali celý.",
           "download_expired": "Odkaz na stiahnutie vypršal alebo je neplatný. Požiadajte odosielateľa o kópiu.",
           "purged": "Dokumenty tejto obálky už nie sú archivované."},
    "en": {"expired": "This signing link has expired. If you still need to sign, ask the sender for a new link.",
           "cancelled": "The sender cancelled this signing request.",
           "completed": "All parties have signed the documents.",
           "declined": "Signing was declined; the request is closed.",
           "not_found": "We do not know this signing link. Check that you copied all of it from the e-mail.",
           "download_expired": "This download link has expired or is not valid. Ask the sender for a copy.",
           "purged": "The documents of this envelope are no longer archived."},
}
