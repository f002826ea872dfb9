"""The signer's page in a real browser: Debian's headless Chromium driven by Playwright.

The gateway runs on a real local port; the signer follows the link from the e-mail caught by the
real SMTP server and reads the code from the SMS outbox. With ``ESIGN_SCREENSHOTS=1`` the main
states are saved to ``docs/screenshots/`` (desktop and a 390 px phone).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from adapters.providers.local import pades
from esign_gateway.container import Container
from tests.api.conftest import Ceremony, Tenant, envelope_body
from tests.conftest import SmtpServer
from tests.fakes import FrozenClock

SHOTS = Path(__file__).parent.parent.parent / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page, not the database


async def _open(browser: Browser, link: str, viewport: dict[str, int], **options: Any) -> tuple[Any, Page, Any]:
    """A fresh browser context on the signer's link: (context, page, the page's response)."""
    context = await browser.new_context(viewport=viewport, **options)
    page = await context.new_page()
    return context, page, await page.goto(link)


async def _invite(api: Any, tenant: Tenant, container: Container, smtp: SmtpServer, **extra: Any) -> tuple[str, str]:
    """Create and send an envelope; the signer's link from the caught e-mail, on this server."""
    resp = await api.post("/v1/envelopes", json=envelope_body(**extra), headers=tenant.auth)
    assert resp.status == 201
    env = await resp.json()
    await container.worker.run_once()
    ceremony = Ceremony(api, container, smtp)
    token = ceremony.link_token("jana@example.cz")
    return env["id"], str(api.make_url(f"/sign/{token}"))


async def _shot(page: Page, name: str) -> None:
    if os.environ.get("ESIGN_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_signer_requests_code_mistypes_it_signs_and_downloads_the_signed_pdf(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer,
    shared_parts: dict[str, Any],
) -> None:
    envelope_id, link = await _invite(api, tenant, container, smtp_server)
    ceremony = Ceremony(api, container, smtp_server)
    for viewport, suffix in ((DESKTOP, "desktop"), (PHONE, "phone")):
        context, page, _ = await _open(browser, link, viewport, accept_downloads=True, locale="cs-CZ")
        assert await page.title() == "Podpis dokumentů – Smlouva o dílo 2026/042 – Dodavatel s.r.o."
        assert await page.locator("html").get_attribute("lang") == "cs"
        assert "Dodavatel s.r.o." in await page.locator(".sender").inner_text()
        assert await page.locator(".doc").count() == 1
        await _shot(page, f"sign-1-open-{suffix}")
        await context.close()

    context, page, _ = await _open(browser, link, PHONE, accept_downloads=True)
    await page.get_by_role("button", name="Poslat SMS kód").click()
    await page.wait_for_selector('[data-state="code_sent"]')
    resend = page.locator("#send-code")
    assert await resend.is_disabled()  # the countdown (progressive enhancement) holds it for 30 s
    await _shot(page, "sign-2-code-sent-phone")

    code = ceremony.last_code("+420601123456")
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    await page.get_by_label("Kód z SMS (6 číslic)").fill(wrong)
    await page.get_by_label("Souhlasím s elektronickým podpisem uvedených dokumentů").check()
    await page.get_by_role("button", name="Podepsat", exact=True).click()
    error = page.locator('[data-state="code_rejected"]')
    assert "Zbývající pokusy: 2" in await error.inner_text()  # 3 tries per code
    await _shot(page, "sign-3-wrong-code-phone")

    await page.get_by_label("Kód z SMS (6 číslic)").fill(code)
    await page.get_by_label("Souhlasím s elektronickým podpisem uvedených dokumentů").check()
    await page.get_by_role("button", name="Podepsat", exact=True).click()
    await page.wait_for_selector('[data-state="signed"]')
    assert "Podepsáno. Děkujeme." in await page.locator("main").inner_text()
    await _shot(page, "sign-4-completed-phone")
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Stáhnout podepsané dokumenty").click()
    download = await info.value
    pdf = await asyncio.to_thread(Path(await download.path()).read_bytes)
    material = shared_parts["material"]
    checks = await asyncio.to_thread(pades.validate, pdf, pades.load_roots(material.trust_root_paths))
    assert [(c.intact, c.valid, c.trusted) for c in checks] == [(True, True, True)]
    state = await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json()
    assert state["status"] == "completed"
    await context.close()


async def test_signer_declines_with_a_reason(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer
) -> None:
    envelope_id, link = await _invite(api, tenant, container, smtp_server)
    context, page, _ = await _open(browser, link, DESKTOP)
    await page.get_by_text("Odmítnout podpis").first.click()  # opens the <details>
    await page.get_by_label("Důvod odmítnutí (uvidí ho odesílatel)").fill("Cena neodpovídá nabídce.")
    await page.get_by_role("button", name="Odmítnout podpis").click()
    await page.wait_for_selector('[data-state="declined_by_you"]')
    await _shot(page, "sign-5-declined-desktop")
    state = await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json()
    assert state["status"] == "declined" and state["signers"][0]["decline_reason"] == "Cena neodpovídá nabídce."
    await page.goto(link)
    assert "Podpis byl odmítnut" in await page.locator('[data-state="declined"]').inner_text()
    await context.close()


async def test_expired_link_says_so_in_the_signers_language(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer,
    clock: FrozenClock,
) -> None:
    _, link = await _invite(api, tenant, container, smtp_server, expires_in_days=1, language="en")
    clock.advance(days=1, seconds=1)
    context, page, response = await _open(browser, link, PHONE)
    assert response is not None and response.status == 410
    assert "This signing link has expired" in await page.locator('[data-state="expired"]').inner_text()
    await _shot(page, "sign-6-expired-phone")
    await context.close()


async def test_language_switch_and_keyboard_only_flow(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer
) -> None:
    _, link = await _invite(api, tenant, container, smtp_server)
    context, page, _ = await _open(browser, link, DESKTOP)
    await page.get_by_role("link", name="SK").click()
    assert await page.locator("html").get_attribute("lang") == "sk"
    assert await page.get_by_role("button", name="Poslať SMS kód").is_visible()
    # the whole page is reachable with Tab, in reading order. Chromium's PDF viewer in the inline
    # <object> handles Tab inside itself once it has loaded (its toolbar; activeElement then reads
    # as the body), so the order is checked up to the viewer and from the form's first control on.
    order: list[str] = []
    for _ in range(4):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate("document.activeElement.id || document.activeElement.name || "
                                          "document.activeElement.textContent.trim()"))
    assert order == ["CS", "SK", "EN", "Stiahnuť PDF"], order  # next: the document viewer
    await page.locator("#send-code").focus()
    after: list[str] = []
    for _ in range(3):
        await page.keyboard.press("Tab")
        after.append(await page.evaluate("document.activeElement.id || document.activeElement.name"))
    assert after.index("code") < after.index("agree"), after
    await context.close()
