"""HTTP conventions a client relies on: media types, methods, challenges, absolute links, UTC times
with ``Z``, and what an ended envelope says about how it ended."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.api.conftest import Ceremony, Tenant, envelope_body, signer

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


async def test_a_body_that_is_not_json_is_415_with_a_problem(api: Any, tenant: Tenant) -> None:
    env = await (await api.post("/v1/envelopes", json=envelope_body(send=False), headers=tenant.auth)).json()
    resp = await api.post(f"/v1/envelopes/{env['id']}/cancel", data="reason=x",
                          headers={**tenant.auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415 and resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert (problem["code"], problem["status"]) == ("unsupported_media_type", 415)
    resp = await api.post("/v1/envelopes", data=json.dumps(envelope_body()),
                          headers={**tenant.auth, "Content-Type": "text/plain"})
    assert resp.status == 415
    listed = await (await api.get("/v1/envelopes", headers=tenant.auth)).json()
    assert [e["id"] for e in listed["items"]] == [env["id"]] and listed["items"][0]["status"] == "draft"


async def test_a_method_the_resource_does_not_have_is_405_with_allow(api: Any, tenant: Tenant) -> None:
    resp = await api.patch("/v1/envelopes", headers=tenant.auth)
    assert resp.status == 405 and resp.content_type == "application/problem+json"
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    problem = await resp.json()
    assert (problem["code"], problem["status"]) == ("method_not_allowed", 405)


async def test_every_401_carries_a_bearer_challenge(api: Any) -> None:
    for resp in (await api.get("/v1/envelopes"),
                 await api.get("/v1/envelopes", headers={"Authorization": "Bearer esk_not_a_key"}),
                 await api.post("/webhooks/digisign", data=b"{}")):
        if resp.status == 404:  # DigiSign not configured in this test app
            continue
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer ")


async def test_links_are_absolute_from_the_public_url(api: Any, tenant: Tenant, container: Any) -> None:
    resp = await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    env = await resp.json()
    base = container.settings.base_url.rstrip("/")
    assert base.startswith("http")
    assert env["links"] == {"self": f"{base}/v1/envelopes/{env['id']}",
                            "download": f"{base}/v1/envelopes/{env['id']}/download",
                            "audit": f"{base}/v1/envelopes/{env['id']}/audit"}
    assert resp.headers["Location"] == env["links"]["self"]


def _times(value: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _times(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v, key)]
    if isinstance(value, str) and (key.endswith(("_at", "_until")) or key == "at"):
        return [(key, value)]
    return []


async def test_an_ended_envelope_says_when_and_why_and_every_time_is_utc_with_z(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Any
) -> None:
    from webhooks.models import WebhookEndpoint  # noqa: F401  (the endpoint table exists)

    cancelled = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    cancelled = await (await api.post(f"/v1/envelopes/{cancelled['id']}/cancel", json={"reason": "Nová verze"},
                                      headers=tenant.auth)).json()
    assert cancelled["cancel_reason"] == "Nová verze" and cancelled["cancelled_at"] and not cancelled["declined_at"]

    body = envelope_body([signer("Petr Šťastný", "petr@example.cz", "+420602987654")])
    declined = await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json()
    await ceremony.run_jobs()
    token = ceremony.link_token("petr@example.cz")
    resp = await api.post(f"/api/sign/{token}/decline", json={"reason": "Špatná cena"})
    assert resp.status == 200
    declined = await (await api.get(f"/v1/envelopes/{declined['id']}", headers=tenant.auth)).json()
    assert declined["status"] == "declined" and declined["declined_at"] and not declined["cancelled_at"]
    assert declined["signers"][0]["decline_reason"] == "Špatná cena"

    for doc in (cancelled, declined):
        times = _times(doc)
        assert times and all(ISO_Z.match(v) for _, v in times), times
    trail = await (await api.get(f"/v1/envelopes/{declined['id']}/audit",
                                 headers={**tenant.auth, "Accept": "application/json"})).json()
    assert all(ISO_Z.match(e["at"]) for e in trail["events"])


async def test_a_webhook_names_the_signer_and_carries_the_decline_reason(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Any
) -> None:
    from esign_gateway.db.models import OutboxEvent

    body = envelope_body([signer("Petr Šťastný", "petr@example.cz", "+420602987654")])
    env = await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json()
    await ceremony.run_jobs()
    await api.post(f"/api/sign/{ceremony.link_token('petr@example.cz')}/decline", json={"reason": "Špatná cena"})
    events = {e.type: e.payload for e in await OutboxEvent.filter(envelope_id=env["id"])}
    signer_part = events["signer.declined"]["data"]["signer"]
    assert signer_part["name"] == "Petr Šťastný" and signer_part["decline_reason"] == "Špatná cena"
    assert ISO_Z.match(events["signer.declined"]["created_at"])
    assert all(ISO_Z.match(v) for _, v in _times(events["envelope.sent"]["data"]) if v)
