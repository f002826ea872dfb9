"""Hostile input gets a clear 4xx problem and changes nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.api.conftest import Ceremony, Tenant, envelope_body
from tests.factories import make_pdf


async def _nothing_stored(api: Any, tenant: Tenant) -> None:
    listed = await (await api.get("/v1/envelopes", headers=tenant.auth)).json()
    assert listed["items"] == []


@pytest.mark.parametrize(("where", "value"), [
    ("name", "Smlouva\r\nBcc: all@example.com"),
    ("message", "Dobrý den\r\nBcc: all@example.com"),
    ("message", "zvonek\x07"),
    ("signers[0].name", "Jana\nNováková"),
    ("documents[0].name", "smlouva\r\n.pdf"),
    ("record.name", "Dodávka\u2028serverů"),
])
async def test_control_characters_and_line_breaks_in_names_are_refused_at_create(
    api: Any, tenant: Tenant, where: str, value: str
) -> None:
    body = envelope_body()
    target: Any = body
    *parents, last = where.replace("[0]", ".0").split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 422, await resp.text()
    problem = await resp.json()
    assert problem["code"] == "validation_failed" and problem["errors"][0]["field"] == where
    await _nothing_stored(api, tenant)


async def test_a_multipart_file_name_with_a_line_break_is_refused(api: Any, tenant: Tenant) -> None:
    body = envelope_body()
    del body["documents"]
    # by hand: aiohttp's client encodes a "%" of a file name itself; a CRM's client may send it raw
    raw = (b"--XX\r\nContent-Disposition: form-data; name=\"envelope\"\r\nContent-Type: application/json\r\n\r\n"
           + json.dumps(body).encode() + b"\r\n--XX\r\nContent-Disposition: form-data; name=\"document\"; "
           b"filename=\"smlouva%0D%0Aevil.pdf\"\r\nContent-Type: application/pdf\r\n\r\n" + make_pdf()
           + b"\r\n--XX--\r\n")
    resp = await api.post("/v1/envelopes", data=raw,
                          headers={**tenant.auth, "Content-Type": "multipart/form-data; boundary=XX"})
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "document[0]"
    await _nothing_stored(api, tenant)


async def test_a_message_with_lines_is_a_message(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    body = envelope_body(message="Dobrý den,\n\nprosím o podpis.\n\tJan")
    body["documents"][0]["content"] = base64.b64encode(make_pdf()).decode()
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 201
    await ceremony.run_jobs()
    mail = ceremony.smtp.to("jana@example.cz")[-1]
    assert "prosím o podpis." in mail.get_body(("plain",)).get_content()


async def test_json_nested_thousands_deep_is_a_400(api: Any, tenant: Tenant) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    resp = await api.post("/v1/envelopes", data=deep, headers={**tenant.auth, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["code"] == "malformed_request"


async def test_zip_entry_names_are_unique_even_when_a_numbered_name_was_taken(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    import io
    import zipfile

    body = envelope_body(documents=4)
    for doc, name in zip(body["documents"], ["smlouva.pdf", "smlouva.pdf", "smlouva (1).pdf", "smlouva"], strict=True):
        doc["name"] = name
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    env = await resp.json()
    await ceremony.run_jobs()
    await ceremony.sign(ceremony.link_token("jana@example.cz"), "+420601123456")
    download = await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)
    with zipfile.ZipFile(io.BytesIO(await download.read())) as zf:
        names = zf.namelist()
    assert len(set(names)) == 4, names
    assert names[0] == "smlouva.pdf" and names[2] == "smlouva (1).pdf" and names[3] == "smlouva"
    assert all("/" not in n and "\\" not in n and "\x00" not in n and not n.startswith(".") for n in names)
