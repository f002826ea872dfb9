"""DigiSign as the real API behaves, or may behave where the sources do not know (notes §10, C1–C16):
each scenario runs against both strictness settings of the fake (``digisign`` and ``digisign:strict``).

The before-expiry reminder type refused by DigiSign (C2) is in ``test_providers.py``
(``test_reminders_planned_and_manual``, strict variant).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from esign_gateway.config import Settings
from esign_gateway.container import Container
from esign_gateway.db.models import AuditEvent, Job
from tests.api.conftest import Tenant, envelope_body
from tests.contract.conftest import DIGISIGN_VARIANTS, CrmReceiver, Signers
from tests.fakes import FrozenClock
from tests.fakes.digisign import FakeDigiSign, Fault

pytestmark = pytest.mark.parametrize("provider_variant", DIGISIGN_VARIANTS, indirect=True)

JANA = ("jana@example.cz", "+420601123456")


async def _sent(api: Any, tenant: Tenant, signers: Signers, **extra: Any) -> str:
    resp = await api.post("/v1/envelopes", json=envelope_body(**extra), headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    envelope_id = str((await resp.json())["id"])
    await signers.settle()
    return envelope_id


async def _get(api: Any, tenant: Tenant, envelope_id: str) -> dict[str, Any]:
    return dict(await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json())


def _remote(fake: FakeDigiSign, envelope_id: str) -> dict[str, Any]:
    return next(e for e in fake.envelopes.values() if e["metadata"] == envelope_id)


async def _control(fake: FakeDigiSign, path: str, **body: Any) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{fake.base_url}/_control/{path}", json=body) as resp:
        assert resp.status in (200, 204), await resp.text()


async def test_a_send_whose_answer_is_lost_makes_exactly_one_sent_envelope(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, container: Container
) -> None:
    """C5: DigiSign sends, but its answer never arrives; the adapter reads the envelope back instead
    of sending again, and a retried job does not send again either."""
    fake_digisign.faults.append(Fault(path="/send", method="POST", lose_answer=True))
    envelope_id = await _sent(api, tenant, signers)
    remote = _remote(fake_digisign, envelope_id)
    sends = [c for c in fake_digisign.calls if c == ("POST", f"/api/envelopes/{remote['id']}/send")]
    assert remote["status"] == "sent" and len(sends) == 1
    await container.remote.send_job({"envelope_id": envelope_id})  # the job once more (e.g. a crash after it)
    assert fake_digisign.calls.count(("POST", f"/api/envelopes/{remote['id']}/send")) == 1
    assert len([e for e in fake_digisign.envelopes.values() if e["metadata"] == envelope_id]) == 1
    assert not await Job.filter(kind="provider_send", last_error__isnull=False).exists()
    await signers.sign(envelope_id, *JANA)
    assert (await _get(api, tenant, envelope_id))["status"] == "completed"


async def test_a_lost_answer_to_adding_a_recipient_is_read_back_not_posted_twice(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign
) -> None:
    fake_digisign.faults.append(Fault(path="/recipients", method="POST", lose_answer=True))
    envelope_id = await _sent(api, tenant, signers)
    remote = _remote(fake_digisign, envelope_id)
    assert len(remote["recipients"]) == 1 and remote["status"] == "sent"


async def test_a_listed_envelope_with_someone_elses_metadata_is_neither_adopted_nor_deleted(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, container: Container
) -> None:
    """C1: DigiSign does not filter by metadata; a draft and a sent envelope of another integration
    in the same account are in every listing."""
    client = container.providers["digisign"].client  # type: ignore[attr-defined]
    theirs = []
    for status in ("draft", "sent"):
        made = await client.call("POST", "/api/envelopes", json={"name": "Cizí", "metadata": "their-crm-4711"})
        fake_digisign.envelopes[made["id"]]["status"] = status
        theirs.append(made["id"])
    envelope_id = await _sent(api, tenant, signers)
    ours = _remote(fake_digisign, envelope_id)
    assert ours["id"] not in theirs and ours["status"] == "sent"
    assert [fake_digisign.envelopes[t]["status"] for t in theirs] == ["draft", "sent"]  # untouched
    state = await _get(api, tenant, envelope_id)
    assert state["status"] == "sent" and state["signers"][0]["status"] == "notified"


async def test_a_withdrawn_envelope_ends_cancelled_with_the_withdrawals_reason(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, crm: CrmReceiver
) -> None:
    await api.put("/v1/webhook", json={"url": crm.url}, headers=tenant.auth)
    envelope_id = await _sent(api, tenant, signers)
    await _control(fake_digisign, f"envelopes/{_remote(fake_digisign, envelope_id)['id']}/withdraw",
                   reason="Staženo odesílatelem")
    await signers.settle()
    state = await _get(api, tenant, envelope_id)
    assert state["status"] == "cancelled" and state["cancel_reason"] == "Staženo odesílatelem"
    await signers.settle()
    assert crm.types(envelope_id)[-1] == "envelope.cancelled"


async def test_an_envelope_deleted_at_digisign_ends_cancelled(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign
) -> None:
    """C10: ``envelopeDeleted`` arrives (it is subscribed to) and the envelope is no more: cancelled."""
    envelope_id = await _sent(api, tenant, signers)
    await _control(fake_digisign, f"envelopes/{_remote(fake_digisign, envelope_id)['id']}/delete")
    await signers.settle()
    assert any(d.event == "envelopeDeleted" and d.statuses == [200] for d in fake_digisign.deliveries)
    state = await _get(api, tenant, envelope_id)
    assert state["status"] == "cancelled" and state["cancel_reason"] == "deleted at the provider"


async def test_an_envelope_missing_at_digisign_without_its_event_ends_only_after_an_hour(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, clock: FrozenClock
) -> None:
    envelope_id = await _sent(api, tenant, signers)
    fake_digisign.drop_webhooks = True
    await _control(fake_digisign, f"envelopes/{_remote(fake_digisign, envelope_id)['id']}/delete")
    clock.advance(minutes=15)  # the timed sync: 404, seen once — could be a wrong account or a passing fault
    await signers.settle()
    assert (await _get(api, tenant, envelope_id))["status"] == "sent"
    clock.advance(hours=1)  # the next timed sync, still 404
    await signers.settle()
    assert (await _get(api, tenant, envelope_id))["status"] == "cancelled"


async def test_an_unknown_digisign_state_is_logged_and_never_taken_as_anything(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, clock: FrozenClock
) -> None:
    envelope_id = await _sent(api, tenant, signers)
    await _control(fake_digisign, f"envelopes/{_remote(fake_digisign, envelope_id)['id']}/status", status="archived")
    clock.advance(minutes=15)
    with capture_logs() as logs:
        await signers.settle()
    assert any(e["event"] == "digisign_unknown_envelope_state" and e["log_level"] == "error" and
               e["status"] == "archived" for e in logs)
    assert (await _get(api, tenant, envelope_id))["status"] == "sent"


async def test_a_recipient_not_delivered_makes_the_signer_undeliverable_with_the_crm_event(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, crm: CrmReceiver
) -> None:
    """C7: ``recipientNonDelivered`` — as a mail server's refusal in our own ceremony."""
    await api.put("/v1/webhook", json={"url": crm.url}, headers=tenant.auth)
    envelope_id = await _sent(api, tenant, signers)
    remote = _remote(fake_digisign, envelope_id)
    await _control(fake_digisign, f"envelopes/{remote['id']}/recipients/{remote['recipients'][0]['id']}/non_deliver",
                   reason="550 5.1.1 <jana@example.cz>: mailbox unavailable")
    await signers.settle()
    state = await _get(api, tenant, envelope_id)
    assert state["status"] == "sent" and state["signers"][0]["status"] == "undeliverable"
    assert "jana@example.cz" not in (state["signers"][0]["delivery_error"] or "x")  # masked, as ours are
    assert "mailbox unavailable" in state["signers"][0]["delivery_error"]
    await signers.settle()
    assert "signer.undeliverable" in crm.types(envelope_id)


