"""``/docs`` in a real browser: Debian's headless Chromium renders the API reference (Redoc, served
by the gateway itself) with no console error, no Content-Security-Policy violation and no request
to any other origin (no CDN, no telemetry, no web fonts)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from esign_gateway.http.routes.docs import docs_csp

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page, not the database

# Runs before the page's own scripts (Playwright injects it; the page's CSP does not apply to it).
_WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push({directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile,
                               line: e.lineNumber});
});
"""


def _expected(violation: dict[str, Any]) -> bool:
    """The one refusal the page is built to get: Redoc's search (FlexSearch) tries ``Function(...)``
    to see whether it may build its search worker, catches the refusal and searches on the main
    thread instead (the test searches). Allowing it would take ``'unsafe-eval'``; it logs nothing
    to the console."""
    return (violation["directive"] == "script-src" and violation["blocked"] == "eval"
            and violation["source"].endswith("/docs/assets/redoc.standalone.js"))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _read_the_reference(page: Page) -> None:
    """The overview, then an operation reached from the sidebar, its schema, and the search."""
    await page.get_by_role("heading", name=re.compile(r"^esign-gateway \(")).wait_for(timeout=20_000)
    await page.get_by_text("Envelopes", exact=True).first.click()  # the sidebar's group
    await page.get_by_text("Create an envelope (and send it)").first.click()
    await page.get_by_role("heading", name="Create an envelope (and send it)").wait_for(timeout=10_000)
    await page.get_by_text("RecordIn").first.wait_for(timeout=10_000)  # a components.schemas name
    await page.get_by_text("Search Ctrl+K").first.click()
    await page.keyboard.type("expiry")
    await page.get_by_text("Move the expiry").first.wait_for(timeout=10_000)
    await page.keyboard.press("Escape")
    await page.wait_for_load_state("networkidle")


async def test_docs_renders_the_reference_with_no_console_error_and_nothing_from_elsewhere(
    browser: Browser, api: Any
) -> None:
    url = str(api.make_url("/docs"))
    own = _origin(url)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(_WATCH_CSP)
    page = await context.new_page()
    problems: list[str] = []
    elsewhere: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" or "Content Security Policy" in msg.text:
            problems.append(f"console.{msg.type}: {msg.text}")

    def on_request(req: Request) -> None:  # also fires for what the CSP then refuses
        if not req.url.startswith(("data:", "blob:")) and _origin(req.url) != own:
            elsewhere.append(req.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("request", on_request)
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} ({req.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))

    response = await page.goto(url)
    assert response is not None and response.status == 200
    headers = await response.all_headers()
    csp = headers["content-security-policy"]
    nonce = re.search(r"'nonce-([\w-]+)'", csp)
    assert nonce and csp == docs_csp(nonce[1])  # a fresh nonce per response
    assert "unsafe-" not in csp and "script-src 'self';" in csp and "default-src 'none';" in csp
    assert await page.title() == "esign-gateway API reference"
    assert await page.locator("html").get_attribute("lang") == "en"

    try:
        await _read_the_reference(page)
    except PlaywrightTimeoutError as exc:
        problems.append(f"the reference did not render: {exc.message.splitlines()[0]}")
    else:  # the credit to Redocly is shown, its logo from this origin (Redoc drops a logo that fails)
        logo = page.get_by_role("img", name="redocly logo")
        if not (await logo.count() == 1 and await logo.evaluate("img => img.complete && img.naturalWidth > 0")):
            problems.append("the Redocly logo did not load")
    # What a page sends when it is left (telemetry flushed on pagehide) must be refused as well.
    await page.evaluate("document.dispatchEvent(new Event('pagehide')); window.dispatchEvent(new Event('pagehide'))")
    await page.wait_for_timeout(1_000)

    violations = await page.evaluate("window.__cspViolations")
    problems += [f"CSP: {v['directive']} refused {v['blocked'] or 'inline'} ({v['source']}:{v['line']})"
                 for v in violations if not _expected(v)]
    assert not problems, "\n".join(problems)  # the console and CSP reports say why when it did not render
    assert not elsewhere, "\n".join(elsewhere)
    await context.close()


async def test_docs_assets_serve_only_the_listed_files(api: Any) -> None:
    resp = await api.get("/docs/assets/redoc.standalone.js")
    assert resp.status == 200 and resp.content_type == "text/javascript"
    bundle = await resp.text()
    assert "Version: 3.0.1" in bundle[:300] and "cdn.redoc.ly" not in bundle
    resp = await api.get("/docs/assets/redocly-wordmark.svg")
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    for name in ("README.txt", "redoc.LICENSE.txt", "..%2Froutes%2Fdocs.py", "docs.py"):
        assert (await api.get(f"/docs/assets/{name}")).status == 404
