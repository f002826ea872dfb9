"""What Schemathesis found against the live gateway (``test_schemathesis.py``), each pinned by a
focused test: the server answering a 500 to odd input, a status or a body the document does not
describe, or a document that promises more (or less) than the server accepts."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from esign_gateway.container import Container
from tests.api.conftest import Ceremony, Tenant, envelope_body
from tests.factories import make_pdf
from webhooks.guard import UnsafeUrl, check_url


async def _document(api: Any) -> dict[str, Any]:
    return await (await api.get("/openapi.json")).json()


def _schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    return schemas.get(name) or schemas[f"{name}-Input"]


def _body_schema(document: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]


async def _problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["status"] == status
    return body


# ----------------------------------------------------------------------------- the server


@pytest.mark.parametrize("path", ["/v1/envelopes/{}", "/v1/envelopes/{}/remind", "/v1/envelopes/{}/send",
                                  "/v1/envelopes/{}/documents/{}", "/v1/webhook/deliveries/{}/retry"])
async def test_an_id_that_is_not_one_of_ours_is_404_not_500(api: Any, tenant: Tenant, path: str) -> None:
    """Ids longer than the column (36) made the ORM's validation raise: a 500."""
    long_id = "ÓI 𱾰$z" * 8
    method = api.get if path.count("{}") == 2 or path == "/v1/envelopes/{}" else api.post
    resp = await method(path.format(long_id, long_id), headers=tenant.auth)
    await _problem(resp, 404)


async def test_support_reads_of_a_malformed_id_are_404_not_500(api: Any, container: Container) -> None:
    key = await container.tenants.create_key("support")
    resp = await api.get(f"/v1/support/envelopes/{'x' * 40}",
                         headers={"Authorization": f"Bearer {key.secret}", "X-Access-Reason": "ticket 1"})
    await _problem(resp, 404)


_UNREADABLE = [
    ("multipart/form-data", b"abc"),  # no boundary
    ("multipart/form-data; boundary=xx", b"garbage"),  # no starting boundary
    ("multipart/form-data; boundary=xx", b'--xx\r\nContent-Disposition: form-data; name="\xf3\xaf\x16z"\r\n\r\n1\r\n'
                                         b"--xx--\r\n"),  # a part header aiohttp refuses
    ("application/x-www-form-urlencoded; charset=nope", b"a=b"),  # an unknown charset
]


@pytest.mark.parametrize("path, content_type, body", [
    *((form, *case) for form in ("/sign/nope/code", "/sign/nope/sign", "/sign/nope/decline") for case in _UNREADABLE),
    # the envelope upload is JSON or multipart (a urlencoded body is a 415, tested elsewhere)
    *(("/v1/envelopes", *case) for case in _UNREADABLE if case[0].startswith("multipart/")),
])
async def test_an_unreadable_form_or_multipart_body_is_a_400_problem(
    api: Any, tenant: Tenant, path: str, content_type: str, body: bytes
) -> None:
    resp = await api.post(path, data=body, headers={**tenant.auth, "Content-Type": content_type})
    await _problem(resp, 400)


async def test_a_forged_download_link_is_404_and_an_expired_one_410(
    api: Any, tenant: Tenant, container: Container, ceremony: Ceremony
) -> None:
    """A random token answered 410 "no longer valid", as if it had once been ours."""
    resp = await api.get("/download/not-a-token")
    assert resp.status == 404 and resp.content_type == "text/html"
    created = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    await ceremony.sign(ceremony.link_token("jana@example.cz"), "+420601123456")
    token = await container.ceremony.download_link(created["id"], created["signers"][0]["id"])
    assert token is not None and (await api.get(f"/download/{token}")).status == 200
    container.clock.advance(seconds=int(timedelta(days=31).total_seconds()))
    resp = await api.get(f"/download/{token}")
    assert resp.status == 410 and resp.content_type == "text/html"