async def test_two_documents_are_archived_as_two_pdfs_equal_to_digisigns_per_document_downloads(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, container: Container
) -> None:
    """C8: each document's own signed PDF (not the combined one) is what we archive and serve."""
    envelope_id = await _sent(api, tenant, signers, documents=2)
    remote = _remote(fake_digisign, envelope_id)
    await signers.sign(envelope_id, *JANA)
    state = await _get(api, tenant, envelope_id)
    assert state["status"] == "completed"
    theirs = {d["metadata"]: hashlib.sha256(fake_digisign.document_pdf(remote, d)).hexdigest()
              for d in remote["documents"]}
    assert len(set(theirs.values())) == 2
    for doc in state["documents"]:
        resp = await api.get(f"/v1/envelopes/{envelope_id}/documents/{doc['id']}", headers=tenant.auth)
        assert resp.status == 200
        assert hashlib.sha256(await resp.read()).hexdigest() == theirs[doc["id"]] == doc["signed_sha256"]
    archived = await AuditEvent.get(envelope_id=envelope_id, type="envelope.provider_result_archived")
    assert archived.data["documents"] == theirs and archived.data["audit_log"]
    downloads = {p for m, p in fake_digisign.calls if m == "GET" and p.endswith("/download")}
    assert downloads == {f"/api/envelopes/{remote['id']}/documents/{d['id']}/download" for d in remote["documents"]} | {
        f"/api/envelopes/{remote['id']}/download"}  # the per-document downloads and the audit log


