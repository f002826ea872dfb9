"""One visible PAdES signature as an incremental update: the code the signer *and* the inspector run.

:func:`add_signature` opens the file with :func:`.update.open_writer` (fresh object numbers), adds
the stamp and the field, signs with pyHanko and proves with :func:`.update.check_update` that
nothing of the original changed. Two behaviours of pyHanko 0.38 are adjusted, both only for the
signatures made here:

* **A foreign document timestamp is not a precondition.** For a B-LTA signature on a file that
  already carries a document timestamp (a counterparty's B-LTA file), pyHanko validates that
  timestamp's chain against *our* trust roots to collect its revocation data, and refuses to sign
  when it cannot. Their TSA is not ours to trust: :class:`_TolerantSession` collects that data when
  the chain validates and signs without it otherwise (their timestamp stays exactly as it was).
* **``/NeedAppearances`` is kept.** pyHanko deletes it from the AcroForm when it adds a signature
  field; on a file with filled fields and no appearance streams the values then vanish in every
  viewer. Unsigned uploads get appearance streams when they are prepared (:mod:`.repair`); on a
  file signed elsewhere the flag is put back in the same revision (:func:`_keep_need_appearances`).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import CMSExtractionError, SigningError
from pyhanko.sign.signers import cms_embedder, pdf_signer
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator import ValidationContext

from .update import check_update, open_writer

__all__ = [
    "BYTES_RESERVED", "FONT_DIR", "SignatureSpec", "add_signature", "stamp_box",
]

FONT_DIR = Path(__file__).parent / "fonts"
BYTES_RESERVED = 32 * 1024
STAMP_W, STAMP_H, MARGIN, GAP = 170, 62, 36, 8

_SIGNED_WORD = {"cs": "Elektronicky podepsal(a)", "sk": "Elektronicky podpísal(a)", "en": "Signed electronically by"}
_ENVELOPE_WORD = {"cs": "ID obálky", "sk": "ID obálky", "en": "Envelope ID"}


@dataclass(frozen=True, slots=True)
class SignatureSpec:
    field_name: str
    signer_name: str
    reason: str
    envelope_id: str
    slot: int
    language: str
    visible: bool
    long_term: ValidationContext | None
    """With a context: B-LTA (validation data in the DSS, then a document timestamp); else B-T."""


def stamp_box(page_box: tuple[float, float, float, float], slot: int) -> tuple[int, int, int, int]:
    """Stamps in rows of up to three from the bottom of the last page; slots never overlap."""
    x0, y0, x1, _y1 = page_box
    per_row = max(1, int((x1 - x0 - 2 * MARGIN + GAP) // (STAMP_W + GAP)))
    row, col = divmod(slot, per_row)
    left = int(x0 + MARGIN + col * (STAMP_W + GAP))
    bottom = int(y0 + MARGIN + row * (STAMP_H + GAP))
    return left, bottom, left + STAMP_W, bottom + STAMP_H


_FOREIGN_FAULTS = (SigningError, CMSExtractionError, SignatureValidationError, PdfReadError, ValueError, KeyError)
"""What reading and validating another party's document timestamp raises (asn1crypto: ValueError)."""


class _TolerantSession(pdf_signer.PdfSigningSession):
    async def _perform_prev_ts_validation(self, validation_context: ValidationContext, prev_reader: Any) -> Any:
        try:
            return await super()._perform_prev_ts_validation(validation_context, prev_reader)
        except _FOREIGN_FAULTS:  # a foreign TSA we cannot validate, or a damaged earlier signature:
            return None  # it is left exactly as it is


class _PdfSigner(signers.PdfSigner):
    def init_signing_session(self, pdf_out: BasePdfFileWriter, existing_fields_only: bool = False) -> Any:
        session = super().init_signing_session(pdf_out, existing_fields_only=existing_fields_only)
        session.__class__ = _TolerantSession
        return session


def _keep_need_appearances(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def ensure_sig_flags(writer: BasePdfFileWriter, lock_sig_flags: bool = True) -> None:
        form = writer.root["/AcroForm"]
        need = form.get("/NeedAppearances")
        original(writer=writer, lock_sig_flags=lock_sig_flags)
        if need is not None and "/NeedAppearances" not in form:
            form["/NeedAppearances"] = need
            writer.update_container(form)

    ensure_sig_flags.__wrapped_by_esign__ = True  # type: ignore[attr-defined]
    return ensure_sig_flags


if not getattr(cms_embedder.ensure_sig_flags, "__wrapped_by_esign__", False):
    cms_embedder.ensure_sig_flags = _keep_need_appearances(cms_embedder.ensure_sig_flags)


def _page_box(page: generic.DictionaryObject) -> tuple[float, float, float, float]:
    """The page's MediaBox (inherited from the page tree when the page has none), corners ordered."""
    node: Any = page
    box: Any = [0, 0, 595, 842]
    for _ in range(64):
        if "/MediaBox" in node:
            box = node["/MediaBox"]
            break
        if "/Parent" not in node:
            break
        node = node["/Parent"]
    x0, y0, x1, y1 = (float(v) for v in box)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


async def add_signature(
    data: bytes, spec: SignatureSpec, *, signer: signers.Signer, timestamper: TimeStamper,
    font: GlyphAccumulatorFactory, bytes_reserved: int = BYTES_RESERVED,
) -> bytes:
    """Sign ``data`` (see the module docs); raises what pyHanko raises, or ``UpdateIntegrityError``."""
    writer = open_writer(data)
    if writer.prev.encrypted:
        raise SigningError("Encrypted documents cannot be signed.")
    page_count = int(writer.root["/Pages"]["/Count"])
    last_page = writer.find_page_for_modification(page_count - 1)[0].get_object()
    box = stamp_box(_page_box(last_page), spec.slot)
    lang = spec.language if spec.language in _SIGNED_WORD else "en"
    stamp = TextStampStyle(
        stamp_text=f"{_SIGNED_WORD[lang]}\n%(signer)s\n%(ts)s\n{_ENVELOPE_WORD[lang]}:\n{spec.envelope_id}",
        text_box_style=TextBoxStyle(font=font, font_size=6.5, leading=8),
        timestamp_format="%Y-%m-%d %H:%M:%S UTC",
        border_width=1,
    )
    long_term: dict[str, Any] = {}
    if spec.long_term is not None:
        long_term = {"embed_validation_info": True, "use_pades_lta": True, "validation_context": spec.long_term}
    meta = signers.PdfSignatureMetadata(
        field_name=spec.field_name, subfilter=fields.SigSeedSubFilter.PADES, name=spec.signer_name,
        reason=spec.reason, location=None, md_algorithm="sha256", **long_term,
    )
    pdf_signer_ = _PdfSigner(
        meta, signer=signer, timestamper=timestamper, stamp_style=stamp,
        new_field_spec=fields.SigFieldSpec(sig_field_name=spec.field_name, on_page=page_count - 1,
                                           box=box if spec.visible else None),
    )
    out = io.BytesIO()
    await pdf_signer_.async_sign_pdf(
        writer, output=out, bytes_reserved=bytes_reserved,
        appearance_text_params={"signer": spec.signer_name} if spec.visible else None,
    )
    signed = out.getvalue()
    # A fresh reader of the original, not the writer's: pyHanko edits the objects it updates in place,
    # in the cache of the reader it came from, so that reader no longer shows the original.
    check_update(data, signed)
    return signed
