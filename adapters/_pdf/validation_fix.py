"""pyHanko's difference analysis on malformed originals: two false alarms, fixed narrowly.

**References to objects that do not exist.**
A reference to an object number that no xref section defines is legal PDF: it means the null
object (ISO 32000-1 §7.3.10). Word processors and DSS's test files leave such references behind.
pyHanko 0.38's ``HistoricalResolver._collect_indirect_references`` asks the xref cache in which
revision the referenced object was introduced, gets ``KeyError`` for the missing one, and the
whole validation of *our* signature fails ("pyHanko's validator fails on malformed originals where
pdfsig says valid"). A null has no dependencies, so the patched method simply does not follow it;
everything else runs unchanged. Shown by ``tests/integration/test_pdf_integrity.py::
test_pyhanko_validates_our_signature_over_a_dangling_reference``; not yet reported upstream
(MatthiasValvekens/pyHanko) — no issue for it was found there, and this workplace cannot file one.

**Metadata that is not XMP and was not touched.** ``MetadataUpdateRule`` checks the XML of the
catalog's ``/Metadata`` stream between every two revisions, also when neither revision changed it;
an original whose metadata is not XMP then makes every later signature "modified after signing"
(OTHER) although the stream is byte-for-byte the original's. The patched rule skips the check when
the catalog points at the same stream and no revision in between redefined it; a metadata stream
that *was* replaced is still checked exactly as before. Shown by ``…::
test_pyhanko_validates_our_signature_over_metadata_that_is_not_xmp``; not reported upstream yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.reader import HistoricalResolver
from pyhanko.sign.diff_analysis.rules.metadata_rules import MetadataUpdateRule

__all__ = ["install"]

_original = HistoricalResolver._collect_indirect_references


def _collect_indirect_references(
    self: HistoricalResolver, obj: Any, seen: set[Any], since_revision: Any = None
) -> None:
    if isinstance(obj, generic.IndirectObject) and since_revision is not None:
        try:
            self.reader.xrefs.get_introducing_revision(obj.reference)
        except KeyError:  # a reference to nothing: the null object
            return
    _original(self, obj, seen, since_revision)


_original_metadata_apply = MetadataUpdateRule.apply


def _metadata_ref(resolver: HistoricalResolver) -> Any:
    try:
        return resolver.root.get_value_as_reference("/Metadata")
    except (KeyError, misc.IndirectObjectExpected):
        return None


def _metadata_apply(self: MetadataUpdateRule, old: HistoricalResolver, new: HistoricalResolver) -> Iterable[Any]:
    old_ref, new_ref = _metadata_ref(old), _metadata_ref(new)
    if old_ref is not None and new_ref is not None and (old_ref.idnum, old_ref.generation) == (
        new_ref.idnum, new_ref.generation
    ):
        try:
            untouched = new.reader.xrefs.get_last_change(new_ref) <= old.revision
        except KeyError:
            untouched = False
        if untouched:
            return iter(())
    return _original_metadata_apply(self, old, new)


def install() -> None:
    """Idempotent; called by every module of ours that validates or signs."""
    HistoricalResolver._collect_indirect_references = _collect_indirect_references  # type: ignore[method-assign]
    MetadataUpdateRule.apply = _metadata_apply  # type: ignore[method-assign]
