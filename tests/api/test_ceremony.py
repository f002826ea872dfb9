"""Whole ceremonies over the real HTTP API: real SMTP, real SMS outbox, real pyHanko signatures."""

from __future__ import annotations

import asyncio
import io
import re
import zipfile
from typing import Any

import structlog.testing

from adapters.providers.local import pades
from esign_gateway.db.models import AuditEvent
from esign_gateway.db.repositories import verify_chain
from esign_gateway.errors import ProviderError
from tests.api.conftest import Ceremony, Tenant, envelope_body, signer
from tests.factories import signature_kinds


async def _validate(pdf: bytes, material: Any) -> list[Any]:
    """pyHanko's validator against the dev CA (in a thread: it runs its own event loop)."""
    return await asyncio.to_thread(pades.validate, pdf, pades.load_roots(material.trust_root_paths))


async def _create(api: Any, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_one_signer_signs_and_the_result_validates(
    api: Any, tenant: Tenant, ceremony: Ceremony, shared_parts: dict[str, Any]
) -> None:
    env = await _create(api, tenant, envelope_body())
    assert env["status"] == "sent"
    assert env["signers"][0]["status"] == "notified"
    assert env["expires_at"] == "2026-11-30T09:00:00Z" or env["expires_at"].startswith("2026-11-30T09:00:00")

    await ceremony.run_jobs()
    mail = ceremony.smtp.to("jana@example.cz")[-1]
    text = mail.get_body(("plain",)).get_content()
    assert env["id"] in text  # the envelope ID is in the invitation
    token = ceremony.link_token("jana@example.cz")

    view = await (await api.get(f"/api/sign/{token}")).json()
    assert view["envelope_id"] == env["id"]
    assert view["phone"].endswith("456") and "601" not in view["phone"]

    await ceremony.sign(token, "+420601123456")

    done = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert done["status"] == "completed"
    assert done["signers"][0]["status"] == "signed"
    assert done["retained_until"].startswith("2029-11-23")
    assert done["documents"][0]["signed_sha256"] not in (None, done["documents"][0]["sha256"])

    resp = await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)
    assert resp.status == 200 and resp.content_type == "application/pdf"
    pdf = await resp.read()
    checks = await _validate(pdf, shared_parts["material"])
    assert len(checks) == 1
    assert checks[0].intact and checks[0].valid and checks[0].trusted
    assert checks[0].timestamp is not None

    # one flipped byte inside the signed range breaks it
    tampered = bytearray(pdf)
    tampered[len(pdf) // 3] ^= 0x01
    assert not all(c.intact and c.valid for c in await _validate(bytes(tampered), shared_parts["material"]))

    trail = await (await api.get(f"/v1/envelopes/{env['id']}/audit",
                                 headers={**tenant.auth, "Accept": "application/json"})).json()
    types = [e["type"] for e in trail["events"]]
    for expected in ("envelope.created", "envelope.sent", "signer.invitation_sent", "signer.viewed",
                     "signer.code_sent", "signer.code_verified", "signer.signed", "envelope.completed"):
        assert expected in types
    viewed = next(e for e in trail["events"] if e["type"] == "signer.viewed")
    assert viewed["ip"] == "127.0.0.1" and viewed["user_agent"]


async def test_second_signer_notified_only_after_first_signs(
    api: Any, tenant: Tenant, ceremony: Ceremony, shared_parts: dict[str, Any]
) -> None:
    body = envelope_body([
        signer("Jana Nováková", "jana@example.cz", "+420601123456", order=1),
        signer("Petr Šťastný", "petr@example.cz", "+420602654321", order=2),
    ])
    env = await _create(api, tenant, body)
    assert [s["status"] for s in env["signers"]] == ["notified", "waiting"]
    await ceremony.run_jobs()
    assert ceremony.smtp.to("petr@example.cz") == []

    await ceremony.sign(ceremony.link_token("jana@example.cz"), "+420601123456")
    mid = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert mid["status"] == "sent"
    assert [s["status"] for s in mid["signers"]] == ["signed", "notified"]

    await ceremony.run_jobs()
    await ceremony.sign(ceremony.link_token("petr@example.cz"), "+420602654321")
    done = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert done["status"] == "completed"

    pdf = await (await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)).read()
    checks = await _validate(pdf, shared_parts["material"])
    assert [c.signer_name for c in checks] == ["Jana Nováková", "Petr Šťastný"]
    assert all(c.intact and c.valid and c.trusted for c in checks)
    assert signature_kinds(pdf) == ["/Sig", "/Sig", "/DocTimeStamp"]  # B-LTA after the last signer


