"""The OpenAPI document: valid 3.1 (checked by a validator we did not write), and the same routes
as the server (no drift either way)."""

from __future__ import annotations

import re
from typing import Any

from openapi_spec_validator import validate

from tests.api.conftest import Tenant, envelope_body


async def _document(api: Any) -> dict[str, Any]:
    resp = await api.get("/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    return await resp.json()


async def test_the_document_is_valid_openapi_3_1(api: Any) -> None:
    document = await _document(api)
    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_every_route_is_documented_and_every_operation_is_routed(api: Any) -> None:
    document = await _document(api)
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    routed = {(r.method, r.resource.canonical) for r in api.app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    assert documented == routed


async def test_the_problem_codes_a_route_answers_are_in_its_operation(api: Any, tenant: Tenant) -> None:
    document = await _document(api)
    create = document["paths"]["/v1/envelopes"]["post"]
    body = envelope_body()
    body["signers"][0]["fields"] = [{"anchor": "no such text anywhere"}]
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    problem = await resp.json()
    described = create["responses"][str(resp.status)]["description"]
    assert f"`{problem['code']}`" in described
    unauthenticated = await api.get("/v1/envelopes")
    assert "`unauthorized`" in document["paths"]["/v1/envelopes"]["get"]["responses"][
        str(unauthenticated.status)]["description"]


async def test_the_envelope_schema_shows_where_each_signer_signs(api: Any) -> None:
    schemas = (await _document(api))["components"]["schemas"]
    signer_in = next(v for k, v in schemas.items() if re.fullmatch(r"SignerIn(-Input)?", k))
    assert "fields" in signer_in["properties"]
    signer_out = next(v for k, v in schemas.items() if re.fullmatch(r"SignerOut(-Output)?", k))
    assert "fields" in signer_out["properties"]


async def test_webhooks_are_documented_for_every_event_type(api: Any) -> None:
    from esign_gateway.domain.events import WEBHOOK_TYPES

    document = await _document(api)
    assert set(document["webhooks"]) == set(WEBHOOK_TYPES)


async def test_the_documented_request_example_is_accepted_as_it_stands(api: Any, tenant: Tenant) -> None:
    document = await _document(api)
    ref = document["paths"]["/v1/envelopes"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    (example,) = document["components"]["schemas"][ref.rsplit("/", 1)[1]]["examples"]
    resp = await api.post("/v1/envelopes", json=example, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["status"] == "sent"


async def test_every_operation_behind_a_credential_documents_the_database_outage_answer(api: Any) -> None:
    spec = await (await api.get("/openapi.json")).json()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if op.get("security") or "token" in path:  # an API key, or a signer's link token
                assert "503" in op["responses"], f"{method.upper()} {path}"
                assert "unavailable" in op["responses"]["503"]["description"]
                assert "Retry-After" in op["responses"]["503"].get("headers", {})
