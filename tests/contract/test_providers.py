"""CRM-level scenarios, run against both providers (``provider_name`` is ``local`` or ``digisign``).

Differences between the providers are explicit here, never hidden:

* who sends invitations and planned reminders: we (e-mail) for ``local``; DigiSign for ``digisign``
  (planned reminders become DigiSign envelope notifications; a manual remind is a DigiSign resend);
* what the signed result is: our PAdES signatures (validated with pyHanko) for ``local``; DigiSign's
  ``combined`` PDF, archived with its audit log, for ``digisign``;
* where a signer signs: the stamp's widget in our signed PDF for ``local``; the signature tags the
  fake DigiSign accepted (it refuses a tag off the page, or a placeholder not in the text) for
  ``digisign``. Both come from the same placement, made when the envelope is created.
"""

from __future__ import annotations

import base64
import io
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pikepdf
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from esign_gateway.container import Container
from esign_gateway.db.models import AuditEvent, Job
from esign_gateway.db.repositories import verify_chain
from tests.api.conftest import Tenant, envelope_body, signer
from tests.contract.conftest import CrmReceiver, Signers
from tests.factories import make_pdf, signature_kinds
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
    fake_digisign: FakeDigiSign, strict: bool,
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
        refused = await AuditEvent.filter(envelope_id=env["id"], type="envelope.provider_reminders_refused")
        if strict:  # DigiSign refuses the before-expiry type: sent without it, its account defaults apply
            assert remote["status"] == "sent" and remote["notifications"] == []
            assert [e.data["refused"] for e in refused] == [[{"type": "toSignBeforeExpires", "days": 1}]]
        else:
            assert [(n["type"], n["days"]) for n in remote["notifications"]] == [("toSignBeforeExpires", 1)]
            assert refused == []
        assert reminded == 1 and not signers.local.smtp.to(JANA[0])  # DigiSign e-mails, not us


async def test_periodic_reminders_go_to_the_provider_as_reminders_after_sending(
    api: Any, tenant: Tenant, signers: Signers, provider_name: str, fake_digisign: FakeDigiSign, strict: bool,
    clock: FrozenClock,
) -> None:
    env = await _create(api, tenant, signers, expires_in_days=10,
                        reminders={"before_expiry_days": [2], "every_days": 3})
    assert (await _get(api, tenant, env["id"]))["status"] == "sent"
    if provider_name == "local":
        clock.advance(days=3, minutes=1)
        await signers.settle()
        assert len(signers.local.smtp.to(JANA[0])) == 2  # the invitation and the first periodic reminder
        return
    remote = next(e for e in fake_digisign.envelopes.values() if e["metadata"] == env["id"])
    kinds = [(n["type"], n["days"]) for n in remote["notifications"]]
    assert kinds == ([("toSignAfterSent", 3)] if strict else [("toSignBeforeExpires", 2), ("toSignAfterSent", 3)])


# --------------------------------------------------------------------------- where signers sign

Box = tuple[float, float, float, float]
"""left, top, right, bottom: points from the displayed page's top-left (DigiSign's convention)."""


def _placeholder_pdf(placeholder: str) -> bytes:
    """One A4 page of contract text with ``placeholder`` written in its signature block."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setFont("Helvetica", 10)
    for line in range(20):
        c.drawString(56, 780 - line * 12, f"{line + 1}. Zhotovitel se zavazuje provest dilo radne a vcas.")
    c.drawString(56, 480, "Objednatel:")
    c.setFont("Helvetica", 8)
    c.drawString(56, 460, placeholder)
    c.showPage()
    c.save()
    return buf.getvalue()


def _text_box(pdf: bytes, word: str, page: int = 1) -> Box:
    """Where poppler (``pdftotext -bbox``) sees ``word`` on the displayed ``page`` (1-based)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.pdf"
        src.write_bytes(pdf)
        out = subprocess.run(["/usr/bin/pdftotext", "-bbox", "-cropbox", "-f", str(page), "-l", str(page),
                              str(src), "-"], capture_output=True, text=True, timeout=60, check=True).stdout
    for m in re.finditer(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', out):
        if m.group(5).replace("&amp;", "&") == word:
            return float(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4))
    raise AssertionError(f"{word!r} is not on page {page}")


def _stamps(pdf: bytes) -> list[tuple[int, Box, tuple[float, float]]]:
    """Our visible signatures' widgets (not the invisible document timestamp): (0-based page, box on
    the displayed page, the page's displayed size); the test PDFs are unrotated, MediaBox at the origin."""
    found = []
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        for index, page in enumerate(doc.pages):
            _, _, width, height = (float(v) for v in page.mediabox)
            for annot in page.obj.get("/Annots", []):
                if annot.get("/FT") == "/Sig" or annot.get("/Parent", {}).get("/FT") == "/Sig":
                    x0, y0, x1, y1 = (float(v) for v in annot["/Rect"])
                    if x0 == x1 or y0 == y1:
                        continue
                    found.append((index, (min(x0, x1), height - max(y0, y1), max(x0, x1), height - min(y0, y1)),
                                  (width, height)))
    return found