async def test_two_parallel_signers_both_notified_and_both_signatures_survive(
    api: Any, tenant: Tenant, ceremony: Ceremony, shared_parts: dict[str, Any]
) -> None:
    body = envelope_body([
        signer("Jana Nováková", "jana@example.cz", "+420601123456"),
        signer("Ľubomír Ďurica", "lubo@example.sk", "+421905123456"),
    ], documents=2)
    env = await _create(api, tenant, body)
    assert [s["status"] for s in env["signers"]] == ["notified", "notified"]
    await ceremony.run_jobs()
    jana, lubo = ceremony.link_token("jana@example.cz"), ceremony.link_token("lubo@example.sk")
    # both ask for a code before either signs: the second signature goes on top of the first
    await ceremony.request_code(jana)
    await ceremony.request_code(lubo)
    code_j, code_l = ceremony.last_code("+420601123456"), ceremony.last_code("+421905123456")
    # both sign at the same moment: both signatures are made in parallel on the same revision, one
    # commits first and the other is re-made on top of it — none is lost
    r1, r2 = await asyncio.gather(
        api.post(f"/api/sign/{lubo}/sign", json={"code": code_l, "agree": True}),
        api.post(f"/api/sign/{jana}/sign", json={"code": code_j, "agree": True}),
    )
    assert r1.status == 200 and r2.status == 200

    resp = await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)
    assert resp.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as zf:
        names = zf.namelist()
        assert names == ["smlouva-1.pdf", "smlouva-2.pdf"]
        for name in names:
            checks = await _validate(zf.read(name), shared_parts["material"])
            assert sorted(c.signer_name for c in checks) == ["Jana Nováková", "Ľubomír Ďurica"]
            assert all(c.intact and c.valid for c in checks)


async def test_decline_ends_the_envelope_and_kills_the_links(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    body = envelope_body([
        signer("Jana Nováková", "jana@example.cz", "+420601123456"),
        signer("Petr Šťastný", "petr@example.cz", "+420602654321"),
    ])
    env = await _create(api, tenant, body)
    await ceremony.run_jobs()
    jana, petr = ceremony.link_token("jana@example.cz"), ceremony.link_token("petr@example.cz")
    resp = await api.post(f"/api/sign/{jana}/decline", json={"reason": "Cena neodpovídá nabídce."})
    assert resp.status == 200
    got = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert got["status"] == "declined"
    assert got["signers"][0]["status"] == "declined"
    assert got["signers"][0]["decline_reason"] == "Cena neodpovídá nabídce."
    gone = await api.post(f"/api/sign/{petr}/code", json={})
    assert gone.status == 410
    problem = await gone.json()
    assert problem["reason"] == "declined"
    page = await api.get(f"/sign/{petr}")
    assert page.status == 410 and 'data-state="declined"' in await page.text()
    assert "Podpis byl odmítnut" in await page.text()  # in the envelope's language
    assert (await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)).status == 409


