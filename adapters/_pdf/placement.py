"""Where each signer's stamp goes: the sender's anchor or box, the PDF's own empty signature
fields, or free space found on the rendered page — never over the document's content.

Runs in an inspector process at upload (:func:`plan`); the result is stored with the envelope and
the signers' stamps go exactly there. The order of precedence, per signer and document:

1. **the sender's field** (``signers[].fields``): an *anchor* — a text found in the page text
   (pdfium's text layer; compared without diacritics, whitespace and ligatures, so ``ﬁ`` matches
   ``fi`` and a decomposed ``á`` matches ``á``) — or a *box* in displayed-page points. A placeholder
   written for the purpose (``{{…}}``) is covered by the stamp; below any other anchor text the stamp
   goes under it (or right of it, or above it, where that is free), unless offsets are given.
2. **an empty signature field** the PDF already has (Word, LibreOffice, Acrobat), in form order.
3. **free space**: the page is rendered (pdfium, in its displayed orientation) and the stamp goes
   where no pixel differs from the page's background — no text, line or image under it — from the
   bottom of the last page up, left to right. When the last page has no room for every remaining
   signer, an unsigned document gets a signature page (:mod:`.signature_page`); a document signed
   elsewhere cannot take a new page without breaking those signatures, so its earlier pages are
   searched too.

Stamps are 170 × 62 pt (DigiSign's tags are ≈ 156 × 60), scaled down on pages too small for that.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pypdfium2 as pdfium

from esign_gateway.ports import FieldRequest, PlacementRequest, StampPlacement

from .geometry import PageFrame, Rect, frame_of_page
from .repair import resolved_get

__all__ = ["STAMP_H", "STAMP_W", "PlacementError", "PlacementPlan", "plan", "stamp_size"]

STAMP_W, STAMP_H = 170.0, 62.0
MIN_SCALE = 0.25
"""Below this (a page under ~50 pt across) a stamp would not be legible: the page takes none."""
SIGNED_FILE_SCALES = (1.0, 0.75, 0.55, 0.4)
"""Stamp sizes tried, in turn, on a file signed elsewhere (it cannot take a signature page)."""
GAP = 8.0
"""Between two stamps, and between a stamp and the page's content (points)."""
INK_LEVEL = 40
"""A pixel this far (of 255) from the page's background colour is content."""
RENDER_PIXELS = 500
"""The longer side of the rendered page, in pixels (~1.7 pt per pixel on A4; the gap kept to content is 4 pt)."""

_PLACEHOLDER = re.compile(r"^\{\{.*\}\}$", re.DOTALL)


class PlacementError(Exception):
    """A sender's field cannot be placed; ``path`` names it (``signers[0].fields[1].anchor``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class PlacementPlan:
    placements: tuple[StampPlacement | None, ...]
    """Per signer; None for a signer that goes on the signature page (``signature_page``)."""
    signature_page: bool = False


def stamp_size(frame: PageFrame, largest: float = 1.0) -> tuple[float, float] | None:
    """The stamp's displayed size on this page (scaled down on small pages, and to at most
    ``largest``), or None if the page is too small for a legible stamp (or shows nothing)."""
    if frame.empty:
        return None
    margin = _margin(frame)
    scale = min(largest, (frame.width - 2 * margin) / STAMP_W, (frame.height - 2 * margin) / STAMP_H)
    if scale < MIN_SCALE:
        return None
    return round(STAMP_W * scale, 2), round(STAMP_H * scale, 2)


def _margin(frame: PageFrame) -> float:
    return min(24.0, 0.04 * min(frame.width, frame.height))


def _fold(text: str) -> str:
    """What anchors are compared on: no diacritics, no whitespace, compatibility forms (ligatures)."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", text)
                   if not (unicodedata.category(ch) in ("Mn", "Cc", "Cf", "Zs", "Zl", "Zp") or ch.isspace()))


# --------------------------------------------------------------------------- one page


