"""Message rendering and log redaction."""

from __future__ import annotations

import json
import logging
import re
import warnings
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


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]  # a plain line fails here


def test_a_library_record_goes_through_the_same_processors(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    capsys.readouterr()
    structlog.contextvars.bind_contextvars(request_id="r-1", envelope_id="env-1")
    try:
        logging.getLogger("pyhanko.pdf_utils.reader").warning(
            "startxref on same line as offset in %s, see /sign/%s for jana@example.cz, +420601123456",
            "doc", "A" * 43)
        logging.getLogger("tortoise").info("a query")  # quiet below WARNING
    finally:
        structlog.contextvars.clear_contextvars()
    out = capsys.readouterr().out
    [event] = _lines(out)
    assert event["logger"] == "pyhanko.pdf_utils.reader" and event["level"] == "warning"
    assert event["request_id"] == "r-1" and event["envelope_id"] == "env-1"
    assert str(event["timestamp"]).endswith("Z")
    assert str(event["event"]).startswith("startxref on same line as offset in doc, see [redacted]")
    assert "AAAA" not in out and "jana@example.cz" not in out and "601123456" not in out
    assert "j***a@e***.cz" in out and "+420 *** *** 456" in out


def test_a_library_traceback_is_one_line_with_an_exception_field(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    capsys.readouterr()
    try:
        raise RuntimeError("Bearer esk_live_9f8e7d6c5b4a3928 refused")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    out = capsys.readouterr().out
    [event] = _lines(out)
    assert event["level"] == "error" and event["event"] == "Task exception was never retrieved"
    assert "Traceback" in str(event["exception"]) and "RuntimeError" in str(event["exception"])
    assert "9f8e7d6c5b4a3928" not in out


def test_a_python_warning_is_a_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        configure_logging("INFO", json=True)
        capsys.readouterr()
        warnings.warn("weak digest in /download/" + "B" * 43, UserWarning, stacklevel=1)
    out, err = capsys.readouterr()
    [event] = _lines(out)
    assert err == "" and event["logger"] == "py.warnings" and event["level"] == "warning"
    assert "UserWarning: weak digest in [redacted]" in str(event["event"]) and "BBBB" not in out


def test_our_own_lines_mask_addresses_and_phones(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    capsys.readouterr()
    structlog.get_logger("t").warning("sms_failed", detail="550 <jana.novakova@example.cz> and +420601123456")
    [event] = _lines(capsys.readouterr().out)
    assert event["detail"] == "550 <j***a@e***.cz> and +420 *** *** 456"
    assert event["logger"] == "t" and event["level"] == "warning"


async def test_a_500_logs_its_traceback_once_on_its_request_line(capsys: pytest.CaptureFixture[str]) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from esign_gateway.http.middlewares import middlewares

    async def broken(request: web.Request) -> web.Response:
        raise KeyError("a bug of ours")

    app = web.Application(middlewares=middlewares)
    app.router.add_get("/v1/broken/{id}", broken)
    configure_logging("INFO", json=True)
    async with TestClient(TestServer(app)) as client:
        capsys.readouterr()
        resp = await client.get("/v1/broken/x", headers={"X-Request-Id": "r-500"})
        assert resp.status == 500 and (await resp.json())["code"] == "internal_error"
    lines = _lines(capsys.readouterr().out)
    mine = [e for e in lines if e.get("request_id") == "r-500"]
    assert [(e["event"], e["level"], e["status"], e["error"]) for e in mine] == [("request", "error", 500, "KeyError")]
    assert str(mine[0]["exception"]).count("Traceback") == 1 and "a bug of ours" in str(mine[0]["exception"])
    assert isinstance(mine[0]["duration_ms"], float) and mine[0]["route"] == "/v1/broken/{id}"
    assert sum("Traceback" in json.dumps(e) for e in lines) == 1
