"""Make asn1crypto's ``dump()`` linear instead of exponential in the depth of a new structure.

``Asn1Value.dump`` (asn1crypto 1.5.1) reads the ``contents`` property twice: once for the value and
again for the header. For a structure built in memory (not parsed), ``contents`` re-encodes every
child each time it is read — the "mutated" flag is never cleared — so each nesting level doubles
the work. A CMS signed-attribute set is ~10 levels deep: dumping one ``signing-certificate-v2``
attribute made 673 calls of ``Asn1Value.dump`` (17 with this fix), and asn1crypto was about half of a signature's
CPU time. Upstream: https://github.com/wbond/asn1crypto/issues/256 (open).

:func:`install` replaces ``Asn1Value.dump`` with the same code reading ``contents`` once. The bytes
are identical (nothing changes between the two reads); ``tests/unit/test_asn1_fix.py`` checks
that on the gateway's own CMS structures and that the call count drops. Installed in the signing
worker processes only, where pyHanko builds CMS structures.
"""

from __future__ import annotations

import asn1crypto
from asn1crypto import core

__all__ = ["install", "installed"]

FIXED_VERSIONS = ("1.5.1",)
"""The versions whose ``Asn1Value.dump`` this replaces line for line; any other is left alone."""

_original = core.Asn1Value.dump


def _dump(self: core.Asn1Value, force: bool = False) -> bytes:
    contents = self.contents  # once (asn1crypto reads it up to three times)

    if self._header is not None and self._header[-1:] == b"\x80":  # indefinite length: re-encode
        force = True

    if self._header is None or force:
        if isinstance(self, core.Constructable) and self._indefinite:
            self.method = 0
        header = core._dump_header(self.class_, self.method, self.tag, contents)
        if self.explicit is not None:
            for class_, tag in self.explicit:
                header = core._dump_header(class_, 1, tag, header + contents) + header
        self._header = header
        self._trailer = b""

    return self._header + contents + self._trailer


def install() -> bool:
    """Replace ``Asn1Value.dump`` (idempotent); False, and nothing changed, on an unknown version."""
    if asn1crypto.__version__ not in FIXED_VERSIONS or core.Asn1Value.dump is not _original:
        return installed()
    core.Asn1Value.dump = _dump  # type: ignore[method-assign]
    return True


def installed() -> bool:
    return core.Asn1Value.dump is _dump