@dataclass
class _Page:
    index: int
    frame: PageFrame
    pdf: pdfium.PdfDocument
    _ink: np.ndarray | None = None
    _scale: float = 1.0
    taken: list[Rect] = field(default_factory=list)

    def _page(self) -> pdfium.PdfPage:
        page = self.pdf[self.index]
        page.set_cropbox(*self.frame.box)  # pdfium shows exactly the frame the signer maps onto
        page.set_rotation(self.frame.rotate)
        return page

    def ink(self) -> tuple[np.ndarray, float]:
        """A boolean mask of the displayed page (True: content), and pixels per point: what the
        render shows, and the boxes of the text layer (a word's box is larger than its ink, and
        faint or tiny text may render below ``INK_LEVEL``)."""
        if self._ink is None:
            page = self._page()
            scale = min(4.0, RENDER_PIXELS / max(self.frame.width, self.frame.height))
            bitmap = page.render(scale=scale, grayscale=True, draw_annots=True, may_draw_forms=True)
            gray = np.asarray(bitmap.to_numpy(), dtype=np.int16)
            if gray.ndim == 3:
                gray = gray[:, :, 0]
            counts = np.bincount(gray.ravel(), minlength=256)
            background = int(np.argmax(counts))
            ink = np.abs(gray - background) > INK_LEVEL
            text = page.get_textpage()
            for i in range(text.count_rects()):
                x, y, w, h = self.frame.to_display(text.get_rect(i))
                top, left = max(0, int(y * scale)), max(0, int(x * scale))
                ink[top:int((y + h) * scale) + 1, left:int((x + w) * scale) + 1] = True
            self._ink, self._scale = ink, scale
        return self._ink, self._scale

    def is_free(self, rect: Rect, gap: float = GAP / 2) -> bool:
        if any(_overlap(rect, other, GAP) for other in self.taken):
            return False
        ink, scale = self.ink()
        x, y, w, h = rect
        top, left = max(0, int((y - gap) * scale)), max(0, int((x - gap) * scale))
        bottom, right = int((y + h + gap) * scale) + 1, int((x + w + gap) * scale) + 1
        return not ink[top:bottom, left:right].any()

    def free_spot(self, w: float, h: float) -> Rect | None:
        """The lowest free position for a ``w`` × ``h`` stamp, leftmost on its row; None if none."""
        ink, scale = self.ink()
        mask = ink.copy()
        for tx, ty, tw, th in self.taken:
            mask[max(0, int((ty - GAP) * scale)):int((ty + th + GAP) * scale) + 1,
                 max(0, int((tx - GAP) * scale)):int((tx + tw + GAP) * scale) + 1] = True
        margin = _margin(self.frame)
        pad = GAP / 2
        ph, pw = int(np.ceil((h + 2 * pad) * scale)), int(np.ceil((w + 2 * pad) * scale))
        rows, cols = mask.shape
        lo_y, lo_x = int(np.ceil((margin - pad) * scale)), int(np.ceil((margin - pad) * scale))
        hi_y = int((self.frame.height - margin + pad) * scale) - ph
        hi_x = int((self.frame.width - margin + pad) * scale) - pw
        if hi_y < lo_y or hi_x < lo_x:
            return None
        summed = np.zeros((rows + 1, cols + 1), dtype=np.int32)
        summed[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0), axis=1)
        inked = (summed[ph:, pw:] - summed[:-ph, pw:] - summed[ph:, :-pw] + summed[:-ph, :-pw])
        free = inked[lo_y:hi_y + 1, lo_x:hi_x + 1] == 0
        for row in range(free.shape[0] - 1, -1, -1):
            hits = np.flatnonzero(free[row])
            if hits.size:
                py, px = row + lo_y, int(hits[0]) + lo_x
                return round(px / scale + pad, 2), round(py / scale + pad, 2), w, h
        return None

    def text(self) -> tuple[str, list[int], Any]:
        """The page text folded for matching, per folded character its source character's index,
        and pdfium's text page (for the boxes of what matched)."""
        text = self._page().get_textpage()
        count = text.count_chars()
        whole = text.get_text_range()
        one_to_one = len(whole) == count  # else (characters beyond the BMP) one call per character
        folded: list[str] = []
        source: list[int] = []
        for i in range(count):
            part = _fold(whole[i] if one_to_one else text.get_text_range(i, 1))
            folded.append(part)
            source.extend([i] * len(part))
        return "".join(folded), source, text

    def text_under(self, user_rect: Any) -> bool:
        """Whether the page prints any text inside ``user_rect`` (a field drawn over the text)."""
        left, bottom, right, top = (float(v) for v in user_rect)
        text = self._page().get_textpage()
        inside = text.get_text_bounded(min(left, right), min(bottom, top), max(left, right), max(bottom, top))
        return bool(_fold(inside))

    def char_box(self, text: Any, index: int) -> tuple[float, float, float, float] | None:
        """One character's box on the displayed page (left, top, right, bottom); None if it has none."""
        x, y, w, h = self.frame.to_display(text.get_charbox(index))
        return (x, y, x + w, y + h) if w > 0 and h > 0 else None


def _overlap(a: Rect, b: Rect, gap: float = 0.0) -> bool:
    return not (a[0] + a[2] + gap <= b[0] or b[0] + b[2] + gap <= a[0]
                or a[1] + a[3] + gap <= b[1] or b[1] + b[3] + gap <= a[1])


# --------------------------------------------------------------------------- the document


