"""Message rendering and log redaction."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
import structlog

from esign_gateway.logging import configure_logging
from esign_gateway.messages import MessageContext, render_cancelled, render_code_sms, render_invitation


def ctx(language: str = "cs", name: str = "Smlouva o dílo 2026/042") -> MessageContext:
    return MessageContext(
        language=language, signer_name="Jana Nováková", signer_email="jana@example.cz", sender_name="Dodavatel s.r.o.",
        envelope_name=name, envelope_id="01a206aa-bcdb-750e-bbc5-e812ca10e709", message=None,
        document_names=["smlouva.pdf", "příloha.pdf"], expires_at=datetime(2026, 11, 30, 9, tzinfo=UTC),
        link="https://sign.example.test/sign/tok", reply_to=None,
    )


@pytest.mark.parametrize("language", ["cs", "sk", "en"])
def test_invitation_in_every_language_names_everything(language: str) -> None:
    mail = render_invitation(ctx(language))
    for part in (mail.text, mail.html):
        assert "https://sign.example.test/sign/tok" in part
        assert "01a206aa-bcdb-750e-bbc5-e812ca10e709" in part
        assert "příloha.pdf" in part and "Dodavatel s.r.o." in part
        assert "30.11.2026 10:00" in part  # Prague time (CET)


def test_html_escapes_a_hostile_envelope_name() -> None:
    mail = render_invitation(ctx(name='<script>alert("x")</script>'))
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html


def test_cancellation_notice_has_no_link() -> None:
    mail = render_cancelled(ctx(), "Nabídka stažena")
    assert "/sign/" not in mail.text and "/sign/" not in mail.html and "Nabídka stažena" in mail.text


@pytest.mark.parametrize("language", ["cs", "sk", "en"])
def test_code_sms_fits_one_gsm7_message(language: str) -> None:
    sms = render_code_sms(language, "+420601123456", "123456", "Smlouva o dílo 2026/042 " * 6, "Dodavatel s.r.o.")
    assert len(sms.text) <= 160 and "123456" in sms.text
    assert all(ord(c) < 128 for c in sms.text)


def test_logs_never_hold_tokens_codes_keys_or_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    log = structlog.get_logger("t")
    log.info("x", token="abc", code="123456", api_key="esk_secret", content=b"%PDF", note="see /sign/" + "A" * 43,
             other="esk_" + "b" * 40)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    event = json.loads(line)
    assert event["token"] == event["code"] == event["api_key"] == event["content"] == "[redacted]"
    assert "AAAA" not in line and "bbbb" not in line and not re.search(r"\b123456\b", line)


def test_every_address_in_a_free_text_is_masked() -> None:
    from esign_gateway.domain.masking import mask_addresses

    text = "550 5.1.1 <jana.novakova@example.cz>: no such user (also petr@firma.co.uk)"
    assert mask_addresses(text) == "550 5.1.1 <j***a@e***.cz>: no such user (also p***r@f***.uk)"
