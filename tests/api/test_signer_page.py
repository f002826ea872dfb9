"""The signer's page over HTTP: security headers, CSRF, language, and delivery problems."""

from __future__ import annotations

import re
from typing import Any

import pytest
import structlog.testing

from esign_gateway.container import Container
from esign_gateway.db.models import Job, OutboxEvent
from esign_gateway.errors import DeliveryError
from esign_gateway.ports import OutgoingEmail
from tests.api.conftest import Ceremony, Tenant, envelope_body, signer

SIGNER_HEADERS = {
    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


async def _link(api: Any, tenant: Tenant, ceremony: Ceremony, **extra: Any) -> tuple[str, str]:
    env = await (await api.post("/v1/envelopes", json=envelope_body(**extra), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    return env["id"], ceremony.link_token("jana@example.cz")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert match
    return match.group(1)


async def test_every_signer_page_carries_the_security_headers(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    _, token = await _link(api, tenant, ceremony)
    for path in (f"/sign/{token}", f"/api/sign/{token}", "/sign/unknown-link", "/download/forged"):
        resp = await api.get(path)
        for name, value in SIGNER_HEADERS.items():
            assert resp.headers[name] == value, (path, name)
        csp = resp.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    page = await (await api.get(f"/sign/{token}")).text()
    assert "<script>" not in page and 'src="/static/sign.js"' in page  # no inline script at all
    assert (await api.get("/sign/unknown-link")).status == 404
    # the documents are page images on our page (no PDF plugin: no <object>, no <iframe>); the PDF
    # download stays, and opened by itself it is framable by ourselves only
    assert "<object" not in page and "<iframe" not in page and re.search(r'<img [^>]*src="/sign/', page)
    doc = re.search(r'href="(/api/sign/[^"]+/documents/[^"?]+)\?download=1"', page)
    assert doc
    resp = await api.get(doc.group(1))
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN" and "frame-ancestors 'self'" in resp.headers[
        "Content-Security-Policy"]
    assert (await api.get("/static/../../bootstrap.py")).status == 404


async def test_forms_need_the_csrf_token_of_their_own_link_and_our_origin(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    _, token = await _link(api, tenant, ceremony)
    other = await (await api.post("/v1/envelopes", json=envelope_body([signer("Petr", "petr@example.cz",
                                                                              "+420602111222")]),
                                  headers=tenant.auth)).json()
    await ceremony.run_jobs()
    petr = ceremony.link_token("petr@example.cz")
    good = _csrf(await (await api.get(f"/sign/{token}")).text())
    foreign = _csrf(await (await api.get(f"/sign/{petr}")).text())
    assert good != foreign and other

    sms_dir = container.settings.outbox_dir / "sms"
    before = len(list(sms_dir.glob("*.json"))) if sms_dir.exists() else 0
    for data, headers in (({}, {}), ({"csrf": foreign}, {}), ({"csrf": "0" * 64}, {}),
                          ({"csrf": good}, {"Origin": "https://evil.example"})):
        resp = await api.post(f"/sign/{token}/code", data=data, headers=headers, allow_redirects=False)
        assert resp.status == 403, (data, headers)
        assert "Formulář vypršel" in await resp.text()
    assert (len(list(sms_dir.glob("*.json"))) if sms_dir.exists() else 0) == before  # no SMS went out
    ok = await api.post(f"/sign/{token}/code", data={"csrf": good, "lang": "cs"}, allow_redirects=False)
    assert ok.status == 303 and "notice=code_sent" in ok.headers["Location"]

    # the JSON API: only application/json, never from a foreign origin
    resp = await api.post(f"/api/sign/{token}/decline", data="reason=x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415 and (await resp.json())["code"] == "unsupported_media_type"
    resp = await api.post(f"/api/sign/{token}/decline", json={"reason": "x"},
                          headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    state = await (await api.get(f"/api/sign/{token}")).json()
    assert state["status"] == "viewed"


async def test_language_follows_the_envelope_and_can_be_switched(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    _, token = await _link(api, tenant, ceremony, language="sk")
    page = await (await api.get(f"/sign/{token}")).text()
    assert '<html lang="sk">' in page and "Poslať SMS kód" in page
    page = await (await api.get(f"/sign/{token}?lang=en")).text()
    assert '<html lang="en">' in page and "Send SMS code" in page and 'name="lang" value="en"' in page
    page = await (await api.get(f"/sign/{token}?lang=de")).text()
    assert '<html lang="sk">' in page  # an unknown language falls back to the envelope's
    csrf = _csrf(page)
    resp = await api.post(f"/sign/{token}/sign", data={"csrf": csrf, "lang": "en", "code": "12", "agree": "yes"},
                          allow_redirects=False)
    assert "lang=en" in resp.headers["Location"] and "error=invalid_code" in resp.headers["Location"]
    again = await (await api.get(resp.headers["Location"])).text()
    assert "Enter the 6 digits from the SMS." in again


class RefusingSmtp:
    """Wraps the real SMTP sender: this address is refused for good, that one for now."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def send(self, message: OutgoingEmail) -> None:
        if message.to.startswith("nobody@"):
            raise DeliveryError(f"The mail server refused the recipient: 550 5.1.1 <{message.to}> No such user",
                                permanent=True)
        if message.to.startswith("later@"):
            raise DeliveryError("SMTP answered 451 4.3.0 Try again later", permanent=False)
        await self.inner.send(message)


async def test_a_permanently_refused_invitation_makes_the_signer_undeliverable_and_tells_the_crm(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    container.notifications.email = RefusingSmtp(container.notifications.email)
    body = envelope_body([signer("Nikdo", "nobody@example.cz", "+420602111222"),
                          signer("Později", "later@example.cz", "+420603111222")])
    env = await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json()
    with structlog.testing.capture_logs() as logs:
        await ceremony.run_jobs()
    refused = [e for e in logs if e["event"] == "email_undeliverable"]
    assert refused and all("nobody@example.cz" not in str(e) for e in logs)  # the server quoted it in full
    state = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    nobody, later = state["signers"]
    assert nobody["status"] == "undeliverable" and "550 5.1.1" in nobody["delivery_error"]
    assert later["status"] == "notified" and later["delivery_error"] is None
    events = [e.payload for e in await OutboxEvent.filter(envelope_id=env["id"], type="signer.undeliverable")]
    assert len(events) == 1 and events[0]["data"]["signer"]["id"] == nobody["id"]
    trail = await (await api.get(f"/v1/envelopes/{env['id']}/audit",
                                 headers={**tenant.auth, "Accept": "application/json"})).json()
    assert any(e["type"] == "signer.undeliverable" and "550" in e["note"] for e in trail["events"])  # beside the chain
    # the transient one is retried by the job queue, not given up
    retry = next(j for j in await Job.filter(kind="send_invitation") if j.payload["signer_id"] == later["id"])
    assert retry.status == "pending" and retry.attempts == 1 and "451" in (retry.last_error or "")


def _parts(message: OutgoingEmail) -> tuple[str, str]:
    return message.text, message.html


@pytest.mark.parametrize("kind", ["invitation", "reminder", "completed", "declined", "expired", "cancelled"])
def test_each_email_carries_the_same_link_and_envelope_id_in_html_and_text(kind: str) -> None:
    from datetime import UTC, datetime

    from esign_gateway import messages

    ctx = messages.MessageContext(
        language="cs", signer_name="Jana", signer_email="jana@example.cz", sender_name="Dodavatel s.r.o.",
        envelope_name="Smlouva", envelope_id="01a206aa-bcdb-750e-bbc5-e812ca10e709", message=None,
        document_names=["smlouva.pdf"], expires_at=datetime(2026, 11, 30, 9, tzinfo=UTC),
        link="https://sign.example.test/sign/abc123XYZ", reply_to="obchod@dodavatel.cz",
    )
    message = {
        "invitation": lambda: messages.render_invitation(ctx), "reminder": lambda: messages.render_reminder(ctx),
        "completed": lambda: messages.render_completed(ctx), "declined": lambda: messages.render_ended(ctx, "declined"),
        "expired": lambda: messages.render_ended(ctx, "expired"),
        "cancelled": lambda: messages.render_cancelled(ctx, "omyl"),
    }[kind]()
    text, html = _parts(message)
    assert ctx.envelope_id in text and ctx.envelope_id in html
    text_links = set(re.findall(r"https://sign\.example\.test/\S+", text))
    html_links = set(re.findall(r'href="(https://sign\.example\.test/[^"]+)"', html))
    assert text_links == html_links
    assert bool(text_links) is (kind in ("invitation", "reminder", "completed"))
    assert message.reply_to == "obchod@dodavatel.cz" and message.headers["X-Esign-Envelope-Id"] == ctx.envelope_id
    assert "<img" not in html


async def test_wrong_codes_kill_the_code_and_then_block_the_signer_with_a_clear_page(
    api: Any, tenant: Tenant, ceremony: Ceremony, clock: Any
) -> None:
    _, token = await _link(api, tenant, ceremony)
    csrf = _csrf(await (await api.get(f"/sign/{token}")).text())
    form = {"csrf": csrf, "lang": "cs", "agree": "yes"}
    words = []
    for round_ in range(4):  # 3 wrong tries per code, 10 in all
        clock.advance(seconds=31)
        resp = await api.post(f"/sign/{token}/code", data=form, allow_redirects=False)
        assert resp.status == 303
        code = ceremony.last_code("+420601123456")
        wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
        for _ in range(3 if round_ < 3 else 1):
            resp = await api.post(f"/sign/{token}/sign", data={**form, "code": wrong}, allow_redirects=False)
            words.append(re.search(r"error=(\w+)", resp.headers["Location"]).group(1))  # type: ignore[union-attr]
    assert words[:3] == ["code_rejected", "code_rejected", "code_dead"]
    assert words[-1] == "auth_failed" and words.count("code_dead") == 3
    page = await (await api.get(f"/sign/{token}")).text()
    assert 'data-state="auth_failed"' in page and "Příliš mnoho chybných kódů" in page and "Dodavatel s.r.o." in page
    assert 'action="/sign/' not in page  # no form left to try again


async def test_a_form_post_that_redirects_is_logged_and_carries_the_signer_headers(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    _, token = await _link(api, tenant, ceremony)
    csrf = _csrf(await (await api.get(f"/sign/{token}")).text())
    with structlog.testing.capture_logs() as logs:
        resp = await api.post(f"/sign/{token}/code", data={"csrf": csrf, "lang": "cs"}, allow_redirects=False)
    assert resp.status == 303
    for name, value in SIGNER_HEADERS.items():
        assert resp.headers[name] == value, name
    lines = [e for e in logs if e["event"] == "request"]
    assert [e["status"] for e in lines] == [303]
    assert all(token not in str(e) for e in logs)  # never the raw path
