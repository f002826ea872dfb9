"""CRM-level scenarios, run against both providers (``provider_name`` is ``local`` or ``digisign``).

Differences between the providers are explicit here, never hidden:

* who sends invitations and planned reminders: we (e-mail) for ``local``; DigiSign for ``digisign``
  (planned reminders become DigiSign envelope notifications; a manual remind is a DigiSign resend);
* what the signed result is: our PAdES signatures (validated with pyHanko) for ``local``; DigiSign's
  ``combined`` PDF, archived with its audit log, for ``digisign``.
"""

from __future__ import annotations

from typing import Any

from esign_gateway.container import Container
from esign_gateway.db.models import AuditEvent, Job
from esign_gateway.db.repositories import verify_chain
from tests.api.conftest import Tenant, envelope_body, signer
from tests.contract.conftest import CrmReceiver, Signers
from tests.factories import signature_kinds
from tests.fakes import FrozenClock
from tests.fakes.digisign import FakeDigiSign

JANA = ("jana@example.cz", "+420601123456")
LUBO = ("lubo@example.sk", "+421905123456")


async def _create(
    api: Any, tenant: Tenant, driver: Signers, people: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    resp = await api.post("/v1/envelopes", json=envelope_body(people, **extra), headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    env = dict(await resp.json())
    await driver.settle()
    return env


async def _get(api: Any, tenant: Tenant, envelope_id: str) -> dict[str, Any]:
    return dict(await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json())


async def test_one_signer_signs_and_the_signed_pdf_is_archived_with_us(
    api: Any, tenant: Tenant, signers: Signers, provider_name: str, container: Container, fake_digisign: FakeDigiSign,
    crm: CrmReceiver,
) -> None:
    await api.put("/v1/webhook", json={"url": crm.url}, headers=tenant.auth)
    env = await _create(api, tenant, signers)
    assert env["provider"] == provider_name and env["status"] == "sent"
    assert signers.was_invited(env["id"], JANA[0])

    await signers.sign(env["id"], *JANA)
    done = await _get(api, tenant, env["id"])
    assert done["status"] == "completed" and done["signers"][0]["status"] == "signed"
    assert done["retained_until"] and done["documents"][0]["signed_sha256"]

    resp = await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)
    assert resp.status == 200
    pdf = await resp.read()
    assert pdf.startswith(b"%PDF")
    if provider_name == "local":
        assert signature_kinds(pdf) == ["/Sig", "/DocTimeStamp"]
    else:  # DigiSign's result, archived with us (not fetched from DigiSign on download)
        remote_id = next(e["id"] for e in fake_digisign.envelopes.values() if e["metadata"] == env["id"])
        calls = len(fake_digisign.calls)
        assert b"Fake DigiSign" in pdf
        archived = await AuditEvent.get(envelope_id=env["id"], type="envelope.provider_result_archived")
        assert await container.store.get(archived.data["audit_log"]) != pdf
        again = await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)
        assert await again.read() == pdf and len(fake_digisign.calls) == calls
        assert remote_id
    assert await verify_chain(env["id"]) is None

    await signers.settle()
    assert crm.types(env["id"]) == ["envelope.sent", "signer.viewed", "signer.signed", "envelope.completed"]
    report = await api.get(f"/v1/envelopes/{env['id']}/audit", headers=tenant.auth)  # sealed by us, either way
    assert report.status == 200 and report.content_type == "application/pdf"
    assert signature_kinds(await report.read()) == ["/Sig", "/DocTimeStamp"]
    assert not await Job.filter(last_error__isnull=False).exists()  # no job of either path failed
    completed = next(e for e in crm.events if e["type"] == "envelope.completed")
    assert completed["data"]["envelope"]["status"] == "completed" and completed["data"]["envelope"]["id"] == env["id"]


