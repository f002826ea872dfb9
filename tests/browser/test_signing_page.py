"""The signer's page in a real browser: Debian's headless Chromium driven by Playwright.

The gateway runs on a real local port; the signer follows the link from the e-mail caught by the
real SMTP server and reads the code from the SMS outbox. Every state is opened at 390×844 (a
phone) and 1280×800 (a desktop) and checked alike: the page images are loaded (``naturalWidth >
0``) and show something (the screenshot of a page is not one colour), nothing fails (no console
error, no failed request, no 4xx/5xx besides the page's own status) and axe-core finds no
violation. With ``ESIGN_SCREENSHOTS=1`` each state is saved to ``docs/screenshots/``.
"""

from __future__ import annotations

import asyncio
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from playwright.async_api import Browser, BrowserContext, Page

from adapters.providers.local import pades
from esign_gateway.container import Container
from tests.api.conftest import LINK_RE, Ceremony, Tenant, envelope_body, signer
from tests.conftest import SmtpServer
from tests.fakes import FrozenClock

SHOTS = Path(__file__).parent.parent.parent / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
VIEWPORTS = (("phone", PHONE), ("desktop", DESKTOP))
JANA = "+420601123456"

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page, not the database


@dataclass
class Watched:
    """A page with everything that went wrong on it."""

    context: BrowserContext
    page: Page
    status: int
    problems: list[str] = field(default_factory=list)


