"""Incremental updates that never touch the original: numbering, and the proof afterwards.

pyHanko's ``IncrementalPdfFileWriter`` numbers new objects from the trailer's ``/Size``. Real files
carry a ``/Size`` smaller than their highest object number (pdf.js and qpdf keep such test files;
viewers open them by reconstructing the xref), and then the signature's new objects take numbers
of existing ones: the page tree or an image is replaced in every viewer while the signature itself
still validates. :func:`open_writer` starts numbering above the highest object number found in the
xref *or* in the bytes (``N G obj``), whichever is higher.

:func:`check_update` runs after every signature, before it is recorded: the original must be a
byte-identical prefix of the result, and every object of the original that the update redefines
must be a dictionary or array that keeps every entry it had (a signature may only *add* an
annotation to a page, a field to the form, entries to the catalog and the DSS). A stream of the
original is never redefined. Everything else resolves through the original's own xref.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

__all__ = ["UpdateIntegrityError", "check_update", "highest_object_number", "open_writer"]

_OBJ_HEADER = re.compile(rb"(?<![0-9])(\d{1,7})[ \t\r\n\f\x00]+\d{1,5}[ \t\r\n\f\x00]+obj\b")
_MAX_OBJECT_NUMBER = 8_388_607
"""ISO 32000's implementation limit; a bigger 'N 0 obj' in the bytes is stream data, not an object."""

MAY_CHANGE = frozenset({
    "/Annots", "/AcroForm", "/Fields", "/SigFlags", "/DSS", "/Perms", "/Extensions", "/Version",
    "/DR", "/DA", "/Certs", "/OCSPs", "/CRLs", "/VRI", "/ModDate", "/Producer",
})
"""Entries a signature update may add or replace in a dictionary it redefines (catalog, page,
AcroForm, DSS, document info). Every other entry must stay byte-for-byte what it was."""


SIGNING_FILLS = frozenset({"/V", "/AP", "/AS"})
"""What signing an *empty signature field* of the original sets on the field and its widget: the
signature value, the stamp's appearance (and the appearance state that no longer applies)."""


class UpdateIntegrityError(Exception):
    """The update changed something of the original (the message names it)."""


def _refs_of(reader: PdfFileReader, revisions: Iterable[int]) -> set[generic.Reference]:
    refs: set[generic.Reference] = set()
    for revision in revisions:
        refs |= reader.xrefs.explicit_refs_in_revision(revision)
    return refs


def highest_object_number(data: bytes, reader: PdfFileReader) -> int:
    """The highest object number the file uses, by its xref sections or by its bytes."""
    by_xref = max((ref.idnum for ref in _refs_of(reader, range(reader.xrefs.total_revisions))), default=0)
    by_bytes = max((n for n in (int(m.group(1)) for m in _OBJ_HEADER.finditer(data)) if n <= _MAX_OBJECT_NUMBER),
                   default=0)
    try:
        by_size = int(reader.trailer["/Size"]) - 1
    except (KeyError, TypeError, ValueError):
        by_size = 0
    return max(by_xref, by_bytes, by_size)


def _leave_metadata(self: IncrementalPdfFileWriter) -> None:
    return None


# pyHanko rewrites the document information dictionary (re-encoding its strings, a new /ModDate and
# /Producer) and the XMP stream in every revision it writes, including the DSS and document-timestamp
# revisions it writes with writers of its own. Those are the original's objects: our revisions leave
# them as they are. Set on the class, so every incremental writer in a process that signs does so.
IncrementalPdfFileWriter._update_meta = _leave_metadata  # type: ignore[method-assign]


def open_writer(data: bytes) -> IncrementalPdfFileWriter:
    """An incremental writer on ``data`` whose new objects get numbers no object of ``data`` has."""
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    top = highest_object_number(data, writer.prev)
    # pyHanko allocates ``_lastobj_id + 1`` next; it starts from /Size (pyHanko 0.38, pinned <0.39).
    writer._lastobj_id = max(writer._lastobj_id, top)
    return writer


def _raw(obj: generic.PdfObject) -> bytes:
    buf = io.BytesIO()
    obj.write_to_stream(buf, None)
    return buf.getvalue()


def _describe(ref: generic.Reference, obj: generic.PdfObject) -> str:
    kind = obj.get("/Type") if isinstance(obj, generic.DictionaryObject) else None
    return f"object {ref.idnum} {ref.generation}" + (f" ({kind})" if kind else "")


def _empty_signature_field(obj: generic.DictionaryObject) -> bool:
    """A signature field (or its widget) without a value in the original."""
    node: generic.PdfObject = obj
    for _ in range(8):
        if not isinstance(node, generic.DictionaryObject):
            return False
        if "/FT" in node:
            return node.raw_get("/FT") == "/Sig" and "/V" not in obj and "/V" not in node
        if "/Parent" not in node:
            return False
        node = node.raw_get("/Parent").get_object()
    return False


def _kept(before: generic.PdfObject, after: generic.PdfObject) -> str | None:
    """None if ``after`` keeps everything of ``before``; otherwise what it lost."""
    if isinstance(before, generic.StreamObject) or isinstance(after, generic.StreamObject):
        return "a stream was rewritten"
    if isinstance(before, generic.DictionaryObject):
        if not isinstance(after, generic.DictionaryObject):
            return f"a dictionary became {type(after).__name__}"
        fills = SIGNING_FILLS if _empty_signature_field(before) else frozenset()
        for key in before:
            if key in MAY_CHANGE or key in fills:
                continue
            if key not in after:
                return f"entry {key} was removed"
            if _raw(before.raw_get(key)) != _raw(after.raw_get(key)):
                return f"entry {key} was changed"
        return None
    if isinstance(before, generic.ArrayObject):
        if not isinstance(after, generic.ArrayObject):
            return f"an array became {type(after).__name__}"
        if len(after) < len(before) or any(
            _raw(before.raw_get(i)) != _raw(after.raw_get(i)) for i in range(len(before))
        ):
            return "array entries were replaced"
        return None
    return "a plain value was redefined"


def check_update(before: bytes, after: bytes) -> None:
    """Raise :class:`UpdateIntegrityError` unless ``after`` only appends to ``before`` and keeps
    every object of it (see the module docs)."""
    if not after.startswith(before):
        raise UpdateIntegrityError("the original is not a byte-identical prefix of the signed file")
    old = PdfFileReader(io.BytesIO(before), strict=False)
    new = PdfFileReader(io.BytesIO(after), strict=False)
    old_revisions = old.xrefs.total_revisions
    known = {ref.idnum: ref for ref in _refs_of(old, range(old_revisions))}
    on_disk = {int(m.group(1)) for m in _OBJ_HEADER.finditer(before)}
    for ref in sorted(_refs_of(new, range(old_revisions, new.xrefs.total_revisions)), key=lambda r: r.idnum):
        if ref.idnum not in known:
            if ref.idnum in on_disk:
                raise UpdateIntegrityError(f"object {ref.idnum} of the original (outside its xref) was reused")
            continue
        original = old.get_object(known[ref.idnum])
        lost = _kept(original, new.get_object(generic.Reference(ref.idnum, ref.generation, pdf=new)))
        if lost is not None:
            raise UpdateIntegrityError(f"{_describe(ref, original)} of the original was redefined: {lost}")
    pages_before = int(old.root["/Pages"]["/Count"])
    pages_after = int(new.root["/Pages"]["/Count"])
    if pages_before != pages_after:
        raise UpdateIntegrityError(f"the page count changed from {pages_before} to {pages_after}")
