"""The signer's download link after completion: one per completion, re-shown while valid, revocable
by the sender (API) and by support (command line)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from typing import Any

from esign_gateway.config import Settings
from esign_gateway.container import Container
from esign_gateway.db.models import DownloadLink
from tests.api.conftest import Ceremony, Tenant, envelope_body
from tests.fakes import FrozenClock

JANA = ("jana@example.cz", "+420601123456")
DOWNLOAD = re.compile(r'href="(/download/[A-Za-z0-9_\-=]+)"')


async def _completed(api: Any, tenant: Tenant, ceremony: Ceremony) -> tuple[str, str]:
    """A completed envelope and its signer's link token."""
    env = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    token = ceremony.link_token(JANA[0])
    await ceremony.sign(token, JANA[1])
    return env["id"], token


async def _page_download(api: Any, token: str) -> str | None:
    resp = await api.get(f"/sign/{token}")
    assert resp.status == 410 and resp.content_type == "text/html"  # the signing link itself is done
    match = DOWNLOAD.search(await resp.text())
    return match.group(1) if match else None


def _mailed_download(ceremony: Ceremony) -> str:
    mails = [m for m in ceremony.smtp.to(JANA[0]) if m["Subject"].startswith("Podepsáno")]
    assert len(mails) == 1
    text = mails[0].get_body(("plain",)).get_content()
    line = next(line for line in text.splitlines() if "/download/" in line).strip()
    return line.replace("https://sign.example.test", "")


async def test_the_completed_page_shows_the_one_download_link_of_the_completion_on_every_visit(
    api: Any, tenant: Tenant, ceremony: Ceremony, clock: FrozenClock
) -> None:
    envelope_id, token = await _completed(api, tenant, ceremony)
    first = await _page_download(api, token)
    assert first is not None
    clock.advance(days=3)
    again = await _page_download(api, token)
    assert again == first  # re-shown, not minted again
    await ceremony.run_jobs()  # the completion e-mail carries the same link
    assert _mailed_download(ceremony) == first
    signed = await (await api.get(f"/v1/envelopes/{envelope_id}/download", headers=tenant.auth)).read()
    resp = await api.get(first)
    assert resp.status == 200 and await resp.read() == signed


