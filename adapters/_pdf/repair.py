"""Structural faults of unsigned uploads, and their repair with qpdf (pikepdf).

Files that every viewer opens are often not what a strict writer expects: bytes before ``%PDF-``,
a trailer ``/Size`` below the highest object number, a damaged xref, pages or annotations stored
as direct objects, a form whose field list holds numbers or loops back on itself. pyHanko (rightly)
does not guess; qpdf is the field's tool for reading such files the way viewers do and writing
them out cleanly.

:func:`faults` names what is wrong (cheap: no stream is decoded); :func:`normalise` rewrites the file
once with qpdf and fixes what qpdf keeps as it found it. Only files without any signature are ever
rewritten: a rewrite breaks every signature in the file.

Filled fields that rely on ``/NeedAppearances`` are *not* given appearance streams here: qpdf's
generator draws text fields only roughly and drops check marks and radio dots (the corpus check
showed "✓" and "●" vanish and "÷" become "??"), so what the signer saw would not be what was
signed. The flag is kept instead, in the repaired file and through every signature
(:mod:`.signature`), and viewers draw the values as they did before.
"""

from __future__ import annotations

import io
from typing import Any

import pikepdf
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader

from .update import highest_object_number

__all__ = ["EncryptedError", "RepairError", "faults", "header_offset", "is_signed", "normalise", "resolved_get"]

MAX_FIELD_DEPTH = 32


class RepairError(Exception):
    """qpdf could not read the file either."""


class EncryptedError(RepairError):
    """qpdf needs a password for the file."""


def header_offset(data: bytes) -> int:
    """Where ``%PDF-`` starts (viewers accept up to 1024 bytes before it), or -1."""
    return data.find(b"%PDF-", 0, 1024 + 5)


def is_signed(data: bytes) -> bool:
    """Conservative: a byte range anywhere means a signature (or a document timestamp) to keep."""
    return b"/ByteRange" in data


def resolved_get(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` resolved (pyHanko's ``dict.get`` returns indirect references unresolved)."""
    return obj[key] if isinstance(obj, generic.DictionaryObject) and key in obj else default


def faults(data: bytes, reader: PdfFileReader | None) -> list[str]:
    """What makes this file unsafe to sign as it is (empty: sign it as it is)."""
    found = []
    if header_offset(data) > 0:
        found.append("bytes before the %PDF- header")
    if reader is None:
        return [*found, "the cross-reference data could not be read"]
    try:
        size = int(reader.trailer["/Size"])
    except (KeyError, TypeError, ValueError):
        size = 0
    if highest_object_number(data, reader) >= size:
        found.append("the trailer /Size is smaller than the number of objects")
    root = reader.root
    found.extend(_page_faults(root["/Pages"], depth=0))
    form = resolved_get(root, "/AcroForm")
    if isinstance(form, generic.DictionaryObject):
        found.extend(_form_faults(form))
    return found


def _page_faults(node: Any, depth: int) -> list[str]:
    if depth > 64:
        return ["the page tree is nested too deeply"]
    kids = resolved_get(node, "/Kids")
    if kids is None:
        annots = node.raw_get("/Annots") if "/Annots" in node else None
        if annots is None:
            return []
        annots = annots.get_object()
        if not isinstance(annots, generic.ArrayObject):
            return ["a page's /Annots is not an array"]
        if any(not isinstance(a, generic.IndirectObject) for a in annots):
            return ["a page stores annotations directly"]
        return []
    found: list[str] = []
    for i in range(len(kids)):
        kid = kids.raw_get(i)
        if not isinstance(kid, generic.IndirectObject):
            return ["the page tree holds a page directly"]
        found.extend(f for f in _page_faults(kid.get_object(), depth + 1) if f not in found)
        if found:
            return found
    return found


def _form_faults(form: generic.DictionaryObject) -> list[str]:
    found: list[str] = []
    fields = resolved_get(form, "/Fields")
    if fields is None:
        return found
    if not isinstance(fields, generic.ArrayObject):
        return [*found, "the form's /Fields is not an array"]
    seen: set[int] = set()
    stack: list[tuple[generic.ArrayObject, int]] = [(fields, 0)]
    while stack:
        array, depth = stack.pop()
        for i in range(len(array)):
            raw = array.raw_get(i)
            if not isinstance(raw, generic.IndirectObject):
                return [*found, "the form holds a field directly or a value that is not a field"]
            if raw.idnum in seen or depth > MAX_FIELD_DEPTH:
                return [*found, "the form's field tree loops back on itself"]
            seen.add(raw.idnum)
            field = raw.get_object()
            if not isinstance(field, generic.DictionaryObject):
                return [*found, "the form's field list holds a value that is not a field"]
            kids = resolved_get(field, "/Kids")
            if isinstance(kids, generic.ArrayObject):
                stack.append((kids, depth + 1))
    return found


def normalise(data: bytes) -> bytes:
    """The file as qpdf reads it, written out cleanly, with the faults qpdf keeps fixed."""
    try:
        with pikepdf.open(io.BytesIO(data), attempt_recovery=True) as pdf:
            _fix_pages(pdf)
            _fix_form(pdf)
            out = io.BytesIO()
            pdf.save(out, fix_metadata_version=False, deterministic_id=True)
    except pikepdf.PasswordError:
        raise EncryptedError("the file is encrypted") from None
    except (pikepdf.PdfError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise RepairError(str(exc)[:200]) from None
    return out.getvalue()


def _fix_pages(pdf: pikepdf.Pdf) -> None:
    for page in pdf.pages:  # qpdf's page helper makes directly stored pages indirect
        annots = page.obj.get("/Annots")
        if annots is None:
            continue
        if not isinstance(annots, pikepdf.Array):
            del page.obj["/Annots"]
            continue
        kept = pikepdf.Array()
        for annot in annots:
            if not isinstance(annot, pikepdf.Dictionary):
                continue
            kept.append(annot if annot.is_indirect else pdf.make_indirect(annot))
        page.obj["/Annots"] = kept


def _fix_form(pdf: pikepdf.Pdf) -> None:
    form = pdf.Root.get("/AcroForm")
    if not isinstance(form, pikepdf.Dictionary):
        return
    fields = form.get("/Fields")
    if not isinstance(fields, pikepdf.Array):
        form["/Fields"] = pikepdf.Array()
        return
    seen: set[tuple[int, int]] = set()

    def clean(array: pikepdf.Array, depth: int) -> pikepdf.Array:
        kept = pikepdf.Array()
        for item in array:
            if not isinstance(item, pikepdf.Dictionary) or depth > MAX_FIELD_DEPTH:
                continue
            field = item if item.is_indirect else pdf.make_indirect(item)
            if field.objgen in seen:  # a loop back to a field already in the tree
                continue
            seen.add(field.objgen)
            kids = field.get("/Kids")
            if isinstance(kids, pikepdf.Array):
                field["/Kids"] = clean(kids, depth + 1)
            kept.append(field)
        return kept

    form["/Fields"] = clean(fields, 0)
