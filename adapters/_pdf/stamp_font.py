"""The stamp's font: parsed once per process and embedded as it is, not subset per signature.

pyHanko's ``GlyphAccumulator`` parses the font (fontTools + HarfBuzz), subsets it and re-serialises
it for every appearance: measured here ~38 ms of a ~75 ms visible signature (parsing the glyph
table ~8 ms, subsetting and saving ~30 ms). ``DejaVuSans-Stamp.ttf`` already *is* a small subset of
DejaVu Sans (Latin, Czech and Slovak letters, digits, punctuation; 41 KB), so:

* it is parsed once per process (:class:`_Face`) and shared read-only — nothing subsets it, which
  is the only thing in pyHanko that mutates the parsed font;
* it is embedded whole, compressed once. Glyph IDs are the font's own, which is what the
  ``/CIDToGIDMap /Identity`` that pyHanko writes expects (the same as its ``retain_gids`` subsets).

The text is still shaped and measured by pyHanko (HarfBuzz) and ``/W`` and ``/ToUnicode`` list
the glyphs used, so widths, copy-and-paste and text search are as before. Each signature adds
~25 KB (the compressed font) instead of ~8 KB. ``_WholeFontAccumulator.__init__`` mirrors
``GlyphAccumulator.__init__`` of pyHanko 0.38 for TrueType fonts (pinned below 0.39 in pyproject).
"""

from __future__ import annotations

import functools
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uharfbuzz as hb
from fontTools import ttLib
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.api import FontEngine
from pyhanko.pdf_utils.font.opentype import CIDFontType2, GlyphAccumulator, GlyphAccumulatorFactory, _read_ps_name
from pyhanko.pdf_utils.writer import BasePdfFileWriter

__all__ = ["StampFontFactory"]


@dataclass(frozen=True)
class _Face:
    """One parsed font, shared by every stamp a process draws (read-only)."""

    flate: bytes
    length: int
    tt: ttLib.TTFont
    hb_font: hb.Font
    glyph_set: Any
    ps_name: str
    units_per_em: int


@functools.cache
def _face(path: str) -> _Face:
    data = Path(path).read_bytes()
    tt = ttLib.TTFont(io.BytesIO(data))
    if "glyf" not in tt:
        raise TypeError("The stamp font must be a TrueType (glyf) font.")
    return _Face(
        flate=zlib.compress(data, 9), length=len(data), tt=tt, hb_font=hb.Font(hb.Face(data)),
        glyph_set=tt.getGlyphSet(preferCFF=True), ps_name=_read_ps_name(tt), units_per_em=tt["head"].unitsPerEm,
    )


class _WholeCIDFontType2(CIDFontType2):
    def __init__(self, face: _Face, subset_prefix: str) -> None:
        super().__init__(face.tt, face.ps_name, subset_prefix)
        self._face = face

    def set_font_file(self, writer: BasePdfFileWriter) -> generic.IndirectObject:
        stream = generic.StreamObject(
            {
                generic.pdf_name("/Filter"): generic.pdf_name("/FlateDecode"),
                generic.pdf_name("/Length1"): generic.NumberObject(self._face.length),
            },
            encoded_data=self._face.flate,
        )
        ref = writer.add_object(stream)
        self._font_descriptor[generic.pdf_name("/FontFile2")] = ref
        return ref


class _WholeFontAccumulator(GlyphAccumulator):
    def __init__(self, writer: BasePdfFileWriter, face: _Face, font_size: float, obj_stream: Any) -> None:
        FontEngine.__init__(self, writer, face.ps_name, embedded_subset=True, obj_stream=obj_stream,
                            font_size=font_size)  # type: ignore[arg-type]
        self.hb_font = face.hb_font
        self.tt = face.tt
        self._font_ref = writer.allocate_placeholder()
        self.cff_charset = None
        self.use_raw_gids = True
        self.cidfont_obj = _WholeCIDFontType2(face, self.subset_prefix)
        self.features = None
        self.units_per_em = face.units_per_em
        self._glyphs = {}
        self._glyph_set = face.glyph_set
        self._cid_to_unicode = {}
        self._GlyphAccumulator__reverse_cmap = None
        self.ot_language_tag = None
        self.ot_script_tag = None
        self.writing_direction = None
        self.bcp47_lang_code = None
        self._subset_created = self._write_prepared = False

    def _extract_subset(self, options: Any = None) -> None:
        """Nothing to cut: the file is the subset (and the parsed font is shared)."""


@dataclass(frozen=True)
class StampFontFactory(GlyphAccumulatorFactory):
    def create_font_engine(self, writer: BasePdfFileWriter, obj_stream: Any = None) -> GlyphAccumulator:
        if obj_stream is None and writer.stream_xrefs and self.create_objstream_if_needed:
            obj_stream = writer.prepare_object_stream()
        return _WholeFontAccumulator(writer, _face(self.font_file), self.font_size, obj_stream)