class _Document:
    def __init__(self, data: bytes, reader: Any) -> None:
        self.reader = reader
        self.pdf = pdfium.PdfDocument(data)
        self.pdf.init_forms()
        self.count = len(self.pdf)
        self._pages: dict[int, _Page] = {}
        self._page_refs: dict[int, int] | None = None

    def page(self, index: int) -> _Page:
        if index not in self._pages:
            frame = frame_of_page(_page_dict(self.reader, index), resolved_get)
            self._pages[index] = _Page(index=index, frame=frame, pdf=self.pdf)
        return self._pages[index]

    def anchor_boxes(self, anchor: str) -> list[tuple[int, tuple[float, float, float, float]]]:
        """Every occurrence of ``anchor``: (page index, its box on the displayed page)."""
        needle = _fold(anchor)
        found = []
        if not needle:
            return found
        for index in range(self.count):
            page = self.page(index)
            folded, source, text = page.text()
            start = folded.find(needle)
            while start >= 0:
                chars = [box for i in sorted(set(source[start:start + len(needle)]))
                         if (box := page.char_box(text, i)) is not None]
                if chars:
                    found.append((index, (min(c[0] for c in chars), min(c[1] for c in chars),
                                          max(c[2] for c in chars), max(c[3] for c in chars))))
                start = folded.find(needle, start + len(needle))
        return found

    def empty_signature_fields(self) -> list[tuple[str, int, Rect]]:
        """The PDF's empty signature fields with one visible widget: (name, page index, box)."""
        from pyhanko.sign.fields import enumerate_sig_fields

        result = []
        for name, _value, field_ref in enumerate_sig_fields(self.reader, filled_status=False):
            sig_field = field_ref.get_object()
            kids = resolved_get(sig_field, "/Kids")
            if kids is not None and len(kids) != 1:
                continue
            widget_ref = kids.raw_get(0) if kids is not None else field_ref
            widget = widget_ref.get_object()
            rect = resolved_get(widget, "/Rect")
            page = self._page_of(widget_ref, widget)
            if rect is None or page is None:
                continue
            box = self.page(page).frame.to_display(rect)
            if (box[2] >= 10 and box[3] >= 5 and self.page(page).frame.contains(box, tolerance=1)
                    and not self.page(page).text_under(rect)):
                result.append((name, page, box))
        return result

    def _page_of(self, widget_ref: Any, widget: Any) -> int | None:
        if self._page_refs is None:
            self._page_refs = {}
            for index in range(self.count):
                annots = resolved_get(_page_dict(self.reader, index), "/Annots") or []
                for i in range(len(annots)):
                    ref = annots.raw_get(i)
                    if hasattr(ref, "idnum"):
                        self._page_refs[ref.idnum] = index
        index = self._page_refs.get(getattr(widget_ref, "idnum", -1))
        if index is None and "/P" in widget:
            target = widget.raw_get("/P")
            for i in range(self.count):
                if getattr(self.reader.find_page_for_modification(i)[0], "idnum", None) == getattr(target, "idnum", -2):
                    return i
        return index


def _page_dict(reader: Any, index: int) -> Any:
    return reader.find_page_for_modification(index)[0].get_object()


# --------------------------------------------------------------------------- the plan


def plan(data: bytes, reader: Any, request: PlacementRequest, *, may_add_page: bool) -> PlacementPlan:
    """Place every signer of ``request`` (see the module docs); raises :class:`PlacementError`."""
    doc = _Document(data, reader)
    placements: list[StampPlacement | None] = [None] * len(request.signers)
    for i, wanted in enumerate(request.fields):
        if wanted is not None:
            placements[i] = _sender_field(doc, wanted)
            target = placements[i]
            assert target is not None
            doc.page(target.page).taken.append((target.x, target.y, target.width, target.height))
    open_fields = doc.empty_signature_fields()
    for i, wanted in enumerate(request.fields):
        if wanted is None and open_fields:
            name, page, box = open_fields.pop(0)
            placements[i] = StampPlacement(page=page, x=_r(box[0]), y=_r(box[1]), width=_r(box[2]),
                                           height=_r(box[3]), source="form_field", field_name=name)
            doc.page(page).taken.append(box)
    waiting = [i for i, p in enumerate(placements) if p is None]
    if not waiting:
        return PlacementPlan(tuple(placements))
    last = doc.count - 1
    # An unsigned file gets a signature page rather than small stamps; one signed elsewhere cannot,
    # so every page is searched, last first, and then again for smaller stamps.
    pages, scales = ([last], (1.0,)) if may_add_page else (list(range(last, -1, -1)), SIGNED_FILE_SCALES)
    tentative: dict[int, StampPlacement] = {}
    for scale in scales:
        for index in pages:
            page = doc.page(index)
            size = stamp_size(page.frame, scale)
            while size is not None and len(tentative) < len(waiting):
                spot = page.free_spot(*size)
                if spot is None:
                    break
                page.taken.append(spot)
                tentative[waiting[len(tentative)]] = StampPlacement(
                    page=index, x=spot[0], y=spot[1], width=spot[2], height=spot[3], source="automatic")
            if len(tentative) == len(waiting):
                break
        if len(tentative) == len(waiting):
            break
    if len(tentative) == len(waiting):
        for i, p in tentative.items():
            placements[i] = p
        return PlacementPlan(tuple(placements))
    if may_add_page:
        return PlacementPlan(tuple(placements), signature_page=True)
    unplaced = waiting[len(tentative)]
    raise PlacementError(
        f"signers[{unplaced}].fields",
        "The document has no free area for this signer's stamp, and it is signed elsewhere, so no signature "
        "page can be added without breaking that signature. Give the stamp's place (an anchor or a box).",
    )