async def test_cancel_kills_links_and_tells_notified_signers(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    env = await _create(api, tenant, envelope_body())
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    resp = await api.post(f"/v1/envelopes/{env['id']}/cancel", json={"reason": "Nabídka stažena"},
                          headers=tenant.auth)
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    await ceremony.run_jobs()
    assert len(ceremony.smtp.to("jana@example.cz")) == 2  # invitation + cancellation notice
    notice = ceremony.smtp.to("jana@example.cz")[-1].get_body(("plain",)).get_content()
    assert "/sign/" not in notice
    assert (await api.get(f"/api/sign/{token}")).status == 410
    assert (await api.post(f"/api/sign/{token}/code", json={})).status == 410
    again = await api.post(f"/v1/envelopes/{env['id']}/cancel", json={}, headers=tenant.auth)
    assert again.status == 409 and (await again.json())["code"] == "invalid_state"


async def test_wrong_codes_count_down_and_ten_wrong_codes_block_the_signer(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    env = await _create(api, tenant, envelope_body())
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    clock = ceremony.container.clock
    wrong_total = 0
    for round_ in range(4):
        await ceremony.request_code(token)
        real = ceremony.last_code("+420601123456")
        wrong = f"{(int(real) + 1) % 1_000_000:06d}"
        for attempt in range(3):
            if wrong_total == 10:
                break
            resp = await api.post(f"/api/sign/{token}/sign", json={"code": wrong, "agree": True})
            wrong_total += 1
            problem = await resp.json()
            assert resp.status == 422 and problem["code"] == "code_rejected"
            if wrong_total < 10:
                assert problem["attempts_left"] == min(3 - attempt - 1, 10 - wrong_total)
        if round_ == 0:
            # the third wrong try killed the code: even the right one is refused now
            resp = await api.post(f"/api/sign/{token}/sign", json={"code": real, "agree": True})
            assert resp.status == 422
        clock.advance(seconds=31)
    assert wrong_total == 10
    got = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert got["signers"][0]["status"] == "auth_failed"
    assert (await api.post(f"/api/sign/{token}/code", json={})).status == 409


async def test_code_throttle_thirty_seconds_apart_and_five_an_hour(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    await _create(api, tenant, envelope_body())
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    clock = ceremony.container.clock
    await ceremony.request_code(token)
    too_soon = await api.post(f"/api/sign/{token}/code", json={})
    assert too_soon.status == 429 and int(too_soon.headers["Retry-After"]) == 30
    for _ in range(4):
        clock.advance(seconds=30)
        await ceremony.request_code(token)
    clock.advance(seconds=30)
    sixth = await api.post(f"/api/sign/{token}/code", json={})
    assert sixth.status == 429
    clock.advance(minutes=59)
    await ceremony.request_code(token)


async def test_code_expires_after_five_minutes(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    await _create(api, tenant, envelope_body())
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    await ceremony.request_code(token)
    code = ceremony.last_code("+420601123456")
    ceremony.container.clock.advance(minutes=5, seconds=1)
    resp = await api.post(f"/api/sign/{token}/sign", json={"code": code, "agree": True})
    assert resp.status == 422 and (await resp.json())["code_expired"] is True


async def test_expired_envelope_cannot_be_signed_one_second_late(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    env = await _create(api, tenant, envelope_body(expires_in_days=1))
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    ceremony.container.clock.advance(hours=23, minutes=59, seconds=50)
    await ceremony.request_code(token)
    code = ceremony.last_code("+420601123456")
    ceremony.container.clock.advance(seconds=11)  # one second past expires_at
    resp = await api.post(f"/api/sign/{token}/sign", json={"code": code, "agree": True})
    assert resp.status == 410 and (await resp.json())["reason"] == "expired"
    got = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert got["status"] == "expired"


async def test_signer_must_agree(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    await _create(api, tenant, envelope_body())
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    await ceremony.request_code(token)
    resp = await api.post(f"/api/sign/{token}/sign", json={"code": ceremony.last_code("+420601123456")})
    assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "agree"


async def test_unknown_link_is_404(api: Any) -> None:
    assert (await api.get("/api/sign/not-a-real-token-at-all-xxxxxxxxxxxxxxxx")).status == 404
    page = await api.get("/sign/not-a-real-token-at-all-xxxxxxxxxxxxxxxx")
    assert page.status == 404 and page.content_type == "text/html"


async def test_signer_page_sends_security_headers(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    await _create(api, tenant, envelope_body())
    await ceremony.run_jobs()
    resp = await api.get(f"/sign/{ceremony.link_token('jana@example.cz')}")
    assert resp.status == 200
    html = await resp.text()
    assert "Smlouva o dílo 2026/042" in html and "Dodavatel s.r.o." in html
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


async def test_html_page_flow_without_javascript(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    env = await _create(api, tenant, envelope_body())
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    page = await (await api.get(f"/sign/{token}")).text()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    resp = await api.post(f"/sign/{token}/code", data={"csrf": csrf, "lang": "cs"}, allow_redirects=False)
    assert resp.status == 303
    code = ceremony.last_code("+420601123456")
    resp = await api.post(f"/sign/{token}/sign", data={"code": code, "agree": "yes", "csrf": csrf, "lang": "cs"},
                          allow_redirects=False)
    assert resp.status == 303 and "notice=signed" in resp.headers["Location"]
    got = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert got["status"] == "completed"
    thanks = await api.get(resp.headers["Location"])
    assert thanks.status == 200 and "Podepsáno. Děkujeme." in await thanks.text()
    later = await api.get(f"/sign/{token}")
    assert "už podepsali všichni podepisující" in await later.text()


async def test_audit_chain_verifies_and_one_edited_event_is_caught(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    env = await _create(api, tenant, envelope_body())
    await ceremony.run_jobs()
    await ceremony.sign(ceremony.link_token("jana@example.cz"), "+420601123456")
    assert await verify_chain(env["id"]) is None
    viewed = await AuditEvent.get(envelope_id=env["id"], type="signer.viewed")
    viewed.ip = "10.0.0.66"  # personal data edited beside the chain: its commitment no longer matches
    await viewed.save()
    assert await verify_chain(env["id"]) == viewed.seq
    viewed.ip = "127.0.0.1"
    await viewed.save()
    signed = await AuditEvent.get(envelope_id=env["id"], type="signer.signed")
    signed.data = {**signed.data, "tsa_time": "2020-01-01T00:00:00+00:00"}
    await signed.save()
    assert await verify_chain(env["id"]) == signed.seq


async def test_a_signing_failure_after_the_code_is_a_502_problem_whose_cause_is_logged(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Any, monkeypatch: Any
) -> None:
    env = await _create(api, tenant, envelope_body())
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")

    async def broken_sign(request: Any) -> Any:
        raise ProviderError("Signing failed: SigningError: the TSA answered 503.")

    monkeypatch.setattr(container.ceremony.providers["local"], "sign", broken_sign)
    await ceremony.request_code(token)
    with structlog.testing.capture_logs() as logs:
        resp = await api.post(f"/api/sign/{token}/sign",
                              json={"code": ceremony.last_code("+420601123456"), "agree": True})
    assert resp.status == 502 and (await resp.json())["code"] == "provider_error"
    failed = [entry for entry in logs if "cause" in entry]  # once: on the request line
    assert [(e["event"], e["status"], e["problem"]) for e in failed] == [("request", 502, "provider_error")]
    assert "the TSA answered 503" in failed[0]["cause"] and failed[0]["error"] == "ProviderError"
    assert ceremony.last_code("+420601123456") not in str(logs)  # the code never reaches the log
    state = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert state["status"] == "sent" and state["signers"][0]["status"] == "verified"