async def test_visits_do_not_add_stored_download_links(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    envelope_id, token = await _completed(api, tenant, ceremony)
    await ceremony.run_jobs()
    stored = await DownloadLink.filter(envelope_id=envelope_id).count()
    assert stored == 1  # the signer's (the tenant has no contact address here)
    for _ in range(5):
        await _page_download(api, token)
    assert await DownloadLink.filter(envelope_id=envelope_id).count() == stored


async def test_the_link_lives_30_days_from_completion_and_is_not_renewed_by_a_later_visit(
    api: Any, tenant: Tenant, ceremony: Ceremony, clock: FrozenClock
) -> None:
    _, token = await _completed(api, tenant, ceremony)
    link = await _page_download(api, token)
    assert link is not None
    clock.advance(days=30, seconds=1)
    assert await _page_download(api, token) is None  # nothing fresh to offer three years long
    resp = await api.get(link)
    assert resp.status == 410 and resp.content_type == "text/html"


async def test_the_sender_revokes_the_download_links_of_an_envelope(
    api: Any, tenant: Tenant, other_tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    await container.tenants.update_tenant(tenant.id, contact_email="obchod@dodavatel.cz")
    envelope_id, token = await _completed(api, tenant, ceremony)
    await ceremony.run_jobs()
    link = _mailed_download(ceremony)
    assert (await api.get(link)).status == 200

    resp = await api.delete(f"/v1/envelopes/{envelope_id}/download-links", headers=other_tenant.auth)
    assert resp.status == 404 and resp.content_type == "application/problem+json"  # not theirs
    assert (await api.get(link)).status == 200

    resp = await api.delete(f"/v1/envelopes/{envelope_id}/download-links", headers=tenant.auth)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"revoked": 2}  # the signer's and the sender's contact copy
    gone = await api.get(link)
    assert gone.status == 410 and gone.content_type == "text/html"
    assert await _page_download(api, token) is None  # and the page does not mint a new one
    assert await DownloadLink.filter(envelope_id=envelope_id).count() == 2
    again = await api.delete(f"/v1/envelopes/{envelope_id}/download-links", headers=tenant.auth)
    assert await again.json() == {"revoked": 0}
    trail = await (await api.get(f"/v1/envelopes/{envelope_id}/audit",
                                 headers={**tenant.auth, "Accept": "application/json"})).json()
    revoked = [e for e in trail["events"] if e["type"] == "envelope.download_links_revoked"]
    assert [(e["actor"], e["data"]["links"]) for e in revoked] == [("api", 2), ("api", 0)]  # each request
    # the tenant's own download is not a link: it keeps working
    assert (await api.get(f"/v1/envelopes/{envelope_id}/download", headers=tenant.auth)).status == 200


async def test_revoking_before_completion_is_a_409_problem(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    env = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    resp = await api.delete(f"/v1/envelopes/{env['id']}/download-links", headers=tenant.auth)
    assert resp.status == 409 and (await resp.json())["code"] == "invalid_state"


async def test_a_revoked_link_blocks_a_link_for_a_recipient_who_had_none_yet(
    api: Any, tenant: Tenant, ceremony: Ceremony
) -> None:
    """Revoked before the completion e-mail went out: the e-mail must not bring a live link back."""
    envelope_id, token = await _completed(api, tenant, ceremony)
    resp = await api.delete(f"/v1/envelopes/{envelope_id}/download-links", headers=tenant.auth)
    assert resp.status == 200
    await ceremony.run_jobs()
    assert (await api.get(_mailed_download(ceremony))).status == 410
    assert await _page_download(api, token) is None


async def test_support_revokes_the_download_links_with_the_command_line(
    api: Any, tenant: Tenant, ceremony: Ceremony, settings: Settings
) -> None:
    """``esign-gateway download-links revoke ENVELOPE_ID``, a real process on the same database."""
    envelope_id, token = await _completed(api, tenant, ceremony)
    link = await _page_download(api, token)
    assert link is not None and (await api.get(link)).status == 200
    env = {**os.environ, "ESIGN_DATA_DIR": str(settings.data_dir), "ESIGN_ENV": "test", "ESIGN_LOG_JSON": "false",
           "ESIGN_DATABASE_URL": settings.resolved_database_url}

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "esign_gateway", "download-links", "revoke", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, _ = await cli(envelope_id)
    assert code == 0 and "revoked 1 download link(s)" in out
    assert (await api.get(link)).status == 410
    code, _, err = await cli("01a206aa-bcdb-750e-bbc5-e812ca10e709")
    assert code == 2 and "No envelope" in err


async def test_a_link_of_the_earlier_form_obeys_the_stored_links_lifetime_and_revocation(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, clock: FrozenClock
) -> None:
    """A completion e-mail sent before links were stored carries ``envelope|recipient`` sealed with
    the time: it stands for that recipient's link, so a revocation kills it too."""
    envelope_id, _ = await _completed(api, tenant, ceremony)
    signer_id = (await (await api.get(f"/v1/envelopes/{envelope_id}", headers=tenant.auth)).json())["signers"][0]["id"]
    earlier = container.box.seal(f"{envelope_id}|{signer_id}", at=clock.now())
    assert (await api.get(f"/download/{earlier}")).status == 200
    assert (await api.delete(f"/v1/envelopes/{envelope_id}/download-links", headers=tenant.auth)).status == 200
    assert (await api.get(f"/download/{earlier}")).status == 410
    forged = container.box.seal("not-an-envelope", at=clock.now())
    assert (await api.get(f"/download/{forged}")).status == 404