async def test_second_signer_notified_only_after_first_signs(
    api: Any, tenant: Tenant, signers: Signers
) -> None:
    env = await _create(api, tenant, signers, [signer(), signer("Ľubo Kováč", LUBO[0], LUBO[1], order=2)])
    assert signers.was_invited(env["id"], JANA[0]) and not signers.was_invited(env["id"], LUBO[0])
    state = await _get(api, tenant, env["id"])
    assert [s["status"] for s in state["signers"]] == ["notified", "waiting"]

    await signers.sign(env["id"], *JANA)
    assert signers.was_invited(env["id"], LUBO[0])
    state = await _get(api, tenant, env["id"])
    assert [s["status"] for s in state["signers"]] == ["signed", "notified"] and state["status"] == "sent"

    await signers.sign(env["id"], *LUBO)
    assert (await _get(api, tenant, env["id"]))["status"] == "completed"


async def test_decline_ends_the_envelope_with_the_reason(api: Any, tenant: Tenant, signers: Signers) -> None:
    env = await _create(api, tenant, signers)
    await signers.decline(env["id"], JANA[0], "Špatná cena")
    state = await _get(api, tenant, env["id"])
    assert state["status"] == "declined"
    assert state["signers"][0]["status"] == "declined" and state["signers"][0]["decline_reason"] == "Špatná cena"


async def test_cancel_reaches_the_provider(
    api: Any, tenant: Tenant, signers: Signers, provider_name: str, fake_digisign: FakeDigiSign
) -> None:
    env = await _create(api, tenant, signers)
    resp = await api.post(f"/v1/envelopes/{env['id']}/cancel", json={"reason": "Nová verze"}, headers=tenant.auth)
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    await signers.settle()
    if provider_name == "digisign":
        remote = next(e for e in fake_digisign.envelopes.values() if e["metadata"] == env["id"])
        assert remote["status"] == "cancelled" and remote["cancelReason"] == "Nová verze"
    assert (await _get(api, tenant, env["id"]))["status"] == "cancelled"


async def test_expiry_ends_the_envelope_at_the_same_moment_on_both_sides(
    api: Any, tenant: Tenant, signers: Signers, clock: FrozenClock, provider_name: str,
    fake_digisign: FakeDigiSign,
) -> None:
    env = await _create(api, tenant, signers, expires_in_days=2)
    if provider_name == "digisign":  # DigiSign got our expiry as validTo: it closes its page then
        remote = next(e for e in fake_digisign.envelopes.values() if e["metadata"] == env["id"])
        assert remote["validTo"].startswith("2026-11-25T10:00:00")  # 09:00 UTC in Prague time
    clock.advance(days=2, seconds=1)
    if provider_name == "local":  # our page refuses a second late, before any sweep ran
        resp = await api.get(f"/sign/{signers.local.link_token(JANA[0])}")
        assert resp.status == 410
    await signers.settle()
    assert (await _get(api, tenant, env["id"]))["status"] == "expired"


async def test_reminders_planned_and_manual(
    api: Any, tenant: Tenant, signers: Signers, clock: FrozenClock, provider_name: str,
    fake_digisign: FakeDigiSign,
) -> None:
    env = await _create(api, tenant, signers, expires_in_days=3)
    resp = await api.post(f"/v1/envelopes/{env['id']}/remind", headers=tenant.auth)
    assert resp.status == 202
    await signers.settle()
    clock.advance(days=2, minutes=1)  # the planned "1 day before expiry" slot is due
    await signers.settle()
    reminded = await AuditEvent.filter(envelope_id=env["id"], type="signer.reminder_sent").count()
    if provider_name == "local":
        assert len(signers.local.smtp.to(JANA[0])) == 3  # invitation, manual, planned
        assert reminded == 2
    else:
        remote = next(e for e in fake_digisign.envelopes.values() if e["metadata"] == env["id"])
        assert remote["recipients"][0].get("resent") == 1  # the manual one: a DigiSign resend
        assert [(n["type"], n["days"]) for n in remote["notifications"]] == [("toSignBeforeExpires", 1)]
        assert reminded == 1 and not signers.local.smtp.to(JANA[0])  # DigiSign e-mails, not us
