"""Sender identity per tenant: the From display name is the tenant's with the gateway's own
address; a logo and an accent colour set by the operator CLI, served from our origin and shown on
the signer's page and in the e-mails; the operator of the service named in both footers."""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from esign_gateway.container import Container
from esign_gateway.db.models import Tenant as TenantRow
from esign_gateway.errors import ValidationFailedError
from esign_gateway.services.branding import set_branding, validate_accent
from tests.api.conftest import Ceremony, envelope_body
from tests.conftest import SmtpServer, Tenant

JANA = "jana@example.cz"


def _png(size: tuple[int, int] = (120, 40), noise: bool = False) -> bytes:
    image = Image.new("RGB", size, (11, 61, 145))
    if noise:
        rnd = random.Random(7)
        image.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
                       for _ in range(size[0] * size[1])])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _cli(container: Container, *args: str) -> subprocess.CompletedProcess[str]:
    settings = container.settings
    env = {**os.environ, "ESIGN_DATA_DIR": str(settings.data_dir), "ESIGN_ENV": "test", "ESIGN_LOG_JSON": "false",
           "ESIGN_DATABASE_URL": settings.resolved_database_url}
    return subprocess.run([sys.executable, "-m", "esign_gateway", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


async def _invite(api: Any, tenant: Tenant, ceremony: Ceremony, language: str = "cs") -> Any:
    resp = await api.post("/v1/envelopes", json=envelope_body(language=language), headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    await ceremony.run_jobs()
    return ceremony.smtp.to(JANA)[-1]


@pytest.mark.parametrize(("language", "display"), [("cs", "Dodavatel s.r.o. přes esign-gateway"),
                                                   ("sk", "Dodavatel s.r.o. cez esign-gateway"),
                                                   ("en", "Dodavatel s.r.o. via esign-gateway")])
async def test_from_display_name_is_the_tenants_with_the_gateways_own_address(
    api: Any, tenant: Tenant, ceremony: Ceremony, smtp_server: SmtpServer, language: str, display: str
) -> None:
    mail = await _invite(api, tenant, ceremony, language)
    (sender,) = mail["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (display, "noreply@example.test")


async def test_a_configured_display_name_replaces_it_and_another_tenant_keeps_its_own(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    await set_branding(tenant.id, display_name="Dodavatel – smluvní oddělení")
    mail = await _invite(api, tenant, ceremony)
    (sender,) = mail["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Dodavatel – smluvní oddělení", "noreply@example.test")
    info, key = await container.tenants.create_tenant("Konkurence a.s.", paid=True, plan_code="l")
    other = Tenant(info.id, key.secret)
    resp = await api.post("/v1/envelopes", json=envelope_body(), headers=other.auth)
    assert resp.status == 201
    await ceremony.run_jobs()
    assert ceremony.smtp.to(JANA)[-1]["From"].addresses[0].display_name == "Konkurence a.s. přes esign-gateway"


async def test_logo_and_accent_set_by_the_cli_are_served_from_our_origin_and_shown_on_the_page_and_in_the_email(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, tmp_path: Path
) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(_png())
    out = _cli(container, "tenant", "update", tenant.id, "--logo", str(logo), "--accent", "#0B3D91")
    assert out.returncode == 0, out.stderr
    mail = await _invite(api, tenant, ceremony)
    html = mail.get_body(("html",)).get_content()
    src = re.search(r'<img src="https://sign\.example\.test(/branding/[^"]+\.png)"', html)
    assert src, html
    assert "#0b3d91" in html  # the button and the top rule in the tenant's colour

    token = ceremony.link_token(JANA)
    page = await (await api.get(f"/sign/{token}")).text()
    assert f'<img class="logo" src="{src.group(1)}"' in page
    theme = re.search(r'<link rel="stylesheet" href="(/branding/[^"]+\.css)">', page)
    assert theme
    css = await api.get(theme.group(1))
    assert css.status == 200 and css.content_type == "text/css"
    assert (await css.text()).strip() == ":root{--brand:#0b3d91}"

    resp = await api.get(src.group(1))
    assert resp.status == 200 and resp.content_type == "image/png"
    assert "immutable" in resp.headers["Cache-Control"] and resp.headers["X-Content-Type-Options"] == "nosniff"
    with Image.open(io.BytesIO(await resp.read())) as served:
        assert served.format == "PNG" and served.size == (120, 40)
    assert (await api.get(f"/branding/{tenant.id}/0000000000000000.png")).status == 404
    assert (await api.get(f"/branding/unknown/{src.group(1).rsplit('/', 1)[1]}")).status == 404


@pytest.mark.parametrize(("what", "data"), [
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ("gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
            b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"),
    ("too big", _png((400, 400), noise=True)),
    ("truncated", _png()[:60]),
    ("too many pixels", _png((2400, 10))),
])
async def test_a_logo_that_is_not_a_small_png_or_jpeg_is_refused_and_changes_nothing(
    container: Container, tenant: Tenant, tmp_path: Path, what: str, data: bytes
) -> None:
    await set_branding(tenant.id, logo=_png())
    before = await TenantRow.get(id=tenant.id)
    with pytest.raises(ValidationFailedError) as refused:
        await set_branding(tenant.id, logo=data)
    assert refused.value.errors[0]["field"] == "logo"
    after = await TenantRow.get(id=tenant.id)
    assert (after.logo, after.logo_sha256) == (before.logo, before.logo_sha256)
    if what == "svg":  # the operator's command says why and exits 2
        path = tmp_path / "logo.svg"
        path.write_bytes(data)
        out = _cli(container, "tenant", "update", tenant.id, "--logo", str(path))
        assert out.returncode == 2 and "PNG or JPEG" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("value", ["red", "#fff", "#0b3d91;}body{display:none", "#0b3d91 ", "0b3d91", "#ffff00",
                                   "#0b3d9", "#0b3d911", "#gggggg", "var(--x)"])
def test_an_accent_colour_is_exactly_rrggbb_and_dark_enough_for_white_text(value: str) -> None:
    if value == "#0b3d91 ":
        assert validate_accent(value) == "#0b3d91"  # surrounding spaces of a shell argument
        return
    with pytest.raises(ValidationFailedError):
        validate_accent(value)


def test_an_accent_is_kept_in_lower_case() -> None:
    assert validate_accent("#0B3D91") == "#0b3d91"


async def test_the_page_and_every_email_name_the_operator_a_contact_and_the_privacy_notice(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    container.notifications.operator = type(container.notifications.operator)(
        "Podpisy Provoz s.r.o.", "podpora@podpisy.example", "https://podpisy.example/soukromi")
    container.settings.operator_name = "Podpisy Provoz s.r.o."
    container.settings.operator_contact = "podpora@podpisy.example"
    container.settings.privacy_url = "https://podpisy.example/soukromi"
    mail = await _invite(api, tenant, ceremony)
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Provozovatel služby elektronického podpisu: Podpisy Provoz s.r.o." in text
    assert "Kontakt: podpora@podpisy.example" in text and "https://podpisy.example/soukromi" in text
    assert 'href="https://podpisy.example/soukromi"' in html
    page = await (await api.get(f"/sign/{ceremony.link_token(JANA)}")).text()
    assert "Provozovatel služby elektronického podpisu: Podpisy Provoz s.r.o." in page
    assert 'href="https://podpisy.example/soukromi">Zásady ochrany osobních údajů</a>' in page
