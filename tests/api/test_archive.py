"""Evidence and archive (SPEC §10): sealed audit report, completion e-mails with a time-limited
download link, chain verification, retention with tombstones, support retrieval, GDPR."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from pypdf import PdfReader

from adapters.providers.local import pades
from esign_gateway.config import Settings
from esign_gateway.container import Container
from esign_gateway.db.models import AuditEvent, EnvelopeRow, SignerRow, SupportAccess
from esign_gateway.db.repositories import verify_chain
from tests.api.conftest import LINK_RE, Ceremony, Tenant, envelope_body, signer
from tests.factories import signature_kinds
from tests.fakes import FrozenClock

JANA = ("jana@example.cz", "+420601123456")


async def _completed(api: Any, tenant: Tenant, ceremony: Ceremony, **extra: Any) -> dict[str, Any]:
    resp = await api.post("/v1/envelopes", json=envelope_body(**extra), headers=tenant.auth)
    env = dict(await resp.json())
    await ceremony.run_jobs()
    await ceremony.sign(ceremony.link_token(JANA[0]), JANA[1])
    await ceremony.run_jobs()
    return env


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture
async def support(container: Container) -> dict[str, str]:
    key = await container.tenants.create_key("support")
    return {"Authorization": f"Bearer {key.secret}"}


@pytest.fixture
async def operator(container: Container) -> dict[str, str]:
    key = await container.tenants.create_key("operator")
    return {"Authorization": f"Bearer {key.secret}"}


async def test_completed_envelope_has_a_sealed_audit_report_naming_it(
    api: Any, tenant: Tenant, ceremony: Ceremony, shared_parts: dict[str, Any]
) -> None:
    env = await _completed(api, tenant, ceremony)
    resp = await api.get(f"/v1/envelopes/{env['id']}/audit", headers=tenant.auth)
    assert resp.status == 200 and resp.content_type == "application/pdf"
    pdf = await resp.read()
    text = _text(pdf)
    assert env["id"] in text and "Protokol o elektronickém podpisu" in text
    assert "Jana Nováková" in text and "j***a@e***.cz" in text and "jana@example.cz" not in text
    state = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    doc = state["documents"][0]
    flat = text.replace("\n", "")
    assert doc["sha256"] in flat and doc["signed_sha256"] in flat
    for event in ("Obálka vytvořena", "Zadán správný kód z SMS", "Dokumenty podepsány",
                  "Všichni podepisující podepsali, obálka je dokončena"):
        assert event in flat.replace("\n", " ") or event in text.replace("\n", " ")

    # sealed by the gateway: a valid, trusted PAdES signature, long-term like the documents
    material = shared_parts["material"]
    checks = await asyncio.to_thread(pades.validate, pdf, pades.load_roots(material.trust_root_paths))
    assert [(c.intact, c.valid, c.trusted, c.signer_name) for c in checks] == [(True, True, True, "esign-gateway")]
    assert signature_kinds(pdf) == ["/Sig", "/DocTimeStamp"]
    sealed = await AuditEvent.get(envelope_id=env["id"], type="envelope.audit_report_sealed")
    assert sealed.data["sha256"] == hashlib.sha256(pdf).hexdigest()
    again = await api.get(f"/v1/envelopes/{env['id']}/audit", headers=tenant.auth)
    assert await again.read() == pdf  # made once, kept


async def test_report_in_the_envelope_language_for_a_declined_envelope_and_409_while_open(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    env = await (await api.post("/v1/envelopes", json=envelope_body(language="sk"), headers=tenant.auth)).json()
    resp = await api.get(f"/v1/envelopes/{env['id']}/audit", headers=tenant.auth)
    assert resp.status == 409 and (await resp.json())["code"] == "invalid_state"
    await ceremony.run_jobs()
    token = ceremony.link_token(JANA[0])
    assert (await api.post(f"/api/sign/{token}/decline", json={"reason": "Zlá suma"})).status == 200
    await ceremony.run_jobs()  # the audit_report job seals it
    row = await EnvelopeRow.get(id=env["id"])
    assert row.audit_report_sha256 is not None
    pdf = await (await api.get(f"/v1/envelopes/{env['id']}/audit", headers=tenant.auth)).read()
    text = _text(pdf)
    assert "Protokol o elektronickom podpise" in text and env["id"] in text
    assert "Uzavreté: podpis bol odmietnutý" in text.replace("\n", " ") and "declined" not in text


async def test_completion_email_names_the_envelope_and_links_the_result_for_a_limited_time(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, clock: FrozenClock
) -> None:
    await container.tenants.update_tenant(tenant.id, contact_email="obchod@dodavatel.cz")
    env = await _completed(api, tenant, ceremony)
    signed = await (await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)).read()
    for address in (JANA[0], "obchod@dodavatel.cz"):
        mails = [m for m in ceremony.smtp.to(address) if m["Subject"].startswith("Podepsáno")]
        assert len(mails) == 1, address
        text = mails[0].get_body(("plain",)).get_content()
        assert env["id"] in text
        link = next(line for line in text.splitlines() if "/download/" in line).strip()
        path = link.replace("https://sign.example.test", "")
        resp = await api.get(path)
        assert resp.status == 200 and await resp.read() == signed
        assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Referrer-Policy"] == "no-referrer"
    await ceremony.run_jobs()  # a retried job sends nothing twice
    assert len([m for m in ceremony.smtp.to(JANA[0]) if m["Subject"].startswith("Podepsáno")]) == 1

    clock.advance(days=30, seconds=1)
    resp = await api.get(path)
    assert resp.status == 410 and "vypršel" in await resp.text()
    assert (await api.get("/download/not-a-token")).status == 404  # never ours: unknown, not expired


async def test_a_declined_request_tells_the_other_invited_signer_and_the_sender_once(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    await container.tenants.update_tenant(tenant.id, contact_email="obchod@dodavatel.cz")
    petr = ("petr@example.cz", "+420602123456")
    body = envelope_body([signer(), signer("Petr Šťastný", petr[0], petr[1])])  # both invited at once
    env = await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json()
    await ceremony.run_jobs()
    resp = await api.post(f"/api/sign/{ceremony.link_token(JANA[0])}/decline", json={"reason": "Cena nesedí."})
    assert resp.status == 200
    await ceremony.run_jobs()
    await ceremony.run_jobs()  # a retried job sends nothing twice

    def notices(address: str) -> list[Any]:
        return [m for m in ceremony.smtp.to(address) if m["Subject"].startswith("Podpis odmítnut")]

    assert len(notices(petr[0])) == 1 and len(notices("obchod@dodavatel.cz")) == 1
    assert notices(JANA[0]) == []  # the one who declined knows
    assert notices(petr[0])[0]["Reply-To"] == "obchod@dodavatel.cz"
    trail = await (await api.get(f"/v1/envelopes/{env['id']}/audit",
                                 headers={**tenant.auth, "Accept": "application/json"})).json()
    sent = [e for e in trail["events"] if e["type"] == "signer.declined_notice_sent"]
    assert [e["signer_id"] for e in sent] == [env["signers"][1]["id"]]


async def test_audit_verify_command_catches_one_edited_event(
    api: Any, tenant: Tenant, ceremony: Ceremony, settings: Settings
) -> None:
    env = await _completed(api, tenant, ceremony)
    other = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    cli_env = {**os.environ, "ESIGN_DATA_DIR": str(settings.data_dir), "ESIGN_ENV": "test", "ESIGN_LOG_JSON": "false",
               "ESIGN_DATABASE_URL": settings.resolved_database_url}

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "esign_gateway", "audit", "verify", *args], env=cli_env,
                              capture_output=True, text=True, timeout=120)

    ok = await asyncio.to_thread(verify, "--all")
    assert ok.returncode == 0 and "2 chain(s) checked, 0 broken" in ok.stdout, ok.stderr
    signed = await AuditEvent.get(envelope_id=env["id"], type="signer.signed")
    await AuditEvent.filter(id=signed.id).update(data={**signed.data, "tsa_time": "2020-01-01T00:00:00+00:00"})
    broken = await asyncio.to_thread(verify, env["id"])
    assert broken.returncode == 1 and f"first broken link at event {signed.seq}" in broken.stdout
    both = await asyncio.to_thread(verify, "--all")
    assert "1 broken" in both.stdout and f"ok      {other['id']}" in both.stdout
    # cutting the tail off is caught too
    last = await AuditEvent.filter(envelope_id=other["id"]).order_by("-seq").first()
    assert last is not None
    await AuditEvent.filter(id=last.id).delete()
    assert await verify_chain(other["id"]) == last.seq


async def test_purge_at_retained_until_leaves_a_tombstone_and_support_gets_410(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, clock: FrozenClock,
    support: dict[str, str],
) -> None:
    env = await _completed(api, tenant, ceremony)
    state = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    row = await EnvelopeRow.get(id=env["id"])
    blobs = {state["documents"][0]["sha256"], state["documents"][0]["signed_sha256"], row.audit_report_sha256}
    assert all([await container.store.exists(k) for k in blobs])

    clock.advance(days=365 * 3 - 1)
    await ceremony.run_jobs()
    assert (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).status == 200  # not yet

    clock.set(row.retained_until + timedelta(seconds=1))  # type: ignore[operator]
    await ceremony.run_jobs()
    reads = ((tenant.auth, f"/v1/envelopes/{env['id']}"), (tenant.auth, f"/v1/envelopes/{env['id']}/download"),
             ({**support, "X-Access-Reason": "ticket 42"}, f"/v1/support/envelopes/{env['id']}"))
    for headers, path in reads:
        resp = await api.get(path, headers=headers)
        assert resp.status == 410, path
        body = await resp.json()
        assert body["purged_at"].startswith("2029-11-23") and "2029-11-23" in body["detail"]
    assert not any([await container.store.exists(k) for k in blobs])
    signer_row = await SignerRow.get(envelope_id=env["id"])
    assert (signer_row.name, signer_row.email, signer_row.phone) == ("[erased]", "[erased]", "[erased]")
    tomb = await EnvelopeRow.get(id=env["id"])
    assert tomb.purged_at is not None and tomb.completed_at is not None and tomb.tenant_id == tenant.id  # type: ignore[attr-defined]
    assert await verify_chain(env["id"]) is None  # the chain survives the erasure of personal data
    assert not await AuditEvent.filter(envelope_id=env["id"], ip__isnull=False).exists()


async def test_unsigned_envelopes_are_purged_ninety_days_after_they_ended(
    api: Any, tenant: Tenant, ceremony: Ceremony, clock: FrozenClock
) -> None:
    env = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    await api.post(f"/v1/envelopes/{env['id']}/cancel", json={"reason": "omyl"}, headers=tenant.auth)
    await ceremony.run_jobs()
    clock.advance(days=89)
    await ceremony.run_jobs()
    assert (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).status == 200
    clock.advance(days=1, seconds=1)
    await ceremony.run_jobs()
    assert (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).status == 410


async def test_support_reads_any_tenant_with_a_reason_and_every_read_is_logged(
    api: Any, tenant: Tenant, other_tenant: Tenant, ceremony: Ceremony, support: dict[str, str],
    operator: dict[str, str],
) -> None:
    env = await _completed(api, tenant, ceremony)
    base = f"/v1/support/envelopes/{env['id']}"
    resp = await api.get(base, headers=support)
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "X-Access-Reason"
    await api.delete("/v1/plan", headers=tenant.auth)  # a tenant that left: support still finds it
    why = {**support, "X-Access-Reason": "ticket #4711: customer wants the contract"}
    assert (await (await api.get(base, headers=why)).json())["status"] == "completed"
    assert (await api.get(f"{base}/download", headers=why)).content_type == "application/pdf"
    assert (await api.get(f"{base}/audit", headers=why)).content_type == "application/pdf"
    trail = await (await api.get(f"{base}/audit", headers={**why, "Accept": "application/json"})).json()
    assert trail["envelope_id"] == env["id"]

    # support cannot list, create or change; only operators read the log
    assert (await api.get("/v1/envelopes", headers=support)).status == 403
    assert (await api.post("/v1/envelopes", json=envelope_body(), headers=support)).status == 403
    assert (await api.get("/v1/support/access-log", headers=support)).status == 403
    log = await (await api.get(f"/v1/support/access-log?envelope_id={env['id']}", headers=operator)).json()
    assert [(e["action"], e["reason"]) for e in log["items"]] == [
        ("audit", why["X-Access-Reason"]), ("audit", why["X-Access-Reason"]),
        ("download", why["X-Access-Reason"]), ("read", why["X-Access-Reason"]),
    ]
    assert await SupportAccess.filter(envelope_id=env["id"]).count() == 4  # the reasonless try reached nothing

    # another tenant's integration key still gets 404 everywhere
    for path in (f"/v1/envelopes/{env['id']}", f"/v1/envelopes/{env['id']}/audit",
                 f"/v1/envelopes/{env['id']}/download"):
        assert (await api.get(path, headers=other_tenant.auth)).status == 404


async def test_archive_overview_lists_completed_envelopes_with_their_retention(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    done = await _completed(api, tenant, ceremony, record={"type": "order", "id": "O-7"})
    await api.post("/v1/envelopes", json=envelope_body([signer("Petr", "petr@example.cz", "+420602111222")]),
                   headers=tenant.auth)
    page = await (await api.get("/v1/archive", headers=tenant.auth)).json()
    assert [i["id"] for i in page["items"]] == [done["id"]]
    item = page["items"][0]
    assert item["retained_until"].startswith("2029-11-23") and item["links"]["download"].endswith("/download")
    assert (await (await api.get("/v1/archive?record_id=O-7", headers=tenant.auth)).json())["items"]
    assert not (await (await api.get("/v1/archive?from=2026-11-24", headers=tenant.auth)).json())["items"]
    assert (await api.get("/v1/archive?from=yesterday", headers=tenant.auth)).status == 422


async def test_gdpr_export_and_erase_keep_what_the_law_keeps(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    kept = await _completed(api, tenant, ceremony)
    declined = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    tokens = [m for m in ceremony.smtp.to(JANA[0]) if "Žádost" in m["Subject"]]
    token = LINK_RE.search(tokens[-1].get_body(("plain",)).get_content()).group(1)  # type: ignore[union-attr]
    await api.post(f"/api/sign/{token}/decline", json={"reason": "ne"})
    await ceremony.run_jobs()

    export = await container.archive.gdpr_export("JANA@example.cz")
    assert {e["envelope_id"] for e in export["envelopes"]} == {kept["id"], declined["id"]}
    assert all(e["signer"]["phone"] == JANA[1] for e in export["envelopes"])

    report = await container.archive.gdpr_erase(JANA[0])
    assert report.erased == [declined["id"]]
    assert report.kept[0][0] == kept["id"] and "2029-11-23" in report.kept[0][1]
    assert (await SignerRow.get(envelope_id=declined["id"])).email == "[erased]"
    assert (await SignerRow.get(envelope_id=kept["id"])).email == JANA[0]
    assert await verify_chain(declined["id"]) is None


async def test_lta_renewal_adds_a_timestamp_before_the_tsa_certificate_expires(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, clock: FrozenClock,
    shared_parts: dict[str, Any],
) -> None:
    from cryptography import x509

    from esign_gateway.db.models import Job

    material = shared_parts["material"]
    tsa_expiry = x509.load_pem_x509_certificate(material.dev_tsa_cert_path.read_bytes()).not_valid_after_utc
    env = await _completed(api, tenant, ceremony)
    # an archive kept longer than the TSA certificate lives (e.g. ESIGN_RETENTION_YEARS=12)
    await EnvelopeRow.filter(id=env["id"]).update(retained_until=tsa_expiry + timedelta(days=400))
    before = (await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json())["documents"][0]

    clock.advance(days=2)
    await ceremony.run_jobs()  # the first check: far from expiry, plans the next one 90 days before it
    nxt = await Job.filter(kind="lta_renewal", status="pending").first()
    assert nxt is not None and abs((nxt.due_at - (tsa_expiry - timedelta(days=90))).total_seconds()) < 1

    old_bytes = await container.store.get(before["signed_sha256"])
    clock.set(tsa_expiry - timedelta(days=89))
    await ceremony.run_jobs()
    after = (await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json())["documents"][0]
    assert after["signed_sha256"] != before["signed_sha256"] and after["sha256"] == before["sha256"]
    renewed = await container.store.get(after["signed_sha256"])
    assert renewed.startswith(old_bytes)  # an incremental update: the renewed file holds the old one
    assert signature_kinds(renewed) == ["/Sig", "/DocTimeStamp", "/DocTimeStamp"]
    roots = pades.load_roots(material.trust_root_paths)
    assert await asyncio.to_thread(pades.validate_timestamps, renewed, roots) == [True, True]
    event = await AuditEvent.get(envelope_id=env["id"], type="document.timestamp_renewed")
    assert (event.data["from"], event.data["to"]) == (before["signed_sha256"], after["signed_sha256"])
    assert await verify_chain(env["id"]) is None


async def test_daily_collection_removes_only_old_blobs_nobody_refers_to(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, clock: FrozenClock
) -> None:
    from esign_gateway.db.models import Job

    env = await _completed(api, tenant, ceremony)
    state = await (await api.get(f"/v1/envelopes/{env['id']}", headers=tenant.auth)).json()
    kept = {state["documents"][0]["sha256"], state["documents"][0]["signed_sha256"]}
    orphan = await container.store.put(b"%PDF-1.7 an upload whose send was refused")
    fresh_orphan = await container.store.put(b"%PDF-1.7 an upload being stored right now")
    two_days_ago = (clock.now() - timedelta(days=2)).timestamp()
    for key in (*kept, orphan):
        path = container.settings.documents_dir / key[:2] / key[2:4] / key
        os.utime(path, (two_days_ago, two_days_ago))
    await container.archive.gc_job({})
    assert not await container.store.exists(orphan)
    assert await container.store.exists(fresh_orphan)  # too young: its request may still commit
    assert all([await container.store.exists(k) for k in kept])
    nxt = await Job.filter(kind="blob_gc", status="pending").order_by("-due_at").first()
    assert nxt is not None and nxt.due_at == clock.now() + timedelta(days=1)
