"""The audit report and everything a Czech or Slovak signer reads are in their language: the
report states what the signature is, each signer's PAdES level and the TSA time of their own
signature apart from the document timestamp, and no English or raw code reaches a cs/sk page,
e-mail, SMS or report (compared with the English catalog's texts)."""

from __future__ import annotations

import html as html_lib
import io
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from pyhanko.pdf_utils.reader import PdfFileReader

from esign_gateway.container import Container
from esign_gateway.db.models import AuditEvent
from esign_gateway.i18n import catalog_path
from tests.api.conftest import Ceremony, envelope_body, signer
from tests.conftest import SmtpServer, Tenant

JANA = ("jana@example.cz", "+420601123456")
PETR = ("petr@example.cz", "+420602654321")
SAME_IN_EVERY_LANGUAGE = {"E-mail", "Logo", "s", "Document", "Documents", "Status", "Contact"}
"""English texts that are also ordinary words or ids in a cs/sk text (checked elsewhere by the catalog)."""
RAW_CODES = re.compile(r"\b(completed|declined|cancelled|expired|draft|local|email_sms|gateway_seal|auth_failed|"
                       r"(?:signer|envelope|document)\.[a-z_]+)\b")


@pytest.fixture
def ceremony(api: Any, container: Container, smtp_server: SmtpServer) -> Ceremony:
    return Ceremony(api, container, smtp_server)


def _english_fragments() -> list[str]:
    """The English catalog's texts as fragments without placeholders, each long enough to mean
    something: a phrase of two words or more, or a word not shared with the other languages."""
    with catalog_path("en").open("rb") as fh:
        catalog = read_po(fh, locale="en")
    out = set()
    for m in catalog:
        if not m.id:
            continue
        for text in m.string if isinstance(m.string, tuple) else (m.string,):
            for part in re.split(r"\{\w+\}", text):
                part = part.strip(" :;,.()“”–-")
                if " " in part or (len(part) > 3 and part not in SAME_IN_EVERY_LANGUAGE):
                    out.add(part)
    return sorted(out)


def _visible(page: str) -> str:
    """A page's text as a reader meets it: text nodes and the alt/aria-label/title attributes."""
    page = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", page)
    attrs = " ".join(re.findall(r'(?:alt|aria-label|title)="([^"]*)"', page))
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", page) + " " + attrs)


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True, text=True)
    return out.stdout


def _english_in(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [f for f in _english_fragments() if re.search(rf"(?<!\w){re.escape(f)}(?!\w)", flat)]


def _gen_time(signed_data: Any) -> datetime:
    return signed_data["encap_content_info"]["content"].parsed["gen_time"].native.astimezone(UTC)


def _token(signer_info: Any) -> Any:
    """The signature's own RFC 3161 token: the unsigned attribute signature_time_stamp_token."""
    (token,) = [a["values"][0]["content"] for a in signer_info["unsigned_attrs"]
                if a["type"].native == "signature_time_stamp_token"]
    return token


async def _signed_by_two(api: Any, tenant: Tenant, ceremony: Ceremony, language: str) -> dict[str, Any]:
    body = envelope_body([signer(), signer("Petr Šťastný", PETR[0], PETR[1])], language=language)
    env = await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json()
    await ceremony.run_jobs()
    for email, phone in (JANA, PETR):
        await ceremony.sign(ceremony.link_token(email), phone)
    await ceremony.run_jobs()
    await ceremony.run_jobs()
    return dict(env)


async def test_report_says_what_the_signature_is_and_each_signers_own_tsa_time_apart_from_the_document_timestamp(
    api: Any, tenant: Tenant, ceremony: Ceremony, tmp_path: Path
) -> None:
    env = await _signed_by_two(api, tenant, ceremony, "cs")
    signed = await (await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)).read()
    reader = PdfFileReader(io.BytesIO(signed), strict=False)
    own = {s.field_name: _gen_time(_token(s.signer_info)) for s in reader.embedded_regular_signatures}
    (document_ts,) = [_gen_time(t.signed_data) for t in reader.embedded_timestamp_signatures]
    state = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    ids = {s["name"]: s["id"] for s in state["signers"]}

    # the trail records each signature's own timestamp, the last signer's too (not the document timestamp's)
    for name, signer_id in ids.items():
        event = await AuditEvent.get(envelope_id=env["id"], type="signer.signed", signer_id=signer_id)
        assert datetime.fromisoformat(event.data["tsa_time"]) == own[f"Signature-{signer_id}"], name
    petr = own[f"Signature-{ids['Petr Šťastný']}"]
    assert petr != document_ts

    text = _pdf_text(await (await api.get(f"/v1/envelopes/{env['id']}/audit", headers=tenant.auth)).read(), tmp_path)
    flat = " ".join(text.split())
    assert "technicky jde o elektronickou pečeť brány" in flat
    assert "prostý elektronický podpis podepisujících, nikoli o zaručený ani o kvalifikovaný" in flat
    for name, signer_id in ids.items():
        row = next(line for line in text.splitlines() if line.strip().startswith(name) and "B-" in line)
        assert "B-LTA" in row, row
        assert own[f"Signature-{signer_id}"].strftime("%Y-%m-%d %H:%M:%S") in row, (name, row)
    section = flat[flat.index("Časová razítka dokumentů (TSA)"):]
    assert document_ts.strftime("%Y-%m-%d %H:%M:%S") in section


