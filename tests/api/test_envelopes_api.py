"""The CRM API: validation as problems, tenant isolation, uploads, lists, drafts."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from aiohttp import FormData

from esign_gateway.container import Container
from esign_gateway.db.models import DocumentRow, EnvelopeRow
from tests import pdf_reproducers as repro
from tests.api.conftest import Tenant, envelope_body, signer
from tests.factories import make_encrypted_pdf, make_pdf, make_pdf_bomb


async def _count_stored(container: Container) -> tuple[int, int, int]:
    blobs = sum(1 for p in container.settings.documents_dir.rglob("*") if p.is_file())
    return await EnvelopeRow.all().count(), await DocumentRow.all().count(), blobs


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_missing_or_wrong_key_is_401_problem(api: Any) -> None:
    resp = await api.get("/v1/envelopes")
    assert resp.status == 401 and resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["code"] == "unauthorized" and body["status"] == 401 and body["type"] and body["title"]
    resp = await api.get("/v1/envelopes", headers={"Authorization": "Bearer esk_wrong"})
    assert resp.status == 401


async def test_trial_tenant_gets_402_instance_not_paid(api: Any, container: Container) -> None:
    _, key = await container.tenants.create_tenant("Zkušební s.r.o.", paid=False)
    resp = await api.post("/v1/envelopes", json=envelope_body(), headers={"Authorization": f"Bearer {key.secret}"})
    assert resp.status == 402 and (await resp.json())["code"] == "instance_not_paid"
    assert await _count_stored(container) == (0, 0, 0)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["signers"][0].update(email="not-an-email"), "signers[0].email"),
        (lambda b: b["signers"][0].update(phone="12"), "signers[0].phone"),
        (lambda b: b.update(language="de"), "language"),
        (lambda b: b.update(expires_in_days=91), "expires_in_days"),
        (lambda b: b.update(expires_in_days=0), "expires_in_days"),
        (lambda b: b["record"].update(type="invoice"), "record.type"),
        (lambda b: b.update(metadata={"x": "a" * 5000}), "metadata"),
        (lambda b: b.update(signers=[]), "signers"),
        (lambda b: b["documents"][0].update(content="%%%not base64"), "documents[0].content"),
    ],
)
async def test_invalid_create_is_422_with_field_and_changes_nothing(
    api: Any, tenant: Tenant, container: Container, mutate: Any, field: str
) -> None:
    body = envelope_body()
    mutate(body)
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 422, await resp.text()
    problem = await resp.json()
    assert problem["code"] == "validation_failed"
    assert any(e["field"] == field for e in problem["errors"]), problem["errors"]
    assert await _count_stored(container) == (0, 0, 0)


async def test_phone_is_normalised_to_e164_with_cz_default(api: Any, tenant: Tenant) -> None:
    body = envelope_body([signer(phone="601 123 456")], send=False)
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 201
    assert (await resp.json())["signers"][0]["phone"] == "+420601123456"


async def test_malformed_json_is_400_problem(api: Any, tenant: Tenant) -> None:
    headers = {**tenant.auth, "Content-Type": "application/json"}
    resp = await api.post("/v1/envelopes", data=b"{not json", headers=headers)
    assert resp.status == 400 and (await resp.json())["code"] == "malformed_request"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"this is not a pdf at all", "pdf_invalid"),
        (make_pdf()[:400], "pdf_invalid"),
        (make_encrypted_pdf(), "pdf_encrypted"),
        (make_pdf_bomb(), "pdf_invalid"),
    ],
    ids=["garbage", "truncated", "encrypted", "bomb"],
)
async def test_bad_pdf_is_refused_with_its_code_and_nothing_is_stored(
    api: Any, tenant: Tenant, container: Container, content: bytes, code: str
) -> None:
    body = envelope_body(documents=2)
    body["documents"][1]["content"] = _b64(content)
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 422, await resp.text()
    problem = await resp.json()
    assert problem["code"] == code
    assert problem["errors"][0]["field"] == "documents[1]"
    assert await _count_stored(container) == (0, 0, 0)


async def test_oversized_document_is_413_and_nothing_is_stored(
    api: Any, tenant: Tenant, container: Container
) -> None:
    container.settings.max_document_bytes = 50_000
    big = make_pdf(pages=1) + b"%" + b"x" * 60_000
    body = envelope_body()
    body["documents"][0]["content"] = _b64(big)
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 413 and (await resp.json())["code"] == "document_too_large"
    assert await _count_stored(container) == (0, 0, 0)


async def test_multipart_create_with_file_parts(api: Any, tenant: Tenant) -> None:
    meta = envelope_body()
    del meta["documents"]
    form = FormData()
    form.add_field("envelope", json.dumps(meta), content_type="application/json")
    form.add_field("document", make_pdf(pages=3), filename="nabídka.pdf", content_type="application/pdf")
    resp = await api.post("/v1/envelopes", data=form, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    env = await resp.json()
    assert env["documents"][0]["name"] == "nabídka.pdf" and env["documents"][0]["pages"] == 3


async def test_multipart_limit_is_enforced_on_bytes_read(api: Any, tenant: Tenant, container: Container) -> None:
    container.settings.max_document_bytes = 30_000
    meta = envelope_body()
    del meta["documents"]
    form = FormData()
    form.add_field("envelope", json.dumps(meta), content_type="application/json")
    form.add_field("document", make_pdf() + b"%" + b"y" * 40_000, filename="big.pdf", content_type="application/pdf")
    resp = await api.post("/v1/envelopes", data=form, headers=tenant.auth)
    assert resp.status == 413
    assert await _count_stored(container) == (0, 0, 0)


async def test_other_tenants_envelope_is_404_on_every_route(api: Any, tenant: Tenant, other_tenant: Tenant) -> None:
    resp = await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    env = await resp.json()
    eid, did = env["id"], env["documents"][0]["id"]
    routes = [
        ("GET", f"/v1/envelopes/{eid}"),
        ("POST", f"/v1/envelopes/{eid}/send"),
        ("POST", f"/v1/envelopes/{eid}/cancel"),
        ("DELETE", f"/v1/envelopes/{eid}"),
        ("GET", f"/v1/envelopes/{eid}/documents/{did}"),
        ("GET", f"/v1/envelopes/{eid}/download"),
        ("GET", f"/v1/envelopes/{eid}/audit"),
    ]
    for method, path in routes:
        r = await api.request(method, path, headers=other_tenant.auth, json={})
        assert r.status == 404, (method, path, r.status)
        assert (await r.json())["code"] == "not_found"
    listed = await (await api.get("/v1/envelopes", headers=other_tenant.auth)).json()
    assert listed["items"] == []
    still = await (await api.get(f"/v1/envelopes/{eid}", headers=tenant.auth)).json()
    assert still["status"] == "sent"


async def test_list_by_record_newest_first_with_cursor(api: Any, tenant: Tenant, container: Container) -> None:
    ids = []
    for i in range(5):
        body = envelope_body(send=False)
        body["record"]["id"] = "D-1" if i != 2 else "D-2"
        container.clock.advance(seconds=1)  # type: ignore[attr-defined]
        ids.append((await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json())["id"])
    page1 = await (await api.get("/v1/envelopes?record_type=deal&record_id=D-1&limit=2", headers=tenant.auth)).json()
    assert [e["id"] for e in page1["items"]] == [ids[4], ids[3]]
    page2 = await (await api.get(
        f"/v1/envelopes?record_type=deal&record_id=D-1&limit=2&cursor={page1['next_cursor']}", headers=tenant.auth
    )).json()
    assert [e["id"] for e in page2["items"]] == [ids[1], ids[0]]
    assert page2["next_cursor"] is None
    # a page is loaded in three queries: each envelope still gets exactly its own documents and signers
    assert all(len(e["documents"]) == 1 and len(e["signers"]) == 1 for e in page1["items"] + page2["items"])
    assert len({e["signers"][0]["id"] for e in page1["items"] + page2["items"]}) == 4
    drafts = await (await api.get("/v1/envelopes?status=draft&limit=100", headers=tenant.auth)).json()
    assert len(drafts["items"]) == 5


async def test_draft_send_then_delete_only_drafts(api: Any, tenant: Tenant, container: Container) -> None:
    env = await (await api.post("/v1/envelopes", json=envelope_body(send=False), headers=tenant.auth)).json()
    assert env["status"] == "draft" and env["sent_at"] is None and env["signers"][0]["status"] == "waiting"
    assert await container.worker.run_once() == 0  # a draft notifies nobody
    sent = await (await api.post(f"/v1/envelopes/{env['id']}/send", headers=tenant.auth)).json()
    assert sent["status"] == "sent" and sent["signers"][0]["status"] == "notified"
    resp = await api.delete(f"/v1/envelopes/{env['id']}", headers=tenant.auth)
    assert resp.status == 409
    again = await api.post(f"/v1/envelopes/{env['id']}/send", headers=tenant.auth)
    assert again.status == 409

    draft = await (await api.post("/v1/envelopes", json=envelope_body(send=False), headers=tenant.auth)).json()
    assert (await api.delete(f"/v1/envelopes/{draft['id']}", headers=tenant.auth)).status == 204
    assert (await api.get(f"/v1/envelopes/{draft['id']}", headers=tenant.auth)).status == 404


async def test_document_download_original_and_current(api: Any, tenant: Tenant) -> None:
    pdf = make_pdf(pages=1, text="Originál")
    body = envelope_body()
    body["documents"][0]["content"] = _b64(pdf)
    env = await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json()
    doc = env["documents"][0]
    resp = await api.get(f"/v1/envelopes/{env['id']}/documents/{doc['id']}?version=original", headers=tenant.auth)
    assert resp.status == 200 and await resp.read() == pdf
    assert hashlib.sha256(pdf).hexdigest() == doc["sha256"]
    assert (await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)).status == 409


async def test_explicit_expires_at_and_past_expires_at(api: Any, tenant: Tenant) -> None:
    body = envelope_body(expires_at="2026-12-24T12:00:00+01:00")
    env = await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json()
    assert env["expires_at"].startswith("2026-12-24T11:00:00")
    past = envelope_body(expires_at="2026-01-01T00:00:00Z")
    resp = await api.post("/v1/envelopes", json=past, headers=tenant.auth)
    assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "expires_at"


async def test_wrong_method_is_a_problem_with_a_matching_status(api: Any, tenant: Tenant) -> None:
    resp = await api.patch("/v1/envelopes", headers=tenant.auth)
    assert resp.status == 405 and resp.content_type == "application/problem+json"
    assert (await resp.json())["status"] == 405
    missing = await api.get("/v1/nothing-here", headers=tenant.auth)
    assert missing.status == 404 and (await missing.json())["code"] == "not_found"


async def test_a_broken_upload_is_repaired_once_and_both_hashes_and_the_audit_event_say_so(
    api: Any, tenant: Tenant
) -> None:
    upload = repro.leading_junk(b"\xef\xbb\xbf")
    body = envelope_body()
    body["documents"][0]["content"] = _b64(upload)
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    env = await resp.json()
    doc = env["documents"][0]
    assert doc["sha256"] == hashlib.sha256(upload).hexdigest()
    assert doc["prepared_sha256"] not in (None, doc["sha256"])
    base = f"/v1/envelopes/{env['id']}/documents/{doc['id']}"
    original = await (await api.get(f"{base}?version=original", headers=tenant.auth)).read()
    prepared = await (await api.get(f"{base}?version=prepared", headers=tenant.auth)).read()
    current = await (await api.get(base, headers=tenant.auth)).read()
    assert original == upload
    assert hashlib.sha256(prepared).hexdigest() == doc["prepared_sha256"] and prepared.startswith(b"%PDF-")
    assert current == prepared  # what the first signer signs
    trail = await (await api.get(f"/v1/envelopes/{env['id']}/audit", headers={
        **tenant.auth, "Accept": "application/json"})).json()
    events = trail["events"] if isinstance(trail, dict) else trail
    normalised = [e for e in events if e["type"] == "document.normalised"]
    assert len(normalised) == 1
    assert normalised[0]["data"]["prepared_sha256"] == doc["prepared_sha256"]
    assert "bytes before the %PDF- header" in normalised[0]["data"]["repairs"]


async def test_a_file_that_signs_as_it_is_has_no_prepared_copy(api: Any, tenant: Tenant) -> None:
    env = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    assert env["documents"][0]["prepared_sha256"] is None


async def test_a_certified_upload_is_422_pdf_certified_and_nothing_is_stored(
    api: Any, tenant: Tenant, container: Container
) -> None:
    body = envelope_body()
    body["documents"][0]["content"] = _b64(repro.certified_no_changes())
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 422 and resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["code"] == "pdf_certified" and "certified" in problem["detail"]
    assert await _count_stored(container) == (0, 0, 0)
