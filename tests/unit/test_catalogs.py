"""The gettext catalog "esign": every string the code marks is translated in cs, sk and en, with
real plural forms, and what a Czech or Slovak reader gets holds no English."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from esign_gateway.i18n import LANGUAGES, catalog_path, translations

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {**DEFAULT_KEYWORDS, "text": None, "ntext": (1, 2)}  # as `make messages` (-k text -k ntext:1,2)


def _method_map() -> list[tuple[str, str]]:
    """babel.cfg's sections, the file `make messages` extracts with."""
    return [(line.strip("[] \n").split(":", 1)[1].strip(), line.strip("[] \n").split(":", 1)[0])
            for line in (ROOT / "babel.cfg").read_text().splitlines() if line.startswith("[")]


def _source_ids() -> set[str | tuple[str, ...]]:
    found = extract_from_dir(str(ROOT), _method_map(), keywords=KEYWORDS,
                             directory_filter=lambda d: not Path(d).name.startswith(".") and
                             Path(d).name not in ("__pycache__", "tests", "bench", "docs"))
    ids: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, _context in found:
        ids.add(message if isinstance(message, str) else tuple(message))
    return ids


def _catalog(language: str):  # type: ignore[no-untyped-def]
    with catalog_path(language).open("rb") as fh:
        return read_po(fh, locale=language)


def test_extraction_finds_the_page_mail_sms_report_stamp_and_signature_page_strings() -> None:
    ids = _source_ids()
    for probe in ("Hello,", "Signer:", "Electronic signature audit report", "Signed electronically by",
                  "Signature page", ("{n} page", "{n} pages")):
        assert probe in ids, probe


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_id_is_translated_in_every_catalog_and_none_is_fuzzy_or_empty(language: str) -> None:
    catalog = _catalog(language)
    entries = {m.id if isinstance(m.id, str) else tuple(m.id): m for m in catalog if m.id}
    missing = sorted(map(str, _source_ids() - set(entries)))
    assert not missing, f"{language}: not in the catalog (run make messages and translate): {missing}"
    for key, m in entries.items():
        assert not m.fuzzy, (language, key)
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        assert strings and all(s.strip() for s in strings), (language, key)
        # the same {placeholders} as the message id: a translation may move one, never drop or add one
        wanted = set(re.findall(r"\{(\w+)\}", " ".join(key if isinstance(key, tuple) else (key,))))
        for s in strings:
            assert set(re.findall(r"\{(\w+)\}", s)) == wanted, (language, key, s)


@pytest.mark.parametrize(("language", "one", "few", "many"), [
    ("cs", "1 strana", "2 strany", "5 stran"),
    ("sk", "1 strana", "2 strany", "5 strán"),
    ("en", "1 page", "2 pages", "5 pages"),
])
def test_page_counts_use_the_languages_plural_forms(language: str, one: str, few: str, many: str) -> None:
    tr = translations(language)
    assert [tr.ntext("{n} page", "{n} pages", n) for n in (1, 2, 5)] == [one, few, many]
    assert tr.ntext("{n} page", "{n} pages", 4) == few.replace("2", "4")
    assert tr.ntext("{n} page", "{n} pages", 25) == many.replace("5", "25")


def test_an_unknown_language_gets_czech() -> None:
    assert translations("de").gettext("Hello,") == "Dobrý den,"