def _covers(outer: Box, inner: Box, tolerance: float = 0.0) -> bool:
    return (outer[0] <= inner[0] + tolerance and outer[1] <= inner[1] + tolerance
            and outer[2] >= inner[2] - tolerance and outer[3] >= inner[3] - tolerance)


def _remote(fake: FakeDigiSign, envelope_id: str) -> dict[str, Any]:
    return next(e for e in fake.envelopes.values() if e["metadata"] == envelope_id)


def _tag_box(tag: dict[str, Any]) -> Box:
    return tag["xPosition"], tag["yPosition"], tag["xPosition"] + tag["width"], tag["yPosition"] + tag["height"]


async def _signed(api: Any, tenant: Tenant, driver: Signers, env: dict[str, Any],
                  people: list[tuple[str, str]]) -> bytes:
    for email, phone in people:
        await driver.sign(env["id"], email, phone)
    resp = await api.get(f"/v1/envelopes/{env['id']}/download", headers=tenant.auth)
    assert resp.status == 200
    return await resp.read()


async def _create_on(
    api: Any, tenant: Tenant, driver: Signers, people: list[dict[str, Any]], pdf: bytes
) -> dict[str, Any]:
    body = envelope_body(people)
    body["documents"] = [{"name": "smlouva.pdf", "content": base64.b64encode(pdf).decode()}]
    resp = await api.post("/v1/envelopes", json=body, headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    env = dict(await resp.json())
    await driver.settle()
    return env


async def test_eight_signers_all_sign_inside_the_a4_page(
    api: Any, tenant: Tenant, signers: Signers, provider_name: str, fake_digisign: FakeDigiSign
) -> None:
    people = [(f"podepisujici{n}@example.cz", f"+42060200000{n}") for n in range(8)]
    env = await _create_on(api, tenant, signers,
                           [signer(f"Podepisující {n}", e, p) for n, (e, p) in enumerate(people)], make_pdf(pages=2))
    if provider_name == "digisign":  # the fake took every tag: each is on a page of the file it was given
        remote = _remote(fake_digisign, env["id"])
        (doc,) = remote["documents"]
        pages = fake_digisign.document_pages(remote, doc)
        assert pages is not None
        tags = remote["tags"]
        assert sorted(t["recipient"].rsplit("/", 1)[1] for t in tags) == sorted(r["id"] for r in remote["recipients"])
        for tag in tags:
            frame = pages[tag["page"] - 1]
            assert frame.width < frame.height < 843  # A4 portrait
            assert frame.holds(tag["xPosition"], tag["yPosition"], tag["width"], tag["height"]), tag
        assert len({(t["page"], t["xPosition"], t["yPosition"]) for t in tags}) == 8  # none on another
    else:
        stamps = _stamps(await _signed(api, tenant, signers, env, people))
        assert len(stamps) == 8
        for _, (left, top, right, bottom), (width, height) in stamps:
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
        assert len({(page, box) for page, box, _ in stamps}) == 8


async def test_a_placeholder_anchor_is_where_the_signer_signs(
    api: Any, tenant: Tenant, signers: Signers, provider_name: str, fake_digisign: FakeDigiSign
) -> None:
    upload = _placeholder_pdf("{{podpis:1}}")
    placeholder = _text_box(upload, "{{podpis:1}}")
    env = await _create_on(api, tenant, signers, [{**signer(), "fields": [{"anchor": "{{podpis:1}}"}]}], upload)
    if provider_name == "digisign":  # DigiSign finds the placeholder itself
        remote = _remote(fake_digisign, env["id"])
        assert ("POST", f"/api/envelopes/{remote['id']}/tags/by-placeholder") in fake_digisign.calls
        (tag,) = remote["tags"]
        assert (tag["placeholder"], tag["positioning"], tag["page"]) == ("{{podpis:1}}", "bottom_left", 1)
        assert _covers(_tag_box(tag), placeholder, tolerance=2)
    else:
        ((page, box, _),) = _stamps(await _signed(api, tenant, signers, env, [JANA]))
        assert page == 0 and _covers(box, placeholder)


async def test_a_box_given_by_coordinates_is_where_the_signer_signs(
    api: Any, tenant: Tenant, signers: Signers, provider_name: str, fake_digisign: FakeDigiSign
) -> None:
    env = await _create(api, tenant, signers,
                        [{**signer(), "fields": [{"document": 1, "page": 1, "x": 100, "y": 200}]}])
    if provider_name == "digisign":
        (tag,) = _remote(fake_digisign, env["id"])["tags"]
        assert (tag["page"], tag["xPosition"], tag["yPosition"], tag["placeholder"]) == (1, 100, 200, None)
    else:
        ((page, (left, top, _, _), _),) = _stamps(await _signed(api, tenant, signers, env, [JANA]))
        assert page == 0 and abs(left - 100) < 0.01 and abs(top - 200) < 0.01
