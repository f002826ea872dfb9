"""The signer page's flow over plain HTTP (what a browser without JavaScript does): every form is
POST-redirect-GET, a retry keeps what the signer already did, a closed link names the envelope."""

from __future__ import annotations

import re
from typing import Any

from tests.api.conftest import Ceremony, Tenant, envelope_body


async def _link(api: Any, tenant: Tenant, ceremony: Ceremony) -> tuple[str, str, str]:
    env = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    page = await (await api.get(f"/sign/{token}")).text()
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert csrf
    return env["id"], token, csrf.group(1)


async def _trail(api: Any, tenant: Tenant, envelope_id: str) -> list[str]:
    resp = await api.get(f"/v1/envelopes/{envelope_id}/audit", headers={**tenant.auth, "Accept": "application/json"})
    return [e["type"] for e in (await resp.json())["events"]]


async def test_decline_is_post_redirect_get_and_the_page_names_the_envelope(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    envelope_id, token, csrf = await _link(api, tenant, ceremony)
    resp = await api.post(f"/sign/{token}/decline", data={"csrf": csrf, "lang": "cs", "reason": "Cena"},
                          allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith(f"/sign/{token}?")
    page = await api.get(resp.headers["Location"])
    html = await page.text()
    assert page.status == 410 and 'data-state="declined_by_you"' in html
    assert "Smlouva o dílo 2026/042" in html and "Dodavatel s.r.o." in html and envelope_id in html
    again = await api.get(resp.headers["Location"])  # a reload is a GET: nothing is declined twice
    assert again.status == 410 and (await _trail(api, tenant, envelope_id)).count("signer.declined") == 1


async def test_sign_is_post_redirect_get_and_a_reload_does_not_sign_again(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    envelope_id, token, csrf = await _link(api, tenant, ceremony)
    await api.post(f"/sign/{token}/code", data={"csrf": csrf, "lang": "cs"}, allow_redirects=False)
    code = ceremony.last_code("+420601123456")
    resp = await api.post(f"/sign/{token}/sign", data={"csrf": csrf, "lang": "cs", "code": code, "agree": "yes"},
                          allow_redirects=False)
    assert resp.status == 303
    for _ in range(2):
        page = await api.get(resp.headers["Location"])
        assert page.status == 200 and 'data-state="signed"' in await page.text()
    await ceremony.run_jobs()
    assert (await _trail(api, tenant, envelope_id)).count("signer.signed") == 1


async def test_a_wrong_code_keeps_the_tick_and_says_when_the_code_was_sent(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    _, token, csrf = await _link(api, tenant, ceremony)
    sent = await api.post(f"/sign/{token}/code", data={"csrf": csrf, "lang": "cs"}, allow_redirects=False)
    assert sent.status == 303 and "#" not in sent.headers["Location"]  # autofocus brings the code field into view
    html = await (await api.get(sent.headers["Location"])).text()
    assert re.search(r'<input id="code"[^>]* autofocus', html)
    assert re.search(r'id="code-sent"[^>]*>.*<time datetime="2026-11-23T09:00:00\+00:00">10:00:00</time>', html)
    assert re.search(r'id="resend-hint">.*<time datetime="2026-11-23T09:00:30\+00:00">10:00:30</time>', html)
    code = ceremony.last_code("+420601123456")
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    resp = await api.post(f"/sign/{token}/sign", data={"csrf": csrf, "lang": "cs", "code": wrong, "agree": "yes"},
                          allow_redirects=False)
    assert resp.status == 303 and "agree=yes" in resp.headers["Location"]
    html = await (await api.get(resp.headers["Location"])).text()
    assert re.search(r'name="agree" value="yes" required checked', html)
    assert re.search(r'<section class="step" id="step2".*data-state="code_rejected"', html, re.S)
    assert 'id="code-sent"' in html  # step 1 still says a code is out (a new one is "another code")
    assert re.search(r'<input id="code"[^>]* autofocus', html)


async def test_the_favicon_is_served_from_our_origin(api: Any) -> None:
    for path in ("/favicon.ico", "/static/favicon.svg"):
        resp = await api.get(path)
        assert resp.status == 200 and resp.content_type == "image/svg+xml", path
        assert (await resp.read()).startswith(b"<svg")
