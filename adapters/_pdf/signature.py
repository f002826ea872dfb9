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
from pyhanko.pdf_utils.layout import BoxConstraints
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import CMSExtractionError, SigningError
from pyhanko.sign.signers import cms_embedder, pdf_signer
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.stamp import TextStamp, TextStampStyle
from pyhanko_certvalidator import ValidationContext

from esign_gateway.i18n import translations
from esign_gateway.ports import StampPlacement

from .geometry import PageFrame, frame_of_page
from .repair import is_signed, resolved_get
from .update import check_update, open_writer

__all__ = [
    "BYTES_RESERVED", "FONT_DIR", "SignatureSpec", "add_signature", "stamp_box",
]

FONT_DIR = Path(__file__).parent / "fonts"
BYTES_RESERVED = 32 * 1024
STAMP_W, STAMP_H, MARGIN, GAP = 170, 62, 36, 8
BACKGROUND = (0.97, 0.97, 0.96)
"""The stamp's opaque fill: light, so its text reads on any page, dark ones included."""



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
    placement: StampPlacement | None = None
    """Where the stamp goes (see :mod:`.placement`); without one, :func:`stamp_box` on the last page."""


def stamp_box(frame: PageFrame, slot: int) -> tuple[float, float, float, float]:
    """Without a stored placement: stamps in rows from the bottom-left of the displayed page."""
    per_row = max(1, int((frame.width - 2 * MARGIN + GAP) // (STAMP_W + GAP)))
    row, col = divmod(slot, per_row)
    x = MARGIN + col * (STAMP_W + GAP)
    y = frame.height - MARGIN - STAMP_H - row * (STAMP_H + GAP)
    return x, y, STAMP_W, STAMP_H


@dataclass(frozen=True)
class _UprightStampStyle(TextStampStyle):
    """pyHanko's text stamp on an opaque background, turned upright on a rotated page: drawn in the
    displayed width × height, with an appearance ``/Matrix`` that undoes the page's ``/Rotate``."""

    frame: PageFrame | None = None
    xobject: generic.IndirectObject | None = None
    """A reference allocated in advance for the appearance (shared with the mirror, see
    :func:`_mirror_for_regenerating_viewers`)."""

    def create_stamp(self, writer: BasePdfFileWriter, box: BoxConstraints, text_params: dict[str, Any]) -> TextStamp:
        if self.frame is not None and self.frame.rotate in (90, 270):
            box = BoxConstraints(width=box.height, height=box.width)
        return _UprightStamp(writer=writer, style=self, box=box, text_params=text_params)


class _UprightStamp(TextStamp):
    def register(self) -> generic.IndirectObject:
        reserved = self.style.xobject
        if reserved is None or self._content_xobj_ref is not None:
            return super().register()
        self._content_xobj_ref = self._ensure_writer.add_object(self.as_form_xobject(), idnum=reserved.idnum)
        return self._content_xobj_ref

    def render(self) -> bytes:
        fill = b"q %g %g %g rg 0 0 %g %g re f Q " % (*BACKGROUND, self.box.width, self.box.height)
        return fill + super().render()

    def as_form_xobject(self) -> generic.StreamObject:
        xobject = super().as_form_xobject()
        matrix = self.style.frame.upright_matrix if self.style.frame is not None else None
        if matrix is not None:
            xobject[generic.pdf_name("/Matrix")] = generic.ArrayObject(generic.NumberObject(v) for v in matrix)
        return xobject


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


def _mirror_for_regenerating_viewers(
    writer: BasePdfFileWriter, page_ref: generic.IndirectObject, rect: tuple[float, float, float, float],
    *, first_signature: bool,
) -> generic.IndirectObject | None:
    """On a form with ``/NeedAppearances true``, viewers redraw widgets from their fields' values:
    poppler 22 (Evince, Okular, ``pdftotext``) draws signature widgets blank, and Acrobat hides
    visible signatures (PDFBox's PDFBOX-3738). There, the stamp's appearance is also shown by a
    plain ``/Stamp`` annotation (printed, read-only, locked) under the signature widget, sharing its
    one appearance stream; viewers that keep the widget's appearance draw the same stamp over it.

    Only in the file's first signature: pyHanko's validator counts an annotation added after a
    signature as a change that breaks it, so a later signer's stamp on such a form has no mirror
    (see docs/placement.md). Returns the reference reserved for the appearance, or None."""
    if not first_signature:
        return None
    try:
        need = resolved_get(writer.root["/AcroForm"], "/NeedAppearances")
    except KeyError:
        return None
    if getattr(need, "value", need) is not True:
        return None
    appearance = writer.allocate_placeholder()
    annot = writer.add_object(generic.DictionaryObject({
        generic.pdf_name("/Type"): generic.pdf_name("/Annot"),
        generic.pdf_name("/Subtype"): generic.pdf_name("/Stamp"),
        generic.pdf_name("/Rect"): generic.ArrayObject(generic.FloatObject(round(v, 3)) for v in rect),
        generic.pdf_name("/F"): generic.NumberObject(4 | 64 | 128),  # Print, ReadOnly, Locked
        generic.pdf_name("/P"): page_ref,
        generic.pdf_name("/AP"): generic.DictionaryObject({generic.pdf_name("/N"): appearance}),
    }))
    page = page_ref.get_object()
    annots = page.get("/Annots")
    if isinstance(annots, generic.ArrayObject):
        annots.append(annot)
        if isinstance(page.raw_get("/Annots"), generic.IndirectObject):
            writer.update_container(annots)
        else:
            writer.update_container(page)
    else:
        page[generic.pdf_name("/Annots")] = generic.ArrayObject([annot])
        writer.update_container(page)
    return appearance


async def add_signature(
    data: bytes, spec: SignatureSpec, *, signer: signers.Signer, timestamper: TimeStamper,
    font: GlyphAccumulatorFactory, bytes_reserved: int = BYTES_RESERVED,
) -> bytes:
    """Sign ``data`` (see the module docs); raises what pyHanko raises, or ``UpdateIntegrityError``."""
    writer = open_writer(data)
    if writer.prev.encrypted:
        raise SigningError("Encrypted documents cannot be signed.")
    placement = spec.placement
    field_name, page_index = spec.field_name, int(writer.root["/Pages"]["/Count"]) - 1
    if placement is not None:
        page_index = placement.page
    page_ref = writer.find_page_for_modification(page_index)[0]
    frame = frame_of_page(page_ref.get_object(), resolved_get)
    box = ((placement.x, placement.y, placement.width, placement.height) if placement is not None
           else stamp_box(frame, spec.slot))
    new_field: fields.SigFieldSpec | None
    if placement is not None and placement.field_name is not None:
        field_name, new_field = placement.field_name, None  # the PDF's own empty field, and its widget
    else:
        new_field = fields.SigFieldSpec(sig_field_name=field_name, on_page=page_index,
                                        box=frame.to_user(box) if spec.visible else None)
    mirror = None
    if spec.visible:
        mirror = _mirror_for_regenerating_viewers(writer, page_ref, frame.to_user(box),
                                                  first_signature=not is_signed(data))
    tr = translations(spec.language)
    signed_word = tr.gettext("Signed electronically by").replace("%", "%%")
    envelope_word = tr.gettext("Envelope ID").replace("%", "%%")
    stamp = _UprightStampStyle(
        stamp_text=f"{signed_word}\n%(signer)s\n%(ts)s\n{envelope_word}:\n{spec.envelope_id}",
        text_box_style=TextBoxStyle(font=font, font_size=6.5, leading=8),
        timestamp_format="%Y-%m-%d %H:%M:%S UTC",
        border_width=1,
        frame=frame,
        xobject=mirror,
    )
    long_term: dict[str, Any] = {}
    if spec.long_term is not None:
        long_term = {"embed_validation_info": True, "use_pades_lta": True, "validation_context": spec.long_term}
    meta = signers.PdfSignatureMetadata(
        field_name=field_name, subfilter=fields.SigSeedSubFilter.PADES, name=spec.signer_name,
        reason=spec.reason, location=None, md_algorithm="sha256", **long_term,
    )
    pdf_signer_ = _PdfSigner(
        meta, signer=signer, timestamper=timestamper, stamp_style=stamp, new_field_spec=new_field,
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
