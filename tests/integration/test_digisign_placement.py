"""Signature tags at DigiSign, against the fake over real HTTP: what the provider does with each kind
of placement, what it does without one, what a refused tag becomes — and that the fake refuses what
the real API would (a page that does not exist, a tag off the displayed page, a placeholder that is
not in the text), so the scenarios above prove something."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pikepdf
import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from adapters.providers.digisign.client import DigiSignClient, DigiSignInvalid
from adapters.providers.digisign.provider import DigiSignProvider
from adapters.providers.digisign.signature import verify_inbound
from esign_gateway.errors import ValidationFailedError
from esign_gateway.ports import RemoteEnvelope, RemoteSigner, StampPlacement
from tests.factories import make_pdf
from tests.fakes import FrozenClock
from tests.fakes.digisign import FakeDigiSign

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
async def client(fake_digisign: FakeDigiSign, clock: FrozenClock) -> AsyncIterator[DigiSignClient]:
    async def no_sleep(_: float) -> None:
        return None

    c = DigiSignClient(fake_digisign.base_url, "ak_test", "sk_test", clock=clock.now, sleep=no_sleep,
                       timeout_seconds=5)
    await c.start()
    yield c
    await c.close()


@pytest.fixture
def provider(client: DigiSignClient) -> DigiSignProvider:
    return DigiSignProvider(client, verify_signature=verify_inbound)


def _signer(n: int, *placements: StampPlacement | None) -> RemoteSigner:
    return RemoteSigner(f"s-{n}", f"Podepisující {n}", f"p{n}@example.cz", f"+4206010000{n:02d}", 1,
                        placements=placements)


def _envelope(documents: list[bytes], signers: list[RemoteSigner]) -> RemoteEnvelope:
    return RemoteEnvelope(
        envelope_id="01a20000-0000-7000-8000-000000000002", name="Smlouva", message=None, language="cs",
        expires_at=T0 + timedelta(days=7), documents=[(f"smlouva-{i + 1}.pdf", d) for i, d in enumerate(documents)],
        signers=signers,
    )


def _box(page: int, x: float, y: float, w: float = 170, h: float = 62, *, source: str = "coordinates",
         anchor: str | None = None) -> StampPlacement:
    return StampPlacement(page=page, x=x, y=y, width=w, height=h, source=source, anchor=anchor)


def _with_placeholder(placeholder: str) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setFont("Helvetica", 10)
    c.drawString(56, 700, "Smlouva o dilo")
    c.drawString(56, 460, placeholder)
    c.showPage()
    c.save()
    return buf.getvalue()


def _turned(pdf: bytes, rotate: int, crop: tuple[float, float, float, float] | None = None) -> bytes:
    """Every page turned by ``/Rotate`` (set on the page tree, so pages inherit it), optionally cropped."""
    doc = pikepdf.open(io.BytesIO(pdf))
    doc.Root.Pages["/Rotate"] = rotate
    for page in doc.pages:
        if "/Rotate" in page.obj:
            del page.obj["/Rotate"]
        if crop is not None:
            page.obj["/CropBox"] = pikepdf.Array(list(crop))
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def test_a_box_becomes_whole_points_inside_it() -> None:
    from adapters.providers.digisign.provider import tag_box

    assert tag_box(_box(0, 100, 200)) == (1, 100, 200, 170, 62)
    assert tag_box(_box(2, 10.4, 20.6, 170.2, 61.9)) == (3, 11, 21, 169, 61)  # rounded inwards
    assert tag_box(_box(0, 424.99999999, 0, 170.00000001, 62)) == (1, 425, 0, 170, 62)  # no float noise


async def test_each_placement_is_one_tag_at_its_box(provider: DigiSignProvider, fake_digisign: FakeDigiSign) -> None:
    handle = await provider.prepare(_envelope([make_pdf(pages=3), make_pdf(pages=2)], [
        _signer(0, _box(1, 24.45, 754.48, source="automatic"), _box(0, 100, 200)),
        _signer(1, _box(2, 56, 96, source="signature_page"), _box(1, 320, 700, 200, 70, source="form_field")),
    ]))
    remote = fake_digisign.envelopes[handle.ref]
    got = [(t["page"], t["xPosition"], t["yPosition"], t["width"], t["height"]) for t in remote["tags"]]
    assert got == [(2, 25, 755, 169, 61), (1, 100, 200, 170, 62), (3, 56, 96, 170, 62), (2, 320, 700, 200, 70)]
    assert "tags/by-placeholder" not in str(fake_digisign.calls)


async def test_a_refused_tag_is_a_422_on_the_signers_fields_and_the_draft_is_removed(
    provider: DigiSignProvider, fake_digisign: FakeDigiSign
) -> None:
    with pytest.raises(ValidationFailedError) as caught:
        await provider.prepare(_envelope([make_pdf(), make_pdf()], [
            _signer(0, _box(0, 24, 24), _box(0, 24, 24)),
            _signer(1, _box(0, 200, 24), _box(4, 24, 24)),  # document 2 has one page
        ]))
    assert caught.value.errors == [{"field": "signers[1].fields.page",
                                    "message": "DigiSign: Dokument má 1 stran; strana 5 neexistuje. (documents[1])"}]
    assert fake_digisign.envelopes == {}
    with pytest.raises(ValidationFailedError) as caught:  # 500 + 170 > 595 pt
        await provider.prepare(_envelope([make_pdf()], [_signer(0, _box(0, 500, 24))]))
    (error,) = caught.value.errors
    assert error["field"] == "signers[0].fields.x" and "přesahuje stranu 1" in error["message"]


async def test_a_placeholder_is_asked_of_digisign_once_per_signer_for_all_documents(
    provider: DigiSignProvider, fake_digisign: FakeDigiSign
) -> None:
    doc = _with_placeholder("{{sign_A}}")
    at = _box(0, 54, 372, source="anchor", anchor="{{sign_A}}")
    handle = await provider.prepare(_envelope([doc, doc], [_signer(0, at, at)]))
    remote = fake_digisign.envelopes[handle.ref]
    assert fake_digisign.calls.count(("POST", f"/api/envelopes/{handle.ref}/tags/by-placeholder")) == 1
    assert ("POST", f"/api/envelopes/{handle.ref}/tags") not in fake_digisign.calls
    assert sorted(t["document"] for t in remote["tags"]) == sorted(
        f"/api/envelopes/{handle.ref}/documents/{d['id']}" for d in remote["documents"])  # DigiSign tagged both
    assert {(t["placeholder"], t["positioning"], t["page"]) for t in remote["tags"]} == {
        ("{{sign_A}}", "bottom_left", 1)}


async def test_a_literal_anchor_goes_by_coordinates(provider: DigiSignProvider, fake_digisign: FakeDigiSign) -> None:
    handle = await provider.prepare(_envelope([make_pdf()], [
        _signer(0, _box(0, 72, 90, source="anchor", anchor="Smlouva o dílo"))]))
    (tag,) = fake_digisign.envelopes[handle.ref]["tags"]
    assert (tag["page"], tag["xPosition"], tag["yPosition"], tag["placeholder"]) == (1, 72, 90, None)


async def test_a_placeholder_digisign_does_not_find_is_tagged_at_the_inspectors_box(
    provider: DigiSignProvider, fake_digisign: FakeDigiSign
) -> None:
    # e.g. DigiSign reads the text differently from pdfium: the box found at upload still holds
    handle = await provider.prepare(_envelope([make_pdf()], [
        _signer(0, _box(0, 54, 372, source="anchor", anchor="{{podpis:9}}"))]))
    assert ("POST", f"/api/envelopes/{handle.ref}/tags/by-placeholder") in fake_digisign.calls
    (tag,) = fake_digisign.envelopes[handle.ref]["tags"]
    assert (tag["page"], tag["xPosition"], tag["yPosition"], tag["placeholder"]) == (1, 54, 372, None)


async def test_without_a_placement_tags_go_in_rows_from_the_bottom_left_of_the_last_page(
    provider: DigiSignProvider, fake_digisign: FakeDigiSign
) -> None:
    # an envelope stored before placements existed; the last page is shown landscape (inherited /Rotate)
    landscape = _turned(make_pdf(pages=2), 90)
    handle = await provider.prepare(_envelope([landscape], [_signer(n) for n in range(10)]))
    remote = fake_digisign.envelopes[handle.ref]
    (doc,) = remote["documents"]
    pages = fake_digisign.document_pages(remote, doc)
    assert pages is not None and (round(pages[1].width), round(pages[1].height)) == (842, 595)
    tags = remote["tags"]
    assert len(tags) == 10 and {t["page"] for t in tags} == {2}
    assert all(pages[1].holds(t["xPosition"], t["yPosition"], t["width"], t["height"]) for t in tags)
    assert len({(t["xPosition"], t["yPosition"]) for t in tags}) == 10  # none on another
    first = tags[0]
    assert (first["xPosition"], first["yPosition"] + first["height"]) == (24, 595 - 24)  # bottom-left
    assert {t["yPosition"] for t in tags[:4]} == {first["yPosition"]}  # four in a row on 842 pt …
    assert tags[4]["xPosition"] == 24 and tags[4]["yPosition"] < first["yPosition"]  # … then the next row up


# --------------------------------------------------------------------------- the fake refuses like DigiSign


async def _draft(client: DigiSignClient, pdf: bytes) -> tuple[str, str, str]:
    env = await client.call("POST", "/api/envelopes", json={"name": "Smlouva"})
    iri = f"/api/envelopes/{env['id']}"
    file = await client.upload("smlouva.pdf", pdf)
    doc = await client.call("POST", f"{iri}/documents", json={"name": "Smlouva", "file": f"/api/files/{file['id']}"})
    rec = await client.call("POST", f"{iri}/recipients", json={
        "role": "signer", "name": "Jana", "email": "jana@example.cz", "mobile": "+420601123456"})
    return iri, f"{iri}/documents/{doc['id']}", f"{iri}/recipients/{rec['id']}"


async def _refused(client: DigiSignClient, path: str, body: dict[str, object]) -> list[tuple[str, str]]:
    with pytest.raises(DigiSignInvalid) as caught:
        await client.call("POST", path, json=body)
    return caught.value.violations


async def test_the_fake_knows_each_documents_displayed_pages(client: DigiSignClient) -> None:
    # A4 portrait turned to landscape and cropped to 500 × 400 (user space): displayed 400 wide, 500 high
    iri, doc, rec = await _draft(client, _turned(make_pdf(pages=2), 270, crop=(50, 50, 550, 450)))
    tag = {"type": "signature", "document": doc, "recipient": rec, "page": 2, "xPosition": 0, "yPosition": 0}
    assert (await client.call("POST", f"{iri}/tags", json={**tag, "xPosition": 244, "yPosition": 440}))["page"] == 2
    violations = await _refused(client, f"{iri}/tags", {**tag, "xPosition": 245})  # 245 + 156 > 400
    assert violations == [("xPosition", "Štítek 156 × 60 b na x=245, y=0 přesahuje stranu 2 (400 × 500 b).")]
    assert (await _refused(client, f"{iri}/tags", {**tag, "yPosition": 441}))[0][0] == "yPosition"
    assert (await _refused(client, f"{iri}/tags", {**tag, "width": 400, "height": 501}))[0][0] == "yPosition"
    assert await _refused(client, f"{iri}/tags", {**tag, "page": 3}) == [
        ("page", "Dokument má 2 stran; strana 3 neexistuje.")]
    assert await _refused(client, f"{iri}/tags", {**tag, "xPosition": 10.5}) == [
        ("xPosition", "Tato hodnota by měla být typu int.")]


async def test_the_fake_finds_placeholders_in_the_text_only(client: DigiSignClient) -> None:
    iri, _doc, rec = await _draft(client, _with_placeholder("{{sign_A}}"))
    body = {"type": "signature", "recipient": rec, "placeholder": "{{sign_A}}", "positioning": "bottom_left"}
    created = await client.call("POST", f"{iri}/tags/by-placeholder", json=body)
    (tag,) = created["items"]
    assert (tag["page"], tag["xPosition"], tag["width"], tag["height"]) == (1, 56, 156, 60)
    assert 380 <= tag["yPosition"] + tag["height"] <= 386  # its bottom on the placeholder's (baseline 842 - 460)
    assert await _refused(client, f"{iri}/tags/by-placeholder", {**body, "placeholder": "{{sign_B}}"}) == [
        ("placeholder", "Zástupný text {{sign_B}} není v žádném dokumentu obálky.")]
    assert (await _refused(client, f"{iri}/tags/by-placeholder", {**body, "positioning": "nahoře"}))[0][0] == (
        "positioning")


async def test_the_fake_sends_no_envelope_with_a_signer_without_a_tag(client: DigiSignClient) -> None:
    iri, _doc, _rec = await _draft(client, make_pdf())
    assert (await _refused(client, f"{iri}/send", {})) == [
        ("recipients", "Každý podepisující musí mít podpisový štítek.")]