async def _watch(browser: Browser, url: str, viewport: dict[str, int], axe: str, **options: Any) -> Watched:
    context = await browser.new_context(viewport=viewport, locale="cs-CZ", **options)
    await context.add_init_script(axe)  # through the driver, not the page: the page's CSP stays as it is
    page = await context.new_page()
    problems: list[str] = []

    def console(m: Any) -> None:
        # a closed link's page answers 410 on purpose (asserted by the caller); Chromium reports the
        # document's own status as a console error at the document's address: that one is no fault
        own = m.text.startswith("Failed to load resource") and m.location.get("url") == url
        if m.type == "error" and not own:
            problems.append(f"console {m.type}: {m.text} at {m.location.get('url')}")

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: problems.append(f"{r.status}: {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)
    response = await page.goto(url)
    assert response is not None
    return Watched(context, page, response.status, problems)


async def _check(w: Watched, name: str, *, images: bool) -> None:
    """The checks every state passes; ``images``: the page shows the documents."""
    page = w.page
    landing = await page.evaluate("window.scrollY")  # where the page opened: the screenshot shows it
    imgs = page.locator("main img")
    if images:
        assert await imgs.count() >= 2, name
        for i in range(await imgs.count()):
            img = imgs.nth(i)
            await img.scroll_into_view_if_needed()
            await page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=await img.element_handle())
        shot = Image.open(io.BytesIO(await page.locator(".sheet").first.screenshot())).convert("L")
        low, high = shot.getextrema()
        assert high > 200 and low < 100 and ImageStat.Stat(shot).stddev[0] > 5, (name, low, high)  # paper and ink
    else:
        assert await imgs.count() == 0, name
    violations = await page.evaluate(
        "async () => (await axe.run(document)).violations"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target).join(' | '))")
    assert violations == [], (name, violations)
    await page.wait_for_load_state("networkidle")
    assert w.problems == [], (name, w.problems)
    if os.environ.get("ESIGN_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.evaluate(f"window.scrollTo(0, {landing})")  # the checks (and axe) scrolled
        await page.screenshot(path=str(SHOTS / f"{name}.png"))


async def _both(browser: Browser, url: str, axe: str, name: str, *, status: int = 200, images: bool = True) -> None:
    """Open ``url`` at both viewports and check the state there."""
    for suffix, viewport in VIEWPORTS:
        w = await _watch(browser, url, viewport, axe)
        assert w.status == status, (name, w.status)
        await _check(w, f"{name}-{suffix}", images=images)
        await w.context.close()


async def _invite(api: Any, tenant: Tenant, container: Container, smtp: SmtpServer, **extra: Any) -> tuple[str, str]:
    """Create and send an envelope; the first signer's link from the caught e-mail, on this server."""
    resp = await api.post("/v1/envelopes", json=envelope_body(**extra), headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    env = await resp.json()
    await container.worker.run_once()
    # this envelope's invitation: a notice of an earlier envelope may be sent in the same run
    bodies = [m.get_body(("plain",)).get_content() for m in smtp.to("jana@example.cz")]
    links = [m.group(1) for b in bodies if env["id"] in b and (m := LINK_RE.search(b))]
    assert links, f"no invitation for {env['id']}"
    return env["id"], str(api.make_url(f"/sign/{links[-1]}"))


async def _closed_page_names_the_envelope(page: Page, envelope_id: str) -> None:
    main = await page.locator("body").inner_text()
    assert "Smlouva o dílo 2026/042" in main and "Dodavatel s.r.o." in main and envelope_id in main, main


async def test_opened_code_sent_wrong_code_and_signed_waiting_for_the_other_signer(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer, axe_source: str,
) -> None:
    envelope_id, link = await _invite(api, tenant, container, smtp_server, signers=[
        signer(), signer("Petr Svoboda", "petr@example.cz", "+420602111222", order=2)])
    ceremony = Ceremony(api, container, smtp_server)
    await _both(browser, link, axe_source, "sign-1-open")
    # her stamp's box is drawn where the stamp will go: at the placement's share of the page image
    fields = (await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json())["signers"][0]["fields"]
    w = await _watch(browser, link, PHONE, axe_source)
    await w.page.locator('.place a').click()  # "your signature goes on page 2": to that page
    mark = w.page.locator(".mark rect")
    await mark.scroll_into_view_if_needed()
    sheet = await w.page.locator(".sheet:has(.mark) img").bounding_box()
    box = await mark.bounding_box()
    assert sheet and box
    place = fields[0]
    assert abs((box["x"] - sheet["x"]) / sheet["width"] - place["x"] / 595.28) < 0.01
    assert abs((box["y"] - sheet["y"]) / sheet["height"] - place["y"] / 841.89) < 0.01
    assert abs(box["width"] / sheet["width"] - place["width"] / 595.28) < 0.01
    if os.environ.get("ESIGN_SCREENSHOTS"):
        await w.page.screenshot(path=str(SHOTS / "sign-1-open-stamp-box-phone.png"))
    await w.context.close()

    # code sent: the page lands at the steps, the code field focused; step 1 says when, and when next
    w = await _watch(browser, link, PHONE, axe_source)
    first = await w.page.locator("#send-code").inner_text()
    await w.page.locator("#send-code").click()
    await w.page.wait_for_selector('[data-state="code_sent"]')
    assert "#" not in w.page.url  # a fragment would switch autofocus off
    assert await w.page.evaluate("document.activeElement.id") == "code"
    assert await w.page.evaluate("window.scrollY") > 300  # not the top of the page
    assert await w.page.locator("#code").is_visible() and await w.page.locator("#code").evaluate(
        "el => el.getBoundingClientRect().bottom <= window.innerHeight")
    step1 = await w.page.locator("#step1").inner_text()
    assert "+420 601 *** 456" in step1 or "456" in step1
    assert await w.page.locator("#step1 time").count() == 2  # sent at …, another code from …
    assert await w.page.locator("#send-code").is_disabled()  # the countdown (progressive enhancement)
    code_sent_url = w.page.url
    resend = await w.page.locator("#send-code").inner_text()
    assert resend != first
    await _check(w, "sign-2-code-sent-phone", images=True)
    w2 = await _watch(browser, code_sent_url, DESKTOP, axe_source)
    await _check(w2, "sign-2-code-sent-desktop", images=True)
    await w2.context.close()

    # a wrong code: the tick and the sign button stay, the error is at the code field
    code = ceremony.last_code(JANA)
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    page = w.page
    await page.locator("#code").fill(wrong)
    await page.locator("input[name=agree]").check()
    await page.locator("#step2 button[type=submit]").click()
    error = page.locator('#step2 [data-state="code_rejected"]')
    await error.wait_for()
    assert "2" in await error.inner_text()  # tries left
    assert await page.locator("input[name=agree]").is_checked()
    assert await page.locator("#step2 button[type=submit]").is_visible()
    assert await page.locator("#send-code").inner_text() == resend  # a code is out: "a new code", not the first
    assert await page.evaluate("document.activeElement.id") == "code"
    wrong_url = page.url
    w.problems.clear()
    await _check(w, "sign-3-wrong-code-phone", images=True)
    w2 = await _watch(browser, wrong_url, DESKTOP, axe_source)
    await _check(w2, "sign-3-wrong-code-desktop", images=True)
    await w2.context.close()

    # signed, the other signer still to sign; a reload does not post again (POST-redirect-GET)
    await page.locator("#code").fill(code)
    await page.locator("#step2 button[type=submit]").click()
    await page.wait_for_selector('[data-state="signed"]')
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    await page.reload()
    await page.wait_for_selector('[data-state="signed"]')
    assert posts == []
    trail = await (await api.get(f"/v1/envelopes/{envelope_id}/audit",
                                 headers={**tenant.auth, "Accept": "application/json"})).json()
    assert [e["type"] for e in trail["events"]].count("signer.signed") == 1
    signed_url = page.url
    await w.context.close()
    await _both(browser, signed_url, axe_source, "sign-4-signed-waiting")


async def test_completed_page_shows_the_signed_documents_and_the_download(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer, axe_source: str,
    shared_parts: dict[str, Any],
) -> None:
    envelope_id, link = await _invite(api, tenant, container, smtp_server)
    ceremony = Ceremony(api, container, smtp_server)
    await ceremony.sign(link.rsplit("/", 1)[1], JANA)
    await container.worker.run_once()
    await _both(browser, link, axe_source, "sign-5-completed", status=410)
    w = await _watch(browser, link, PHONE, axe_source, accept_downloads=True)
    await _closed_page_names_the_envelope(w.page, envelope_id)
    async with w.page.expect_download() as info:
        await w.page.locator('a[href^="/download/"]').click()
    download = await info.value
    pdf = await asyncio.to_thread(Path(await download.path()).read_bytes)
    checks = await asyncio.to_thread(pades.validate, pdf, pades.load_roots(shared_parts["material"].trust_root_paths))
    assert [(c.intact, c.valid, c.trusted) for c in checks] == [(True, True, True)]
    await w.context.close()


async def test_declined_page_after_post_redirect_get(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer, axe_source: str,
) -> None:
    envelope_id, link = await _invite(api, tenant, container, smtp_server)
    w = await _watch(browser, link, DESKTOP, axe_source)
    await w.page.locator(".decline summary").click()  # opens the <details>
    await w.page.locator("#reason").fill("Cena neodpovídá nabídce.")
    await w.page.locator(".decline button[type=submit]").click()
    await w.page.wait_for_selector('[data-state="declined_by_you"]')
    assert "/decline" not in w.page.url  # the answer is a GET: a reload cannot decline again
    await _closed_page_names_the_envelope(w.page, envelope_id)
    state = await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json()
    assert state["status"] == "declined" and state["signers"][0]["decline_reason"] == "Cena neodpovídá nabídce."
    declined_url = w.page.url
    await w.context.close()
    await _both(browser, declined_url, axe_source, "sign-6-declined", status=410, images=False)


async def test_cancelled_and_expired_pages_name_the_envelope(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer, axe_source: str,
    clock: FrozenClock,
) -> None:
    cancelled_id, cancelled = await _invite(api, tenant, container, smtp_server)
    resp = await api.post(f"/v1/envelopes/{cancelled_id}/cancel", json={"reason": "Chybná cena"}, headers=tenant.auth)
    assert resp.status == 200
    await _both(browser, cancelled, axe_source, "sign-7-cancelled", status=410, images=False)
    w = await _watch(browser, cancelled, PHONE, axe_source)
    await _closed_page_names_the_envelope(w.page, cancelled_id)
    await w.context.close()

    expired_id, expired = await _invite(api, tenant, container, smtp_server, expires_in_days=1, language="en")
    clock.advance(days=1, seconds=1)
    await _both(browser, expired, axe_source, "sign-8-expired", status=410, images=False)
    w = await _watch(browser, expired, PHONE, axe_source)
    assert "This signing link has expired" in await w.page.locator('[data-state="expired"]').inner_text()
    await _closed_page_names_the_envelope(w.page, expired_id)
    await w.context.close()


async def test_too_many_wrong_codes_block_the_link_with_a_clear_page(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer, axe_source: str,
    clock: FrozenClock,
) -> None:
    _, link = await _invite(api, tenant, container, smtp_server)
    ceremony = Ceremony(api, container, smtp_server)
    token = link.rsplit("/", 1)[1]
    for _ in range(4):  # 3 tries per code, 10 in all
        await ceremony.request_code(token)
        code = ceremony.last_code(JANA)
        wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
        for _ in range(3):
            resp = await api.post(f"/api/sign/{token}/sign", json={"code": wrong, "agree": True})
            body = await resp.json()
            if body.get("auth_failed"):
                break
        clock.advance(seconds=31)
    assert body.get("auth_failed"), body
    await _both(browser, link, axe_source, "sign-9-auth-failed")
    w = await _watch(browser, link, PHONE, axe_source)
    assert await w.page.locator('[data-state="auth_failed"]').count() == 1
    assert await w.page.locator("#send-code").count() == 0
    await w.context.close()


async def test_language_switch_and_keyboard_only_flow(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer, axe_source: str,
) -> None:
    _, link = await _invite(api, tenant, container, smtp_server)
    w = await _watch(browser, link, DESKTOP, axe_source)
    page = w.page
    await page.get_by_role("link", name="SK").click()
    assert await page.locator("html").get_attribute("lang") == "sk"
    assert await page.locator("#send-code").is_visible()
    # the whole page is reachable with Tab, in reading order: languages, the download, the pages
    # (each a link to its full-size image), the steps' controls
    order: list[str] = []
    for _ in range(8):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate("document.activeElement.id || document.activeElement.name || "
                                          "document.activeElement.getAttribute('href') || ''"))
    # CS, SK, EN, the download, "your signature goes on page 2", each page (a link to its full size)
    assert [o.rsplit("=", 1)[-1] for o in order[:3]] == ["cs", "sk", "en"], order
    assert order[3].endswith("?download=1") and order[4].startswith("#doc-"), order
    assert [o.endswith("w=1800") for o in order[5:7]] == [True, True] and order[7] == "send-code", order
    await w.context.close()


async def test_page_images_zoom_to_full_width(
    browser: Browser, api: Any, tenant: Tenant, container: Container, smtp_server: SmtpServer, axe_source: str,
) -> None:
    _, link = await _invite(api, tenant, container, smtp_server)
    w = await _watch(browser, link, PHONE, axe_source)
    sheet = w.page.locator(".sheet").first
    async with w.context.expect_page() as opened:
        await sheet.click()
    full = await opened.value
    await full.wait_for_load_state()
    size = await full.evaluate("[document.images[0].naturalWidth, document.images[0].naturalHeight]")
    assert size[0] == 1800 and size[1] > 2000
    await w.context.close()

