"""Expiry and reminders, driven by moving a frozen clock and running the real job worker."""

from __future__ import annotations

from typing import Any

import pytest

from esign_gateway.db.models import AuditEvent, Job
from tests.api.conftest import Ceremony, Tenant, envelope_body, signer

JANA = ("Jana Nováková", "jana@example.cz", "+420601123456")
PETR = ("Petr Šťastný", "petr@example.cz", "+420602654321")


async def _create(api: Any, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    return await resp.json()


def _reminders(ceremony: Ceremony, address: str) -> list[Any]:
    return [m for m in ceremony.smtp.to(address) if "Připomínka" in str(m["Subject"])]


async def test_default_expiry_is_seven_days_and_the_sweep_expires_it(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    env = await _create(api, tenant, envelope_body())
    assert env["expires_at"].startswith("2026-11-30T09:00:00")
    await ceremony.run_jobs()
    ceremony.container.clock.advance(days=7)  # type: ignore[attr-defined]
    await ceremony.run_jobs()  # the expiry job, due exactly at expires_at
    row = await AuditEvent.filter(envelope_id=env["id"], type="envelope.expired").count()
    assert row == 1
    got = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert got["status"] == "expired"


async def test_expired_link_answers_410_and_the_page_says_it_expired(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    await _create(api, tenant, envelope_body(expires_in_days=2))
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    ceremony.container.clock.advance(days=2)  # type: ignore[attr-defined]
    # no worker has run: expiry is enforced at request time
    resp = await api.post(f"/api/sign/{token}/code", json={})
    assert resp.status == 410 and (await resp.json())["reason"] == "expired"
    page = await api.get(f"/sign/{token}")
    assert page.status == 410
    assert 'data-state="expired"' in await page.text() and "Platnost odkazu k podpisu vypršela" in await page.text()


async def test_reminder_fires_one_day_before_expiry_to_unsigned_signers_only(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    env = await _create(api, tenant, envelope_body([signer(*JANA), signer(*PETR)]))
    await ceremony.run_jobs()
    clock = ceremony.container.clock
    await ceremony.sign(ceremony.link_token("jana@example.cz"), JANA[2])  # Jana signs in between
    clock.advance(days=5, hours=23, minutes=59)  # type: ignore[attr-defined]
    await ceremony.run_jobs()
    assert _reminders(ceremony, "petr@example.cz") == []  # not yet
    clock.advance(minutes=1)  # type: ignore[attr-defined]
    await ceremony.run_jobs()
    (reminder,) = _reminders(ceremony, "petr@example.cz")
    text = reminder.get_body(("plain",)).get_content()
    assert env["id"] in text and ceremony.link_token("petr@example.cz") in text  # the same link again
    assert "30.11.2026 10:00" in text  # the expiry, in Prague time
    assert _reminders(ceremony, "jana@example.cz") == []  # she signed: nothing for her
    types = [e.type for e in await AuditEvent.filter(envelope_id=env["id"]).order_by("seq")]
    assert "signer.reminder_sent" in types and "envelope.reminder_sent" in types
    clock.advance(hours=12)  # type: ignore[attr-defined]
    await ceremony.run_jobs()
    assert len(_reminders(ceremony, "petr@example.cz")) == 1  # never twice for the slot


async def test_sequential_reminder_goes_only_to_the_signer_whose_turn_it_is(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    await _create(api, tenant, envelope_body([signer(*JANA, order=1), signer(*PETR, order=2)]))
    await ceremony.run_jobs()
    ceremony.container.clock.advance(days=6)  # type: ignore[attr-defined]
    await ceremony.run_jobs()
    assert len(_reminders(ceremony, "jana@example.cz")) == 1
    assert ceremony.smtp.to("petr@example.cz") == []


async def test_no_reminder_after_cancel_decline_or_completion(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    cancelled = await _create(api, tenant, envelope_body([signer(*JANA)]))
    declined = await _create(api, tenant, envelope_body([signer("Eva Malá", "eva@example.cz", "+420603111222")]))
    completed = await _create(api, tenant, envelope_body([signer(*PETR)]))
    await ceremony.run_jobs()
    assert (await api.post(f"/v1/envelopes/{cancelled['id']}/cancel", json={}, headers=tenant.auth)).status == 200
    eva = ceremony.link_token("eva@example.cz")
    assert (await api.post(f"/api/sign/{eva}/decline", json={"reason": "Ne"})).status == 200
    await ceremony.sign(ceremony.link_token("petr@example.cz"), PETR[2])
    ceremony.container.clock.advance(days=6)  # type: ignore[attr-defined]
    await ceremony.run_jobs()
    for address in ("jana@example.cz", "eva@example.cz", "petr@example.cz"):
        assert _reminders(ceremony, address) == []
    assert await Job.filter(kind="send_reminder", status="failed").count() == 0
    assert {completed["id"], declined["id"]}  # ids used above


async def test_reminders_can_be_turned_off_or_repeated(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    off = envelope_body([signer(*JANA)], reminders={"before_expiry_days": [], "every_days": None})
    every = envelope_body([signer(*PETR)], reminders={"before_expiry_days": [], "every_days": 2})
    await _create(api, tenant, off)
    await _create(api, tenant, every)
    await ceremony.run_jobs()
    for _ in range(7):
        ceremony.container.clock.advance(days=1)  # type: ignore[attr-defined]
        await ceremony.run_jobs()
    assert _reminders(ceremony, "jana@example.cz") == []
    assert len(_reminders(ceremony, "petr@example.cz")) == 3  # days 2, 4 and 6 of 7


async def test_a_reminder_whose_slot_is_reached_only_after_expiry_is_never_sent(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    await _create(api, tenant, envelope_body([signer(*JANA)]))
    await ceremony.run_jobs()
    ceremony.container.clock.advance(days=8)  # type: ignore[attr-defined]  # no worker ran for a week
    await ceremony.run_jobs()
    assert _reminders(ceremony, "jana@example.cz") == []


async def test_extend_moves_expiry_and_replans_reminders(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    env = await _create(api, tenant, envelope_body([signer(*JANA)]))
    await ceremony.run_jobs()
    clock = ceremony.container.clock
    clock.advance(days=3)  # type: ignore[attr-defined]
    resp = await api.post(f"/v1/envelopes/{env['id']}/extend", json={"expires_in_days": 10}, headers=tenant.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["expires_at"].startswith("2026-12-06T09:00:00")
    clock.advance(days=4)  # type: ignore[attr-defined]  # past the old expiry and the old reminder slot
    await ceremony.run_jobs()
    got = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert got["status"] == "sent"
    assert _reminders(ceremony, "jana@example.cz") == []  # the old slot was dropped with the old expiry
    clock.advance(days=5)  # type: ignore[attr-defined]  # one day before the new expiry
    await ceremony.run_jobs()
    assert len(_reminders(ceremony, "jana@example.cz")) == 1
    clock.advance(days=1)  # type: ignore[attr-defined]
    await ceremony.run_jobs()
    got = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert got["status"] == "expired"
    late = await api.post(f"/v1/envelopes/{env['id']}/extend", json={"expires_in_days": 5}, headers=tenant.auth)
    assert late.status == 409


async def test_extend_refuses_bad_input(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    env = await _create(api, tenant, envelope_body())
    url = f"/v1/envelopes/{env['id']}/extend"
    for body in ({}, {"expires_in_days": 91}, {"expires_at": "2020-01-01T00:00:00Z"},
                 {"expires_in_days": 3, "expires_at": "2026-12-24T00:00:00Z"}):
        resp = await api.post(url, json=body, headers=tenant.auth)
        assert resp.status == 422, body
    got = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    assert got["expires_at"] == env["expires_at"]


async def test_manual_remind_at_most_once_an_hour(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    env = await _create(api, tenant, envelope_body([signer(*JANA)]))
    await ceremony.run_jobs()
    url = f"/v1/envelopes/{env['id']}/remind"
    first = await api.post(url, headers=tenant.auth)
    assert first.status == 202 and (await first.json())["reminded"] == [env["signers"][0]["id"]]
    await ceremony.run_jobs()
    assert len(_reminders(ceremony, "jana@example.cz")) == 1
    ceremony.container.clock.advance(minutes=59)  # type: ignore[attr-defined]
    again = await api.post(url, headers=tenant.auth)
    assert again.status == 429 and int(again.headers["Retry-After"]) <= 60
    ceremony.container.clock.advance(minutes=1)  # type: ignore[attr-defined]
    assert (await api.post(url, headers=tenant.auth)).status == 202
    await ceremony.run_jobs()
    assert len(_reminders(ceremony, "jana@example.cz")) == 2


async def test_tenant_default_expiry_applies(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    await ceremony.container.tenants.update_tenant(tenant.id, expiry_days=14)
    env = await _create(api, tenant, envelope_body())
    assert env["expires_at"].startswith("2026-12-07T09:00:00")


@pytest.mark.parametrize("action", ["cancel", "extend", "remind"])
async def test_an_envelope_found_expired_by_cancel_extend_or_remind_drops_its_signer_links(
    api: Any, tenant: Tenant, ceremony: Ceremony, action: str
) -> None:
    from esign_gateway.db.models import SignerRow

    env = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    assert await SignerRow.filter(envelope_id=env["id"]).exclude(token_sealed=None).count() == 1
    ceremony.container.clock.advance(days=8)  # type: ignore[attr-defined]  # past expiry; no sweep ran yet
    body = {"cancel": {}, "extend": {"expires_in_days": 3}, "remind": None}[action]
    resp = await api.post(f"/v1/envelopes/{env['id']}/{action}", json=body, headers=tenant.auth)
    assert resp.status == 409
    assert await SignerRow.filter(envelope_id=env["id"]).exclude(token_sealed=None).count() == 0
    assert (await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json())["status"] == "expired"