async def test_an_expiry_that_is_not_whole_days_is_digisigns_expiry_too(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, clock: FrozenClock
) -> None:
    """C3: ``validTo`` and ``expiration`` (rounded up) on create; whether or not DigiSign took
    ``validTo`` then, after sending its expiry is ours (read back, moved with ``extend`` if need be)."""
    expires = clock.now() + timedelta(days=2, hours=5)
    envelope_id = await _sent(api, tenant, signers, expires_at=expires.isoformat())
    remote = _remote(fake_digisign, envelope_id)
    from datetime import datetime

    assert datetime.fromisoformat(remote["validTo"]) == expires.replace(microsecond=0)
    assert remote["expiration"] == 3
    assert not await AuditEvent.filter(envelope_id=envelope_id, type="envelope.provider_expiry_mismatch").exists()


async def test_a_secret_registered_while_the_gateway_runs_verifies_the_next_webhook(
    api: Any, tenant: Tenant, signers: Signers, fake_digisign: FakeDigiSign, settings: Settings,
    container: Container,
) -> None:
    """C12: ``register-webhooks`` run (a separate process) while the gateway runs: the secret it
    stores verifies the very next delivery — no restart, no 15-minute wait for the poll."""
    envelope_id = await _sent(api, tenant, signers)  # the gateway has read its secrets by now
    url = str(api.make_url("/webhooks/digisign"))
    old = next(h for h in fake_digisign.webhooks.values() if h["event"] == "envelopeCompleted")
    del fake_digisign.webhooks[old["id"]]  # e.g. removed in DigiSign's selfcare
    env = {**os.environ, "ESIGN_DATA_DIR": str(settings.data_dir), "ESIGN_ENV": "test", "ESIGN_LOG_JSON": "false",
           "ESIGN_DATABASE_URL": str(settings.database_url), "ESIGN_DIGISIGN_BASE_URL": fake_digisign.base_url,
           "ESIGN_DIGISIGN_ACCESS_KEY": fake_digisign.access_key,
           "ESIGN_DIGISIGN_SECRET_KEY": fake_digisign.secret_key}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esign_gateway", "digisign", "register-webhooks", "--url", url, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    assert "1 webhook(s) registered, 13 already there" in out.decode()
    new = next(h for h in fake_digisign.webhooks.values() if h["event"] == "envelopeCompleted")
    assert new["secret"] != old["secret"]
    fake_digisign.webhook_attempts = 1  # the first delivery must verify: no retry to save it
    await _control(fake_digisign, f"envelopes/{_remote(fake_digisign, envelope_id)['id']}/recipients/"
                   f"{_remote(fake_digisign, envelope_id)['recipients'][0]['id']}/sign")
    await signers.settle()
    completed = [d for d in fake_digisign.deliveries if d.event == "envelopeCompleted"]
    assert [d.statuses for d in completed] == [[200]]
    assert (await _get(api, tenant, envelope_id))["status"] == "completed"
