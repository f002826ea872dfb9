"""The gettext catalogs of everything a signer or a reader of the audit report sees (cs, sk, en).

One domain, ``esign``: the signer's page, the e-mails, the SMS, the audit report, the signature
stamp and the signature page. The catalogs are the ``.po`` files under
``esign_gateway/locale/{cs,sk,en}/LC_MESSAGES/esign.po``; each is read with Babel's ``read_po``
the first time its language is asked for in a process (a few milliseconds) and kept. There is no
compiled ``.mo`` to build or to fall out of step with its source. A fuzzy or empty entry is never
used (``tests/unit/test_catalogs.py`` refuses both, and refuses a source string missing from a
catalog). ``make messages`` extracts the strings (``babel.cfg``) and updates the catalogs.

Message ids are the English texts; placeholders are ``{name}`` fields filled with ``str.format``
after the lookup, so a translation may move them. Plural forms come from each catalog's
``Plural-Forms`` header (Czech and Slovak: 1 / 2–4 / 5+).

This module imports only the standard library and Babel: the adapters that write text into PDFs
(the audit report, the stamp, the signature page) read the same catalog through it.
"""

from __future__ import annotations

import functools
import io
from gettext import GNUTranslations
from pathlib import Path

__all__ = ["DEFAULT_LANGUAGE", "DOMAIN", "LANGUAGES", "LOCALE_DIR", "N_", "Translations", "catalog_path",
           "translations"]

DOMAIN = "esign"
LANGUAGES = ("cs", "sk", "en")
DEFAULT_LANGUAGE = "cs"
LOCALE_DIR = Path(__file__).parent / "locale"


def N_(message: str) -> str:
    """Marks a string for extraction where it is defined; it is translated where it is shown."""
    return message


class Translations(GNUTranslations):
    """One language's catalog. ``gettext``/``ngettext`` as the standard library's, plus ``format``
    helpers that fill ``{name}`` placeholders after the lookup."""

    language: str

    def text(self, message: str, **values: object) -> str:
        found = self.gettext(message)
        return found.format(**values) if values else found

    def ntext(self, singular: str, plural: str, n: int, **values: object) -> str:
        return self.ngettext(singular, plural, n).format(n=n, **values)


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(language: str) -> Translations:
    """The catalog of ``language`` (an unknown one gets Czech, the gateway's default)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    with catalog_path(lang).open("rb") as fh:
        catalog = read_po(fh, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    out = Translations(buf)
    out.language = lang
    return out