@pytest.mark.parametrize("query", ["/v1/archive?to=", "/v1/archive?from=", "/v1/usage?month="])
async def test_an_empty_date_or_month_is_refused_not_ignored(api: Any, tenant: Tenant, query: str) -> None:
    """The document says date-time (or YYYY-MM); an empty value was read as "not given"."""
    body = await _problem(await api.get(query, headers=tenant.auth), 422)
    assert body["errors"][0]["field"] == query.rsplit("?", 1)[1].rstrip("=")


async def test_a_webhook_url_that_does_not_parse_is_422_not_500(api: Any, tenant: Tenant) -> None:
    for url in ("http://[not-an-ipv6", "http://host:99999/x"):
        body = await _problem(await api.put("/v1/webhook", json={"url": url}, headers=tenant.auth), 422)
        assert body["errors"][0]["field"] == "url"


@pytest.mark.parametrize("url", ["http://[not-an-ipv6", "https://host:99999/x"])
async def test_the_url_guard_refuses_a_url_that_does_not_parse(url: str) -> None:
    """``urlsplit`` (or its ``port``) raised ValueError through the guard: a 500."""
    with pytest.raises(UnsafeUrl):
        await check_url(url, allow_internal=False)


async def test_the_code_request_takes_the_documented_empty_object_only(api: Any) -> None:
    """The document had no body (the server wants JSON: a 415 without); any field was ignored."""
    body = await _problem(await api.post("/api/sign/nope/code", json={"phone": "+420601123456"}), 422)
    assert body["errors"][0]["field"] == "phone"
    document = await _document(api)
    operation = document["paths"]["/api/sign/{token}/code"]["post"]
    assert operation["requestBody"]["required"] is True
    assert _body_schema(document, "/api/sign/{token}/code")["additionalProperties"] is False


# ----------------------------------------------------------------------------- the document


async def test_not_found_of_the_fixed_file_routes_is_documented(api: Any) -> None:
    document = await _document(api)
    for path in ("/static/{name}", "/docs/assets/{name}"):
        assert "404" in document["paths"][path]["get"]["responses"], path
        await _problem(await api.get(path.replace("{name}", "nope")), 404)


async def test_the_sign_body_says_the_signer_must_agree(api: Any) -> None:
    sign_in = _schema(await _document(api), "SignIn")
    assert "agree" in sign_in["required"] and sign_in["properties"]["agree"]["const"] is True


async def test_the_unreadable_form_answer_of_the_page_forms_is_documented(api: Any) -> None:
    document = await _document(api)
    for action in ("code", "sign", "decline"):
        responses = document["paths"][f"/sign/{{token}}/{action}"]["post"]["responses"]
        assert "application/problem+json" in responses["400"]["content"], action


async def test_the_plan_codes_a_tenant_may_choose_are_listed(api: Any, container: Container) -> None:
    code = _schema(await _document(api), "PlanIn")["properties"]["code"]
    assert code["enum"] == [p.code for p in container.plans.catalogue.plans if not p.is_custom]


async def test_the_webhook_endpoint_schema_says_what_the_server_accepts(api: Any) -> None:
    endpoint = _schema(await _document(api), "EndpointIn")
    assert endpoint["properties"]["url"]["pattern"].startswith("^https?://")
    from esign_gateway.domain.events import WEBHOOK_TYPES

    events = next(s for s in endpoint["properties"]["events"]["anyOf"] if s.get("type") == "array")
    assert events["items"]["enum"] == sorted(WEBHOOK_TYPES)


async def test_the_extend_body_needs_exactly_one_expiry(api: Any) -> None:
    extend = _schema(await _document(api), "ExtendIn")
    assert [branch["required"] for branch in extend["oneOf"]] == [["expires_in_days"], ["expires_at"]]


