"""Plans, the monthly allowance, usage, billing and Idempotency-Key over the real HTTP API (SPEC §8)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import FormData

from esign_gateway.container import Container
from esign_gateway.db.models import DocumentRow, EnvelopeRow, Job, OutboxEvent, UsageRecord
from tests.api.conftest import Ceremony, Tenant, envelope_body, signer
from tests.factories import make_pdf
from tests.fakes import FrozenClock


@pytest.fixture
async def free(container: Container) -> Tenant:
    info, key = await container.tenants.create_tenant("Malá firma s.r.o.", paid=True)
    return Tenant(info.id, key.secret)


async def _stored(container: Container) -> dict[str, int]:
    return {
        "envelopes": await EnvelopeRow.all().count(),
        "documents": await DocumentRow.all().count(),
        "usage": await UsageRecord.all().count(),
        "jobs": await Job.all().count(),
        "events": await OutboxEvent.all().count(),
        "blobs": sum(1 for p in container.settings.documents_dir.rglob("*") if p.is_file()),
    }


async def _send(api: Any, t: Tenant, documents: int = 1, **extra: Any) -> Any:
    return await api.post("/v1/envelopes", json=envelope_body(documents=documents, **extra), headers=t.auth)


async def _usage(api: Any, t: Tenant, month: str | None = None) -> dict[str, Any]:
    resp = await api.get("/v1/usage" + (f"?month={month}" if month else ""), headers=t.auth)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_fifth_document_of_the_month_on_free_is_402_and_stores_nothing(
    api: Any, free: Tenant, container: Container
) -> None:
    assert (await _send(api, free, documents=3)).status == 201
    assert (await _send(api, free, documents=1)).status == 201
    before = await _stored(container)

    resp = await _send(api, free, documents=1)
    assert resp.status == 402 and resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["code"] == "quota_exceeded"
    assert (body["allowance"], body["used"], body["remaining"], body["plan"]) == (4, 4, 0, "free")
    assert body["month"] == "2026-11"
    assert [p["code"] for p in body["upgrade"]] == ["s", "m", "l"]
    assert body["upgrade"][0] == {"code": "s", "name": "S", "monthly_documents": 20, "monthly_fee": "190.00",
                                  "daily_requests": 5000}
    assert await _stored(container) == before

    usage = await _usage(api, free)
    assert (usage["documents_sent"], usage["allowance"], usage["remaining"], usage["overage"]) == (4, 4, 0, 0)


async def test_drafts_are_free_and_the_allowance_is_taken_when_a_draft_is_sent(
    api: Any, free: Tenant, container: Container
) -> None:
    drafts = []
    for _ in range(3):
        resp = await _send(api, free, documents=2, send=False)
        assert resp.status == 201
        drafts.append((await resp.json())["id"])
    assert (await _usage(api, free))["documents_sent"] == 0

    assert (await api.post(f"/v1/envelopes/{drafts[0]}/send", headers=free.auth)).status == 200
    assert (await api.post(f"/v1/envelopes/{drafts[1]}/send", headers=free.auth)).status == 200
    before = await _stored(container)
    resp = await api.post(f"/v1/envelopes/{drafts[2]}/send", headers=free.auth)
    assert resp.status == 402 and (await resp.json())["used"] == 4
    assert await _stored(container) == before
    assert (await (await api.get(f"/v1/envelopes/{drafts[2]}", headers=free.auth)).json())["status"] == "draft"


async def test_half_past_eleven_utc_on_the_last_day_counts_for_next_month_in_prague(
    api: Any, free: Tenant, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 11, 30, 22, 59, tzinfo=UTC))  # 23:59 in Prague, still November
    assert (await _send(api, free, documents=4)).status == 201
    assert (await _send(api, free)).status == 402

    clock.set(datetime(2026, 11, 30, 23, 30, tzinfo=UTC))  # 00:30 on 1 December in Prague
    assert (await _send(api, free)).status == 201
    december = await _usage(api, free)
    assert (december["month"], december["documents_sent"], december["remaining"]) == ("2026-12", 1, 3)
    november = await _usage(api, free, "2026-11")
    assert (november["documents_sent"], november["remaining"]) == (4, 0)
    months = {r.month for r in await UsageRecord.filter(tenant_id=free.id)}
    assert months == {"2026-11", "2026-12"}


async def test_usage_month_must_be_well_formed_and_begun(api: Any, free: Tenant) -> None:
    for bad in ("2026-13", "november", "2027-01"):
        resp = await api.get(f"/v1/usage?month={bad}", headers=free.auth)
        assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "month"


async def test_upgrade_takes_effect_at_once_and_downgrade_from_next_month(
    api: Any, free: Tenant, clock: FrozenClock
) -> None:
    assert (await _send(api, free, documents=4)).status == 201
    resp = await api.put("/v1/plan", json={"code": "s"}, headers=free.auth)
    assert resp.status == 200
    state = await resp.json()
    assert state["plan"]["code"] == "s" and state["signing_enabled"] and state["pending_plan"] is None
    assert (await _send(api, free)).status == 201  # the 5th document, at once
    usage = await _usage(api, free)
    assert (usage["plan"]["code"], usage["allowance"], usage["remaining"], usage["fee"]) == ("s", 20, 15, "190.00")

    resp = await api.put("/v1/plan", json={"code": "free"}, headers=free.auth)
    state = await resp.json()
    assert state["plan"]["code"] == "s"
    assert state["pending_plan"]["code"] == "free"
    assert state["pending_plan"]["effective_from"] == "2026-11-30T23:00:00Z"  # midnight, 1 Dec, Prague
    usage = await _usage(api, free)
    assert (usage["allowance"], usage["pending_plan"]["code"]) == (20, "free")
    assert (await _send(api, free)).status == 201  # still S this month

    clock.set(datetime(2026, 11, 30, 23, 0, 1, tzinfo=UTC))
    state = await (await api.get("/v1/plan", headers=free.auth)).json()
    assert state["plan"]["code"] == "free" and state["pending_plan"] is None
    december = await _usage(api, free)
    assert (december["plan"]["code"], december["allowance"], december["fee"]) == ("free", 4, "0.00")
    november = await _usage(api, free, "2026-11")
    assert (november["plan"]["code"], november["fee"], november["documents_sent"]) == ("s", "190.00", 6)


async def test_choosing_the_current_plan_again_cancels_a_pending_downgrade(api: Any, tenant: Tenant) -> None:
    await api.put("/v1/plan", json={"code": "m"}, headers=tenant.auth)  # L → M: pending
    state = await (await api.get("/v1/plan", headers=tenant.auth)).json()
    assert (state["plan"]["code"], state["pending_plan"]["code"]) == ("l", "m")
    state = await (await api.put("/v1/plan", json={"code": "l"}, headers=tenant.auth)).json()
    assert (state["plan"]["code"], state["pending_plan"]) == ("l", None)


async def test_unknown_or_custom_plan_is_422_and_changes_nothing(api: Any, free: Tenant) -> None:
    for body in ({"code": "xl"}, {"code": "custom"}, {}, {"code": "s", "extra": 1}):
        resp = await api.put("/v1/plan", json=body, headers=free.auth)
        assert resp.status == 422, body
        assert (await resp.json())["code"] == "validation_failed"
    state = await (await api.get("/v1/plan", headers=free.auth)).json()
    assert state["plan"]["code"] == "free" and state["pending_plan"] is None


async def test_plan_catalogue_lists_the_plans_file(api: Any, free: Tenant) -> None:
    body = await (await api.get("/v1/plans", headers=free.auth)).json()
    assert [(p["code"], p["monthly_documents"], p["monthly_fee"]) for p in body["items"]] == [
        ("free", 4, "0.00"), ("s", 20, "190.00"), ("m", 50, "390.00"), ("l", 150, "890.00"), ("custom", None, None),
    ]
    assert {p["currency"] for p in body["items"]} == {"CZK"}


async def test_terminated_module_refuses_new_sends_while_in_flight_envelopes_finish(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    env = await (await _send(api, tenant)).json()
    draft = await (await _send(api, tenant, send=False)).json()
    await ceremony.run_jobs()

    state = await (await api.delete("/v1/plan", headers=tenant.auth)).json()
    assert state["signing_enabled"] is False and state["plan"]["code"] == "l"
    before = await _stored(container)
    resp = await _send(api, tenant)
    assert resp.status == 403 and (await resp.json())["code"] == "signing_disabled"
    resp = await api.post(f"/v1/envelopes/{draft['id']}/send", headers=tenant.auth)
    assert resp.status == 403 and (await resp.json())["code"] == "signing_disabled"
    assert await _stored(container) == before

    await ceremony.sign(ceremony.link_token("jana@example.cz"), "+420601123456")  # the envelope in flight finishes
    await ceremony.run_jobs()
    done = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert done["status"] == "completed"
    assert (await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)).status == 200
    assert (await _usage(api, tenant))["signing_enabled"] is False

    state = await (await api.put("/v1/plan", json={"code": "s"}, headers=tenant.auth)).json()
    assert state["signing_enabled"] is True and state["plan"]["code"] == "s"
    assert (await api.post(f"/v1/envelopes/{draft['id']}/send", headers=tenant.auth)).status == 200
    # the month keeps the highest plan held (L), though S is in force now
    usage = await _usage(api, tenant)
    assert (usage["plan"]["code"], usage["fee"], usage["documents_sent"]) == ("l", "890.00", 2)


async def test_usage_threshold_events_at_75_and_100_percent_written_with_the_send(
    api: Any, free: Tenant
) -> None:
    for _ in range(2):
        assert (await _send(api, free)).status == 201
    assert await OutboxEvent.filter(type="usage.threshold").count() == 0
    assert (await _send(api, free)).status == 201  # 3 of 4 = 75 %
    assert (await _send(api, free)).status == 201  # 4 of 4 = 100 %
    events = await OutboxEvent.filter(type="usage.threshold", tenant_id=free.id).order_by("created_at", "id")
    usage = [e.payload["data"]["usage"] for e in events]
    assert [(u["threshold_percent"], u["documents_sent"], u["remaining"]) for u in usage] == [(75, 3, 1), (100, 4, 0)]
    assert all(u["month"] == "2026-11" and u["plan"] == "free" and u["allowance"] == 4 for u in usage)
    dispatched = {i for j in await Job.filter(kind="dispatch_event") for i in j.payload["event_ids"]}
    assert {e.id for e in events} <= dispatched  # each delivered like every CRM event


async def test_billing_lines_match_usage(api: Any, container: Container, free: Tenant, clock: FrozenClock) -> None:
    big_info, big_key = await container.tenants.create_tenant("Velká a.s.", paid=True, plan_code="s")
    big = Tenant(big_info.id, big_key.secret)
    await container.tenants.create_tenant("Zkušební s.r.o.", paid=False)  # trial: no line
    gone_info, gone_key = await container.tenants.create_tenant("Odešlá s.r.o.", paid=True)
    await api.delete("/v1/plan", headers=Tenant(gone_info.id, gone_key.secret).auth)

    clock.set(datetime(2026, 12, 1, 9, tzinfo=UTC))  # December: the terminated tenant held nothing in it
    assert (await _send(api, free, documents=2)).status == 201
    assert (await _send(api, big, documents=5)).status == 201
    await api.put("/v1/plan", json={"code": "l"}, headers=big.auth)
    assert (await _send(api, big, documents=1)).status == 201
    await api.put("/v1/plan", json={"code": "m"}, headers=big.auth)  # lowering: from January

    lines = {line.tenant_name: line.as_dict() for line in await container.plans.billing("2026-12")}
    assert set(lines) == {"Malá firma s.r.o.", "Velká a.s."}
    assert (lines["Velká a.s."]["plan"], lines["Velká a.s."]["monthly_fee"], lines["Velká a.s."]["documents_sent"]) == (
        "l", "890.00", 6)
    assert (lines["Malá firma s.r.o."]["plan"], lines["Malá firma s.r.o."]["monthly_fee"]) == ("free", "0.00")
    for t, name in ((free, "Malá firma s.r.o."), (big, "Velká a.s.")):
        usage = await _usage(api, t, "2026-12")
        line = lines[name]
        assert (line["documents_sent"], line["allowance"], line["monthly_fee"], line["plan"]) == (
            usage["documents_sent"], usage["allowance"], usage["fee"], usage["plan"]["code"])
    # November: the terminated tenant held free until it left; the trial one is still left out
    november = {line.tenant_name for line in await container.plans.billing("2026-11")}
    assert november == {"Malá firma s.r.o.", "Velká a.s.", "Odešlá s.r.o."}


# ----------------------------------------------------------------------------- Idempotency-Key


async def test_same_key_and_body_replays_the_first_response_and_counts_once(
    api: Any, free: Tenant, container: Container
) -> None:
    body = envelope_body()
    headers = {**free.auth, "Idempotency-Key": "crm-deal-42-send-1"}
    first = await api.post("/v1/envelopes", json=body, headers=headers)
    assert first.status == 201
    first_body = await first.json()
    stored = await _stored(container)

    again = await api.post("/v1/envelopes", json=body, headers=headers)
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == first_body
    assert again.headers["Location"] == first.headers["Location"] == first_body["links"]["self"]
    assert again.headers["Location"].endswith(f"/v1/envelopes/{first_body['id']}")
    assert await _stored(container) == stored
    assert (await _usage(api, free))["documents_sent"] == 1

    changed = dict(body, name="Jiná smlouva")
    resp = await api.post("/v1/envelopes", json=changed, headers=headers)
    assert resp.status == 422 and (await resp.json())["code"] == "idempotency_conflict"
    assert await _stored(container) == stored


async def test_multipart_retry_with_a_new_boundary_is_the_same_request(api: Any, free: Tenant) -> None:
    pdf = make_pdf()
    envelope = {k: v for k, v in envelope_body().items() if k != "documents"}

    def form() -> FormData:
        f = FormData()
        f.add_field("envelope", json.dumps(envelope), content_type="application/json")
        f.add_field("document", pdf, filename="smlouva.pdf", content_type="application/pdf")
        return f

    headers = {**free.auth, "Idempotency-Key": "multipart-1"}
    first = await (await api.post("/v1/envelopes", data=form(), headers=headers)).json()
    resp = await api.post("/v1/envelopes", data=form(), headers=headers)
    assert resp.status == 201 and (await resp.json())["id"] == first["id"]
    other = FormData()
    other.add_field("envelope", json.dumps(envelope), content_type="application/json")
    other.add_field("document", make_pdf(text="Jiná smlouva"), filename="smlouva.pdf", content_type="application/pdf")
    resp = await api.post("/v1/envelopes", data=other, headers=headers)
    assert resp.status == 422 and (await resp.json())["code"] == "idempotency_conflict"


async def test_a_refused_request_frees_its_key_for_a_retry_after_the_cause_is_fixed(
    api: Any, free: Tenant
) -> None:
    assert (await _send(api, free, documents=4)).status == 201
    headers = {**free.auth, "Idempotency-Key": "after-upgrade"}
    body = envelope_body()
    resp = await api.post("/v1/envelopes", json=body, headers=headers)
    assert resp.status == 402
    await api.put("/v1/plan", json={"code": "s"}, headers=free.auth)
    resp = await api.post("/v1/envelopes", json=body, headers=headers)
    assert resp.status == 201 and "Idempotent-Replayed" not in resp.headers


async def test_send_with_a_key_is_idempotent_and_keys_expire_after_a_day(
    api: Any, free: Tenant, clock: FrozenClock
) -> None:
    draft = await (await _send(api, free, send=False)).json()
    headers = {**free.auth, "Idempotency-Key": "send-draft"}
    first = await api.post(f"/v1/envelopes/{draft['id']}/send", headers=headers)
    assert first.status == 200
    again = await api.post(f"/v1/envelopes/{draft['id']}/send", headers=headers)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["id"] == draft["id"]
    assert (await _usage(api, free))["documents_sent"] == 1
    # the same key on another operation is another request
    resp = await api.post("/v1/envelopes", json=envelope_body(), headers=headers)
    assert resp.status == 422 and (await resp.json())["code"] == "idempotency_conflict"
    # after 24 h the key is forgotten: the same call is new (and a sent envelope cannot be sent again)
    clock.advance(hours=24, seconds=1)
    resp = await api.post(f"/v1/envelopes/{draft['id']}/send", headers=headers)
    assert resp.status == 409 and (await resp.json())["code"] == "invalid_state"


async def test_bad_idempotency_key_is_422(api: Any, free: Tenant) -> None:
    for key in ("", "x" * 256, "klíč"):
        resp = await api.post("/v1/envelopes", json=envelope_body(),
                              headers={**free.auth, "Idempotency-Key": key})
        assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "Idempotency-Key", key


async def test_two_signer_envelope_counts_documents_not_signers(api: Any, free: Tenant) -> None:
    body = envelope_body([signer(), signer("Ľubo", "lubo@example.sk", "+421905123456")], documents=2)
    assert (await api.post("/v1/envelopes", json=body, headers=free.auth)).status == 201
    assert (await _usage(api, free))["documents_sent"] == 2