async def test_a_cancelled_envelopes_report_gives_the_reason_and_every_state_as_words(
    api: Any, tenant: Tenant, ceremony: Ceremony, tmp_path: Path
) -> None:
    env = await (await api.post("/v1/envelopes", json=envelope_body(language="sk"), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    resp = await api.post(f"/v1/envelopes/{env['id']}/cancel", json={"reason": "Zmena ceny"}, headers=tenant.auth)
    assert resp.status == 200, await resp.text()
    await ceremony.run_jobs()
    text = _pdf_text(await (await api.get(f"/v1/envelopes/{env['id']}/audit", headers=tenant.auth)).read(), tmp_path)
    flat = " ".join(text.split())
    assert "Dôvod zrušenia Zmena ceny" in flat and "Obálka bola zrušená" in flat
    assert not RAW_CODES.findall(flat), RAW_CODES.findall(flat)
    assert not _english_in(text), _english_in(text)


@pytest.mark.parametrize("language", ["cs", "sk"])
async def test_no_english_reaches_a_czech_or_slovak_page_email_sms_or_report(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, tmp_path: Path, language: str, clock: Any
) -> None:
    body = envelope_body([signer(), signer("Petr Šťastný", PETR[0], PETR[1])], language=language)
    env = await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json()
    await ceremony.run_jobs()
    token = ceremony.link_token(JANA[0])
    read: dict[str, str] = {"page": _visible(await (await api.get(f"/sign/{token}")).text())}
    await ceremony.request_code(token)
    read["page, code sent"] = _visible(await (await api.get(f"/sign/{token}?notice=code_sent")).text())
    read["page, wrong code"] = _visible(await (await api.get(f"/sign/{token}?error=code_rejected&left=2")).text())
    sms = sorted((Path(container.settings.outbox_dir) / "sms").glob("*.json"))[-1]
    read["sms"] = json.loads(sms.read_text())["text"]
    clock.advance(seconds=31)
    await ceremony.sign(token, JANA[1])
    read["page, signed"] = _visible(await (await api.get(f"/sign/{token}")).text())
    await ceremony.sign(ceremony.link_token(PETR[0]), PETR[1])
    await ceremony.run_jobs()
    await ceremony.run_jobs()
    read["page, completed"] = _visible(await (await api.get(f"/sign/{token}")).text())
    for n, mail in enumerate(ceremony.smtp.to(JANA[0])):
        read[f"e-mail {n} subject"] = str(mail["Subject"])
        read[f"e-mail {n} text"] = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        read[f"e-mail {n} html"] = _visible(mail.get_body(("html",)).get_content())  # type: ignore[union-attr]
    assert len(ceremony.smtp.to(JANA[0])) >= 2  # the invitation and the completion
    pdf = await (await api.get(f"/v1/envelopes/{env['id']}/audit", headers=tenant.auth)).read()
    read["report"] = _pdf_text(pdf, tmp_path)
    english = {what: _english_in(text) for what, text in read.items()}
    assert not any(english.values()), {k: v for k, v in english.items() if v}
    assert not RAW_CODES.findall(" ".join(read["report"].split()))
