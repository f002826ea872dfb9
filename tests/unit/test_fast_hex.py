"""The fast hex-string reader gives pyHanko's results and errors, and leaves the stream where
pyHanko's does."""

from __future__ import annotations

import io

import pytest
from pyhanko.pdf_utils.misc import PdfStreamError

from adapters._pdf import fast_hex


@pytest.mark.parametrize("data", [
    b"<48656c6c6f>", b"<48656c6c6f> tail", b"<4865 6c\n6c\r\n6f\t>", b"<486>", b"<>", b"< >",
    b"<" + b"00" * 40_000 + b"ff>rest", b"<" + b"a" * 70_001 + b">", b"<48 % a comment\n65>",
    b"<FEFF0041>",
], ids=["plain", "tail", "whitespace", "odd", "empty", "blank", "long", "odd-long", "comment", "utf16"])
def test_reads_what_pyhanko_reads_and_stops_where_it_stops(data: bytes) -> None:
    ours, theirs = io.BytesIO(data), io.BytesIO(data)
    assert fast_hex.read_hex_string(ours) == fast_hex._original(theirs)
    assert ours.tell() == theirs.tell()


@pytest.mark.parametrize("data", [b"<48zz>", b"<4865", b"<"], ids=["stray", "unterminated", "bare"])
def test_fails_as_pyhanko_fails(data: bytes) -> None:
    with pytest.raises(PdfStreamError) as theirs:
        fast_hex._original(io.BytesIO(data))
    with pytest.raises(PdfStreamError) as ours:
        fast_hex.read_hex_string(io.BytesIO(data))
    assert str(ours.value) == str(theirs.value)
