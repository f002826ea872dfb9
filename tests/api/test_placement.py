"""Where the stamps go, over the real HTTP API and real signatures, checked with poppler (pdftotext
word boxes and pdftoppm renders in the displayed page) rather than with what the gateway reports."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

from adapters.providers.local import pades
from tests.api.conftest import Ceremony, Tenant, envelope_body, signer
from tests.factories import czech_contract, page_fill, placeholder_contract, rotated_pdf, with_empty_signature_fields
from tests.pdf_tools import Word, pdfsig, poppler_pages, poppler_render, poppler_text, poppler_words

JANA = signer()
PETR = signer("Petr Šťastný", "petr@example.cz", "+420602987654", order=2)


def _body(pdf: bytes, signers: list[dict[str, Any]]) -> dict[str, Any]:
    body = envelope_body(signers)
    body["documents"] = [{"name": "smlouva.pdf", "content": base64.b64encode(pdf).decode()}]
    return body


async def _create(api: Any, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _sign_all(api: Any, tenant: Tenant, ceremony: Ceremony, env: dict[str, Any]) -> bytes:
    for s in sorted(env["signers"], key=lambda s: s["order"]):
        await ceremony.run_jobs()
        await ceremony.sign(ceremony.link_token(s["email"]), s["phone"])
    resp = await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)
    assert resp.status == 200
    return await resp.read()


def _box(field: dict[str, Any]) -> tuple[float, float, float, float]:
    return field["x"], field["y"], field["width"], field["height"]


def _words_of(words: list[Word], text: str) -> list[Word]:
    """Words that hold ``text`` (poppler keeps a stamp's line together: pyHanko draws each line as
    one string, spaces included)."""
    return [w for w in words if text in w.text.split() or text == w.text]


async def test_an_anchor_on_page_two_of_three_puts_the_stamp_under_it(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    upload = czech_contract(pages=3, label_page=2)
    env = await _create(api, tenant, _body(upload, [{**JANA, "fields": [{"anchor": "Podpis objednatele:"}]}]))
    (field,) = env["signers"][0]["fields"]
    assert (field["page"], field["source"]) == (2, "anchor")
    signed = await _sign_all(api, tenant, ceremony, env)

    original = poppler_words(upload, 2)
    (label,) = _words_of(original, "objednatele:")
    after = poppler_words(signed, 2)
    (name,) = _words_of(after, "Nováková")
    assert label.y1 < name.y0 < label.y1 + 40  # right under the label …
    assert abs(name.x0 - _words_of(original, "Podpis")[0].x0) < 30  # … where it starts
    assert name.x1 - name.x0 > name.y1 - name.y0  # and upright
    assert not [w for w in original if w.meets(_box(field))]  # over none of the contract's words
    assert "Nováková" not in poppler_text(signed)[0] + poppler_text(signed)[2]  # not on pages 1 and 3


async def test_a_placeholder_is_covered_by_the_stamp(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    upload = placeholder_contract(("{{podpis:1}}",))
    env = await _create(api, tenant, _body(upload, [{**JANA, "fields": [{"anchor": "{{podpis:1}}"}]}]))
    (field,) = env["signers"][0]["fields"]
    signed = await _sign_all(api, tenant, ceremony, env)

    (placeholder,) = _words_of(poppler_words(upload, 1), "{{podpis:1}}")
    assert placeholder.inside(_box(field), tolerance=0)
    (name,) = _words_of(poppler_words(signed, 1), "Nováková")
    assert name.inside(_box(field))  # the stamp is drawn where the API says
    # where the placeholder was printed, the signed page shows the stamp instead (opaque, light)
    dpi = 72
    before, after = _pgm(poppler_render(upload, 1, dpi)), _pgm(poppler_render(signed, 1, dpi))
    region = [(x, y) for x in range(int(placeholder.x0), int(placeholder.x1))
              for y in range(int(placeholder.y0), int(placeholder.y1))]
    assert min(before[1][y * before[0] + x] for x, y in region) < 100  # the placeholder's ink …
    dark_after = sum(after[1][y * after[0] + x] < 100 for x, y in region)
    dark_before = sum(before[1][y * before[0] + x] < 100 for x, y in region)
    assert dark_after < dark_before / 3  # … is gone but for the stamp's own small text


def _pgm(data: bytes) -> tuple[int, bytes]:
    """(width, pixels) of a binary PGM."""
    parts = data.split(maxsplit=4)
    assert parts[0] == b"P5"
    return int(parts[1]), parts[4]


async def test_a_missing_anchor_is_refused_at_create_naming_the_field(api: Any, tenant: Tenant) -> None:
    body = _body(czech_contract(), [JANA, {**PETR, "fields": [{"anchor": "Podpis kupujícího"}]}])
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 422
    problem = await resp.json()
    assert problem["code"] == "validation_failed"
    assert [e["field"] for e in problem["errors"]] == ["signers[1].fields[0].anchor"]
    listed = await (await api.get("/v1/envelopes", headers=tenant.auth)).json()
    assert listed["items"] == []  # nothing was stored


async def test_a_box_off_the_displayed_page_is_refused_at_create(api: Any, tenant: Tenant) -> None:
    # /Rotate 90: the page is displayed 842 wide and 595 tall
    body = _body(rotated_pdf(90), [{**JANA, "fields": [{"page": 1, "x": 700, "y": 500}]}])
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 422
    assert [e["field"] for e in (await resp.json())["errors"]] == ["signers[0].fields[0]"]
    body = _body(rotated_pdf(90), [{**JANA, "fields": [{"page": 2, "x": 10, "y": 10}]}])
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert [e["field"] for e in (await resp.json())["errors"]] == ["signers[0].fields[0].page"]
    body = _body(rotated_pdf(90), [{**JANA, "fields": [{"document": 2, "page": 1, "x": 10, "y": 10}]}])
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert [e["field"] for e in (await resp.json())["errors"]] == ["signers[0].fields[0].document"]


async def test_coordinates_on_a_rotated_page_land_where_a_viewer_shows_them(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    upload = rotated_pdf(90, crop=(20, 30, 580, 820))  # displayed: 790 wide, 560 tall
    env = await _create(api, tenant, _body(upload, [{**JANA, "fields": [{"page": 1, "x": 600, "y": 480}]}]))
    assert _box(env["signers"][0]["fields"][0]) == (600, 480, 170, 62)
    signed = await _sign_all(api, tenant, ceremony, env)

    words = poppler_words(signed, 1)
    (name,) = _words_of(words, "Nováková")
    (signed_by,) = _words_of(words, "Elektronicky")
    assert 600 < name.x0 < 640 and 480 < name.y0 < 542 and name.inside((600, 480, 170, 62))
    assert name.x1 - name.x0 > 2 * (name.y1 - name.y0)  # upright: a horizontal word …
    assert signed_by.y1 <= name.y0  # … under the line above it, not upside down


async def test_two_empty_signature_fields_of_the_pdf_get_the_two_signers(
    api: Any, tenant: Tenant, ceremony: Ceremony, shared_parts: dict[str, Any]
) -> None:
    material = shared_parts["material"]
    upload = with_empty_signature_fields(("Objednatel", "Zhotovitel"))
    env = await _create(api, tenant, _body(upload, [JANA, PETR]))
    assert [s["fields"][0]["source"] for s in env["signers"]] == ["form_field", "form_field"]
    signed = await _sign_all(api, tenant, ceremony, env)

    signatures = [s for s in pdfsig(signed) if not s.field.startswith("Timestamp-")]  # the B-LTA timestamp
    assert [s.field for s in signatures] == ["Objednatel", "Zhotovitel"]  # no field of our own
    assert all(s.valid for s in signatures)
    checks = await asyncio.to_thread(pades.validate, signed, pades.load_roots(material.trust_root_paths))
    assert [c.bottom_line for c in checks] == [True, True]
    words = poppler_words(signed, 1)
    (jana,) = _words_of(words, "Nováková")
    (petr,) = _words_of(words, "Šťastný")
    assert jana.inside((56, 842 - 130, 200, 70)) and petr.inside((316, 842 - 130, 200, 70))


async def test_a_full_last_page_gets_a_signature_page_and_the_original_pages_render_the_same(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    upload = page_fill(pages=2)
    env = await _create(api, tenant, _body(upload, [JANA, PETR]))
    doc = env["documents"][0]
    assert doc["pages"] == 3
    assert doc["prepared_sha256"] not in (None, doc["sha256"])
    assert [s["fields"][0]["page"] for s in env["signers"]] == [3, 3]
    assert {s["fields"][0]["source"] for s in env["signers"]} == {"signature_page"}
    trail = await (await api.get(f"/v1/envelopes/{env['id']}/audit", headers={
        **tenant.auth, "Accept": "application/json"})).json()
    added = [e for e in trail["events"] if e["type"] == "document.signature_page_added"]
    assert len(added) == 1 and added[0]["data"]["prepared_sha256"] == doc["prepared_sha256"]
    assert added[0]["data"]["sha256"] == hashlib.sha256(upload).hexdigest()

    signed = await _sign_all(api, tenant, ceremony, env)
    assert poppler_pages(signed) == 3
    for page in (1, 2):
        assert poppler_render(signed, page, 50) == poppler_render(upload, page, 50)
    last = poppler_text(signed)[2]
    assert "Podpisová strana" in last and env["id"] in last
    assert "Jana Nováková" in last and "Petr Šťastný" in last
    prepared = await (await api.get(f"/v1/envelopes/{env['id']}/documents/{doc['id']}?version=prepared",
                                    headers=tenant.auth)).read()
    page_words = poppler_words(prepared, 3)
    for s in env["signers"]:
        assert not [w for w in page_words if w.meets(_box(s["fields"][0]))]


async def test_automatic_stamps_avoid_the_text_of_the_last_page(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    upload = czech_contract(pages=2, label_page=0, full_pages=False)  # ten lines on each page
    env = await _create(api, tenant, _body(upload, [JANA, PETR]))
    boxes = [_box(s["fields"][0]) for s in env["signers"]]
    assert [s["fields"][0]["page"] for s in env["signers"]] == [2, 2]
    signed = await _sign_all(api, tenant, ceremony, env)

    original = poppler_words(upload, 2)
    for box in boxes:
        assert not [w for w in original if w.meets(box)]
    a, b = boxes
    assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]
    words = poppler_words(signed, 2)
    assert _words_of(words, "Nováková")[0].inside(boxes[0]) and _words_of(words, "Šťastný")[0].inside(boxes[1])


async def test_the_signer_sees_where_they_sign(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    upload = czech_contract(pages=3, label_page=2)
    env = await _create(api, tenant, _body(upload, [{**JANA, "fields": [{"anchor": "Podpis objednatele:"}]}]))
    await ceremony.run_jobs()
    token = ceremony.link_token(JANA["email"])
    view = await (await api.get(f"/api/sign/{token}")).json()
    (doc,) = view["documents"]
    assert (doc["signature"]["page"], doc["signature"]["source"]) == (2, "anchor")
    assert doc["signature"] == {**env["signers"][0]["fields"][0], "document_id": doc["id"]}
    page = (await (await api.get(f"/sign/{token}")).text()).replace("\u00a0", " ")  # Czech keeps "straně 2" together
    anchor = f'doc-{doc["id"]}-p2'
    assert f'<a href="#{anchor}">Váš podpis bude na straně 2</a>' in page  # a link to the page's image
    assert f'id="{anchor}"' in page and page.count('<svg class="mark"') == 1  # the one page with the box
    page = (await (await api.get(f"/sign/{token}?lang=en")).text()).replace("\u00a0", " ")
    assert "Your signature goes on page 2" in page


async def test_the_signer_is_told_of_the_signature_page(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    await _create(api, tenant, _body(page_fill(pages=1), [JANA]))
    await ceremony.run_jobs()
    page = await (await api.get(f"/sign/{ceremony.link_token(JANA['email'])}")).text()
    assert "na podpisové straně na konci dokumentu (strana 2)" in page


async def test_a_field_names_its_document_and_the_other_documents_are_placed_automatically(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    body = _body(czech_contract(pages=1, label_page=0, full_pages=False), [
        {**JANA, "fields": [{"document": 2, "anchor": "Podpis objednatele:"}]}])
    body["documents"].append({"name": "dodatek.pdf", "content": base64.b64encode(czech_contract(pages=2)).decode()})
    env = await _create(api, tenant, body)
    first, second = env["documents"]
    fields = {f["document_id"]: f for f in env["signers"][0]["fields"]}
    assert (fields[first["id"]]["source"], fields[first["id"]]["page"]) == ("automatic", 1)
    assert (fields[second["id"]]["source"], fields[second["id"]]["page"]) == ("anchor", 2)
