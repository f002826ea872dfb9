"""A tenant's branding: the From display name, a logo and the accent colour of the signer's page
and the e-mails, set by the operator (``esign-gateway tenant update --logo … --accent … --display-name …``).

* **Logo**: PNG or JPEG only (an SVG can carry script), at most :data:`MAX_LOGO_BYTES` and
  :data:`MAX_LOGO_SIDE` pixels a side. It is decoded and encoded again (Pillow), so what is stored
  and served is a plain image: no metadata, nothing appended after the image data. Served from
  our origin at ``/branding/{tenant_id}/{sha256[:16]}.png|.jpg`` (the CSP's ``img-src 'self'``),
  the name changing with the content so it can be cached for a year.
* **Accent**: exactly ``#rrggbb`` (nothing else can reach the stylesheet) and dark enough for
  white text on it and for it as text on white (contrast ≥ 4.5:1, WCAG AA). Served as a one-rule
  stylesheet ``/branding/{tenant_id}/{hash}.css`` (the CSP allows no inline style).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

from esign_gateway.db.models import Tenant
from esign_gateway.errors import NotFoundError, ValidationFailedError

__all__ = ["MAX_LOGO_BYTES", "MAX_LOGO_SIDE", "Branding", "branding_of", "contrast_with_white", "logo_of",
           "set_branding", "theme_css", "validate_accent", "validate_logo"]

MAX_LOGO_BYTES = 200 * 1024
MAX_LOGO_SIDE = 2000
_ACCENT = re.compile(r"#[0-9a-f]{6}")
_TYPES = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg")}


@dataclass(frozen=True, slots=True)
class Branding:
    display_name: str | None
    logo_path: str | None
    """``/branding/{tenant}/{hash}.png`` (relative to the public URL), None without a logo."""
    theme_path: str | None
    """``/branding/{tenant}/{hash}.css`` with the accent, None without one."""
    accent: str | None


def _invalid(field: str, message: str) -> ValidationFailedError:
    return ValidationFailedError(errors=[{"field": field, "message": message}])


def contrast_with_white(accent: str) -> float:
    """The WCAG contrast ratio of ``#rrggbb`` against white."""
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(accent[i:i + 2], 16) for i in (1, 3, 5))
    lum = 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    return 1.05 / (lum + 0.05)


def validate_accent(value: str) -> str:
    accent = value.strip().lower()
    if not _ACCENT.fullmatch(accent):
        raise _invalid("accent", "a colour as #rrggbb, e.g. #0b3d91")
    if contrast_with_white(accent) < 4.5:
        raise _invalid("accent", f"too light: white text on it has contrast {contrast_with_white(accent):.1f}:1, "
                                 "at least 4.5:1 is needed")
    return accent


def validate_logo(data: bytes) -> tuple[bytes, str]:
    """The logo re-encoded, and its content type; ``ValidationFailedError`` for anything else."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_LOGO_BYTES:
        raise _invalid("logo", f"at most {MAX_LOGO_BYTES // 1024} KB, got {len(data) // 1024} KB")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            if kind not in _TYPES:
                raise _invalid("logo", f"a PNG or JPEG image, got {kind or 'something else'}")
            if max(probe.size) > MAX_LOGO_SIDE:
                raise _invalid("logo", f"at most {MAX_LOGO_SIDE} pixels a side, got {probe.size[0]}×{probe.size[1]}")
            probe.load()
            image = probe.copy()
    except UnidentifiedImageError:
        raise _invalid("logo", "a PNG or JPEG image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _invalid("logo", "the image cannot be read") from None
    out = io.BytesIO()
    if kind == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=90)
    else:
        image.save(out, "PNG", optimize=True)
    return out.getvalue(), _TYPES[kind][0]


async def set_branding(
    tenant_id: str, *, display_name: str | None = None, logo: bytes | None = None, accent: str | None = None,
    clear_logo: bool = False, clear_accent: bool = False,
) -> Tenant:
    row = await Tenant.get_or_none(id=tenant_id)
    if row is None:
        raise NotFoundError(f"No tenant {tenant_id}.")
    if display_name is not None:
        name = " ".join(display_name.split())
        if len(name) > 200:
            raise _invalid("display_name", "at most 200 characters")
        row.display_name = name or None
    if logo is not None:
        row.logo, row.logo_type = validate_logo(logo)
        row.logo_sha256 = hashlib.sha256(row.logo).hexdigest()
    elif clear_logo:
        row.logo = row.logo_type = row.logo_sha256 = None
    if accent is not None:
        row.accent_color = validate_accent(accent)
    elif clear_accent:
        row.accent_color = None
    await row.save()
    return row


def _theme_hash(accent: str) -> str:
    return hashlib.sha256(accent.encode()).hexdigest()[:16]


def theme_css(accent: str) -> str:
    return f":root{{--brand:{accent}}}\n"


async def branding_of(tenant_id: str) -> Branding:
    row = await Tenant.filter(id=tenant_id).only("id", "display_name", "logo_type", "logo_sha256",
                                                 "accent_color").first()
    if row is None:
        return Branding(None, None, None, None)
    logo = None
    if row.logo_sha256 and row.logo_type:
        ext = "jpg" if row.logo_type == "image/jpeg" else "png"
        logo = f"/branding/{row.id}/{row.logo_sha256[:16]}.{ext}"
    theme = f"/branding/{row.id}/{_theme_hash(row.accent_color)}.css" if row.accent_color else None
    return Branding(row.display_name, logo, theme, row.accent_color)


async def logo_of(tenant_id: str, name: str) -> tuple[bytes, str] | tuple[str, str]:
    """The logo (bytes, content type) or the theme (css text, "text/css") named ``name``."""
    row = await Tenant.get_or_none(id=tenant_id)
    if row is None:
        raise NotFoundError("No such image.")
    stem, _, ext = name.partition(".")
    if ext == "css" and row.accent_color and stem == _theme_hash(row.accent_color):
        return theme_css(row.accent_color), "text/css"
    if (row.logo is not None and row.logo_sha256 and row.logo_type and stem == row.logo_sha256[:16]
            and ext == ("jpg" if row.logo_type == "image/jpeg" else "png")):
        return bytes(row.logo), row.logo_type
    raise NotFoundError("No such image.")