@pytest.mark.parametrize("query", [
    "/v1/archive?record_type=x", "/v1/archive?record_type=" + "x" * 20, "/v1/archive?record_id=" + "x" * 129,
    "/v1/envelopes?record_id=" + "x" * 129, "/v1/webhook/deliveries?envelope_id=" + "x" * 40,
    "/v1/envelopes?status=", "/v1/envelopes?record_type=", "/v1/webhook/deliveries?status=",
])
async def test_a_filter_no_record_can_match_is_a_422_not_500(api: Any, tenant: Tenant, query: str) -> None:
    """Longer than its column (or not one of the record types): the ORM's validation raised, a 500."""
    field = query.split("?", 1)[1].split("=", 1)[0]
    body = await _problem(await api.get(query, headers=tenant.auth), 422)
    assert body["errors"][0]["field"] == field


@pytest.mark.parametrize("query", [
    "/v1/envelopes?cursor=garbage", "/v1/envelopes?cursor=" + "x" * 40, "/v1/archive?cursor=" + "x" * 40,
    "/v1/webhook/deliveries?cursor=" + "x" * 40, "/v1/envelopes?cursor=",
])
async def test_a_cursor_this_api_never_gave_out_is_a_400(api: Any, tenant: Tenant, query: str) -> None:
    body = await _problem(await api.get(query, headers=tenant.auth), 400)
    assert body["code"] == "malformed_request" and body["errors"][0]["field"] == "cursor"


async def test_the_multipart_upload_has_no_other_parts(api: Any, tenant: Tenant) -> None:
    """The document allowed any extra part; the server refuses one (422)."""
    document = await _document(api)
    multipart = document["paths"]["/v1/envelopes"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert multipart["schema"]["additionalProperties"] is False
    form = aiohttp.FormData()
    form.add_field("envelope", json.dumps({**envelope_body(), "documents": []}), content_type="application/json")
    form.add_field("document", make_pdf(), filename="a.pdf", content_type="application/pdf")
    form.add_field("note", "hello")
    body = await _problem(await api.post("/v1/envelopes", data=form, headers=tenant.auth), 422)
    assert body["errors"][0]["field"] == "note"


async def test_a_dead_signer_link_stays_a_page_in_the_document(api: Any) -> None:
    document = await _document(api)
    for path in ("/sign/{token}", "/download/{token}"):
        assert set(document["paths"][path]["get"]["responses"]["404"]["content"]) == {"text/html"}, path


async def test_the_document_describes_itself_as_a_json_object(api: Any) -> None:
    """``GET /openapi.json`` was documented as a binary string, which a JSON document is not."""
    content = (await _document(api))["paths"]["/openapi.json"]["get"]["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"type": "object"}


async def test_cancel_documents_that_its_body_may_be_left_out(api: Any, tenant: Tenant) -> None:
    """The document required a body; the server (as its description says) takes none."""
    operation = (await _document(api))["paths"]["/v1/envelopes/{id}/cancel"]["post"]
    assert operation["requestBody"]["required"] is False
    created = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    resp = await api.post(f"/v1/envelopes/{created['id']}/cancel", headers=tenant.auth)
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"


async def test_the_usage_month_pattern_is_a_real_month(api: Any, tenant: Tenant) -> None:
    """``^\\d{4}-\\d{2}$`` let ``0000-00`` through; the server refuses it (422)."""
    import re

    operation = (await _document(api))["paths"]["/v1/usage"]["get"]
    pattern = next(p for p in operation["parameters"] if p["name"] == "month")["schema"]["pattern"]
    assert re.fullmatch(pattern, "2026-11") and not any(re.fullmatch(pattern, m) for m in ("0000-00", "2026-13"))
    await _problem(await api.get("/v1/usage?month=0000-00", headers=tenant.auth), 422)


async def test_the_documented_create_example_is_accepted_as_it_stands(api: Any, tenant: Tenant) -> None:
    """The example Schemathesis sends first, so that what follows from an envelope is tested on a real one."""
    document = await _document(api)
    example = _body_schema(document, "/v1/envelopes")["examples"][0]
    resp = await api.post("/v1/envelopes", json=example, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