def _r(v: float) -> float:
    return round(v, 2)


def _sender_field(doc: _Document, wanted: FieldRequest) -> StampPlacement:
    if wanted.anchor is not None:
        return _at_anchor(doc, wanted)
    assert wanted.page is not None and wanted.x is not None and wanted.y is not None
    if not 1 <= wanted.page <= doc.count:
        raise PlacementError(f"{wanted.path}.page",
                             f"The document has {doc.count} page(s); page {wanted.page} does not exist.")
    page = doc.page(wanted.page - 1)
    w, h = _size(page.frame, wanted)
    box = (wanted.x, wanted.y, w, h)
    _must_fit(page.frame, box, wanted.path, f"page {wanted.page}")
    return StampPlacement(page=page.index, x=_r(box[0]), y=_r(box[1]), width=_r(w), height=_r(h), source="coordinates")


def _size(frame: PageFrame, wanted: FieldRequest) -> tuple[float, float]:
    default = stamp_size(frame) or (STAMP_W * MIN_SCALE, STAMP_H * MIN_SCALE)
    return (wanted.width or default[0], wanted.height or default[1])


def _must_fit(frame: PageFrame, box: Rect, path: str, where: str) -> None:
    if not frame.contains(box):
        raise PlacementError(path, (
            f"The stamp ({box[2]:g} × {box[3]:g} pt at x={box[0]:g}, y={box[1]:g}) does not fit on {where}, which is "
            f"{frame.width:g} × {frame.height:g} pt as displayed (points from its top-left corner)."))


def _at_anchor(doc: _Document, wanted: FieldRequest) -> StampPlacement:
    assert wanted.anchor is not None
    found = doc.anchor_boxes(wanted.anchor)
    if not found:
        raise PlacementError(f"{wanted.path}.anchor", f"The text {wanted.anchor!r} is not in the document's text.")
    n = wanted.occurrence
    if not (1 <= n <= len(found) or -len(found) <= n <= -1):
        raise PlacementError(f"{wanted.path}.occurrence",
                             f"The text {wanted.anchor!r} occurs {len(found)} time(s) in the document.")
    index, (left, top, right, bottom) = found[n - 1 if n > 0 else n]
    page = doc.page(index)
    w, h = _size(page.frame, wanted)
    ox, oy = wanted.offset_x, wanted.offset_y
    if _PLACEHOLDER.match(wanted.anchor.strip()):
        # covers the placeholder: its top-left at the placeholder's, at least as wide
        w = max(w, right - left + 4) if wanted.width is None else w
        candidates = [(left - 2 + (ox or 0), top - 2 + (oy or 0), w, h)]
    elif ox is not None or oy is not None:
        candidates = [(left + (ox or 0), bottom + (oy or 0), w, h)]
    else:  # under the label, else right of it, else above it: where nothing is printed; moved along
        # the label's edge as far as needed to stay on the page (a label near the right edge)
        margin = _margin(page.frame)
        x = max(margin, min(left, page.frame.width - margin - w))
        y = max(margin, min((top + bottom - h) / 2, page.frame.height - margin - h))
        candidates = [(x, bottom + 6, w, h), (right + 6, y, w, h), (x, top - 6 - h, w, h)]
    inside = [c for c in candidates if page.frame.contains(c)]
    if not inside:
        _must_fit(page.frame, candidates[0], wanted.path, f"page {index + 1}")
    # 2 pt kept to other content: the label's own glyphs (descenders) are 6 pt away by construction
    free = [c for c in inside if page.is_free(c, gap=2)] if len(inside) > 1 else inside
    box = (free or inside)[0]
    return StampPlacement(page=index, x=_r(box[0]), y=_r(box[1]), width=_r(box[2]), height=_r(box[3]),
                          source="anchor", anchor=wanted.anchor)
