"""The documents on the signer's page as server-rendered page images (no PDF plugin needed).

Real parts: the app on a real port, the page-image worker processes of ``build_container``, the
document store on disk.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any

import pypdfium2
import pytest
from PIL import Image

from esign_gateway.container import Container
from tests.api.conftest import Ceremony, Tenant, envelope_body, signer


async def _open(api: Any, tenant: Tenant, ceremony: Ceremony, **extra: Any) -> tuple[dict[str, Any], str, str]:
    """An envelope sent to Jana: (the envelope, her token, her page's HTML)."""
    resp = await api.post("/v1/envelopes", json=envelope_body(**extra), headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    env = await resp.json()
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    page = await api.get(f"/sign/{token}")
    assert page.status == 200
    return env, token, await page.text()


def _images(html: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'([a-z]+)="([^"]*)"', tag)) for tag in re.findall(r"<img [^>]*>", html)]


async def test_every_page_is_an_image_under_the_signers_link_with_her_stamp_box_marked(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    env, token, html = await _open(api, tenant, ceremony)
    images = _images(html)
    assert len(images) == 2  # two pages, two images
    doc_id = env["documents"][0]["id"]
    for n, img in enumerate(images, start=1):
        assert img["src"].startswith(f"/sign/{token}/documents/{doc_id}/pages/{n}.png?")
        assert img["loading"] == "lazy" and re.search(rf"\b{n}\b\D+\b2\b", img["alt"]), img  # "Strana 1 z 2"
        assert len(img["srcset"].split(",")) == 4 and int(img["width"]) > 0 and int(img["height"]) > int(img["width"])
        resp = await api.get(img["src"].replace("&amp;", "&"))
        assert resp.status == 200 and resp.content_type == "image/png"
        assert resp.headers["Cache-Control"].startswith("private")
        picture = Image.open(io.BytesIO(await resp.read()))
        assert picture.width == int(img["width"])  # the src is the 800 px image the attributes describe
        assert abs(picture.height - int(img["height"])) <= 1
    # the zoom: each page links to its widest image
    zoom = re.findall(r'<a class="sheet" href="([^"]+)"', html)
    assert len(zoom) == 2 and all(z.endswith("w=1800") for z in zoom)
    wide = Image.open(io.BytesIO(await (await api.get(zoom[0].replace("&amp;", "&"))).read()))
    assert wide.width == 1800
    # her stamp goes on the last page (free space): that page, and only that one, carries the box
    place = env["signers"][0]["fields"][0]
    marks = re.findall(r'<li class="page" id="doc-[^"]+-p(\d+)">.*?</li>', html, re.S)
    assert marks == ["1", "2"]
    box = re.search(r'<svg class="mark" viewBox="0 0 ([\d.]+) ([\d.]+)"[^>]*><rect x="([\d.]+)" y="([\d.]+)" '
                    r'width="([\d.]+)" height="([\d.]+)"', html)
    assert box and html.count('class="mark"') == 1
    assert place["page"] == 2 and html.index('class="mark"') > html.index(f'-p{place["page"]}"')
    assert [float(v) for v in box.groups()[2:]] == [place["x"], place["y"], place["width"], place["height"]]
    assert (float(box.group(1)), float(box.group(2))) == (595.28, 841.89)  # A4, in the placement's points
    assert "<object" not in html and "<iframe" not in html


async def test_page_images_answer_only_a_live_link(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    env, token, _html = await _open(api, tenant, ceremony)
    doc_id = env["documents"][0]["id"]
    good = f"/sign/{token}/documents/{doc_id}/pages/1.png"
    assert (await api.get(good)).status == 200
    for path, status in (
        (f"/sign/not-a-link/documents/{doc_id}/pages/1.png", 404),
        (f"/sign/{token}/documents/01a00000-0000-7000-8000-000000000000/pages/1.png", 404),
        (f"/sign/{token}/documents/{doc_id}/pages/3.png", 404),
        (f"/sign/{token}/documents/{doc_id}/pages/0.png", 404),
        (f"{good}?w=123", 422),
        (f"{good}?w=80000000000000000000", 422),
    ):
        resp = await api.get(path)
        assert resp.status == status, path
        assert resp.content_type == "application/problem+json", path
    # another envelope's link does not open this envelope's document
    other = await (await api.post("/v1/envelopes", json=envelope_body([signer("Petr", "petr@example.cz",
                                                                              "+420602111222")]),
                                  headers=tenant.auth)).json()
    await ceremony.run_jobs()
    petr = ceremony.link_token("petr@example.cz")
    assert other and (await api.get(f"/sign/{petr}/documents/{doc_id}/pages/1.png")).status == 404
    # cancelled: the link is closed for the images as for the PDF
    resp = await api.post(f"/v1/envelopes/{env['id']}/cancel", json={"reason": "Chybná cena"}, headers=tenant.auth)
    assert resp.status == 200, await resp.text()
    assert (await api.get(good)).status == 410
    assert (await api.get(f"/api/sign/{token}/documents/{doc_id}")).status == 410


async def test_a_page_is_rendered_once_per_document_version(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    env, token, html = await _open(api, tenant, ceremony)
    src = _images(html)[1]["src"].replace("&amp;", "&")
    pages = container.ceremony.pages
    assert pages is not None
    first = await api.get(src)
    assert first.status == 200 and first.headers["Cache-Control"] == "private, max-age=86400, immutable"
    before = await first.read()
    assert pages.renders == 1  # type: ignore[attr-defined]
    # the document's bytes are gone from the store: only the cache can still answer
    sha = env["documents"][0]["sha256"]
    blob = container.settings.documents_dir / sha[:2] / sha[2:4] / sha
    data = blob.read_bytes()
    os.remove(blob)
    again = await api.get(src)
    assert again.status == 200 and await again.read() == before
    assert pages.renders == 1  # type: ignore[attr-defined]
    blob.write_bytes(data)
    # a signature makes a new version: the page names new image URLs, rendered afresh (with the stamp)
    await ceremony.sign(token, "+420601123456")
    resp = await api.get(f"/sign/{token}")
    assert resp.status == 410  # completed: the page shows the signed documents
    signed_html = await resp.text()
    new_src = _images(signed_html)[1]["src"].replace("&amp;", "&")
    assert new_src != src
    after = await (await api.get(new_src)).read()
    assert after != before and pages.renders == 2  # type: ignore[attr-defined]
    stale = await api.get(src)  # the old URL answers the current version, never cached for long
    assert await stale.read() == after and stale.headers["Cache-Control"] == "private, no-cache"


async def test_rendering_never_runs_in_the_web_process(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    def tripwire(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pdfium was called in the web process")

    monkeypatch.setattr(pypdfium2, "PdfDocument", tripwire)  # the worker processes have their own module
    _env, _token, html = await _open(api, tenant, ceremony)
    for img in _images(html):
        resp = await api.get(img["src"].replace("&amp;", "&"))
        assert resp.status == 200
    pool = container.ceremony.pages.pool  # type: ignore[union-attr]
    assert pool.pids and os.getpid() not in pool.pids


async def test_a_deleted_document_takes_its_page_images_with_it(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    env, _token, html = await _open(api, tenant, ceremony)
    for img in _images(html):
        assert (await api.get(img["src"].replace("&amp;", "&"))).status == 200
    sha = env["documents"][0]["sha256"]
    cached = container.settings.page_images_dir / sha[:2] / sha
    assert sorted(p.name for p in cached.iterdir()) == ["0-800.png", "1-800.png", "sizes.json"]
    await container.store.delete(sha)  # what the retention purge and the garbage collector call
    assert not cached.exists()
